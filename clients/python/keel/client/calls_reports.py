"""``Keel``'s report calls to the monitor: ``drift``, ``performance``, ``fairness``,
``compare_variants`` and ``alerts``. They need only grpcio and protobuf."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from keel.client.alerts import Alert, AlertList, state_value
from keel.client.connection import Connection, check_model_id
from keel.client.errors import NotFound
from keel.client.fairness import FairnessResult
from keel.client.monitoring import Moment, scope
from keel.client.reports import DriftResult, PerformanceResult
from keel.client.variants import ComparisonResult
from keel.monitor.v1 import monitor_pb2, reports_pb2


class ReportCalls(Connection):
    """The monitor's reports on a model, as typed results."""

    def _report_version(self, name: str, version: int | str | None) -> int:
        """None: the version ``production`` points to (0, all versions, without one);
        a number; or an alias name."""
        check_model_id(name)
        if version is None:
            try:
                return self.registry.get_alias(name, "production").version
            except NotFound:
                return 0
        text = str(version).strip()
        if text.isdigit():
            return int(text)
        return self.registry.get_alias(name, text).version

    def drift(
        self,
        name: str,
        *,
        version: int | str | None = None,
        since: Moment | timedelta | None = None,
        until: Moment | None = None,
        deployment: str = "",
        variant: str = "",
        window: timedelta | None = None,
        features: Sequence[str] = (),
        include_bins: bool = False,
    ) -> DriftResult:
        """Drift of each feature (and the prediction, and labels) of ``name`` against
        the version's reference profile, with the dataset-level verdict.

        ``version``: None for the version ``production`` points to, a number, or an
        alias. ``since``/``until``: datetimes (naive = UTC) or ISO strings, ``since``
        also a timedelta before ``until``; by default the 24 hours before now.
        ``window`` adds one report per window (``series``); ``include_bins`` the
        reference and current counts per bin, for charts."""
        number = self._report_version(name, version)
        where = scope(
            name,
            number,
            since=since,
            until=until,
            deployment=deployment,
            variant=variant,
            window=window,
        )
        options = reports_pb2.DriftOptions(features=list(features), include_bins=include_bins)
        return DriftResult.from_response(name, self.monitor.compute_drift(where, options))

    def performance(
        self,
        name: str,
        *,
        version: int | str | None = None,
        since: Moment | timedelta | None = None,
        until: Moment | None = None,
        deployment: str = "",
        variant: str = "",
        window: timedelta | None = None,
        decision_threshold: float | None = None,
        per_class: bool = False,
    ) -> PerformanceResult:
        """Live metrics of ``name`` from predictions joined with feedback labels
        (``accuracy``, ``f1``, ``roc_auc`` … or ``rmse``, ``mae``, ``r2``), and its
        objectives checked. Scope arguments as in ``drift``."""
        number = self._report_version(name, version)
        where = scope(
            name,
            number,
            since=since,
            until=until,
            deployment=deployment,
            variant=variant,
            window=window,
        )
        options = reports_pb2.PerformanceOptions(per_class=per_class)
        if decision_threshold is not None:
            options.decision_threshold = decision_threshold
        response = self.monitor.compute_performance(where, options)
        return PerformanceResult.from_response(name, number, response)

    def fairness(
        self,
        name: str,
        *,
        version: int | str | None = None,
        since: Moment | timedelta | None = None,
        until: Moment | None = None,
        deployment: str = "",
        variant: str = "",
        window: timedelta | None = None,
        feature: str | None = None,
        positive_class: str = "",
        min_group_size: int | None = None,
    ) -> FairnessResult:
        """Selection rate, TPR and FPR per group of each protected feature (or just
        ``feature``), and the disparities between groups. Scope arguments as in
        ``drift``."""
        number = self._report_version(name, version)
        where = scope(
            name,
            number,
            since=since,
            until=until,
            deployment=deployment,
            variant=variant,
            window=window,
        )
        options = reports_pb2.FairnessOptions(
            features=[feature] if feature else [], positive_class=positive_class
        )
        if min_group_size is not None:
            options.min_group_size = min_group_size
        response = self.monitor.compute_fairness(where, options)
        return FairnessResult.from_response(name, number, response)

    def compare_variants(
        self,
        name: str,
        control: str,
        candidate: str,
        metric: str | Sequence[str] | None = None,
        *,
        version: int | str | None = None,
        since: Moment | timedelta | None = None,
        until: Moment | None = None,
        deployment: str = "",
        confidence_level: float | None = None,
        min_samples: int | None = None,
    ) -> ComparisonResult:
        """Compares variant ``candidate`` with ``control`` on ``metric`` (one name or
        several; None: the model's objectives' metrics, else accuracy / rmse), each
        variant with its own versions unless ``version`` says otherwise."""
        number = 0 if version is None else self._report_version(name, version)
        where = scope(name, number, since=since, until=until, deployment=deployment)
        request = monitor_pb2.CompareVariantsRequest(
            scope=where,
            baseline_variant=control,
            candidate_variant=candidate,
            metrics=[metric] if isinstance(metric, str) else list(metric or ()),
        )
        if confidence_level is not None:
            request.confidence_level = confidence_level
        if min_samples is not None:
            request.min_samples = min_samples
        response = self.monitor.compare_variants(request)
        return ComparisonResult.from_response(name, control, candidate, response)

    def alerts(self, name: str | None = None, *, state: str | None = None) -> AlertList:
        """Alerts (of model ``name``; ``state`` ``firing`` or ``resolved``), newest first."""
        if name is not None:
            check_model_id(name)
        wanted = state_value(state)
        found = self.monitor.list_alerts(model=name or "", state=wanted)
        return AlertList(Alert.from_proto(alert) for alert in found)
