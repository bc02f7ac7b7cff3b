"""The value of an alert rule's metric over its window, from the same aggregates and
report code the Compute* RPCs use, and the model-dependent checks of a rule."""

from __future__ import annotations

from keel.monitor.v1 import reports_pb2 as rp
from services.common.errors import InvalidArgument, NotFound
from services.monitor import drift, fairness, performance, quality
from services.monitor.alert_records import (
    DriftMetric,
    Evaluation,
    FairnessMetric,
    PerformanceMetric,
    QualityMetric,
    RuleSpec,
)
from services.monitor.reference import CLASSIFIER_METRICS, REGRESSOR_METRICS, ModelReference
from services.monitor.references import References
from services.monitor.reports import ordered
from services.monitor.scope import Aggregates, Scope, VersionRows, after_now_s, bucket_end

NS = 1_000_000_000


class AlertMetrics:
    def __init__(self, aggregates: Aggregates, references: References) -> None:
        self._aggregates = aggregates
        self._references = references

    async def _reference(self, spec: RuleSpec) -> ModelReference:
        if spec.version:
            return await self._references.get(spec.model, spec.version)
        versions = await self._references.versions(spec.model)
        latest = versions[-1] if versions else await self._references.latest_version(spec.model)
        return await self._references.get(spec.model, latest)

    async def check(self, spec: RuleSpec) -> None:
        """InvalidArgument for a condition that does not fit the model."""
        reference = await self._reference(spec)
        metric = spec.condition.metric
        field = "alert_rule.condition"
        feature = getattr(metric, "feature", "")
        if feature and feature != "prediction" and reference.feature(feature) is None:
            raise InvalidArgument(f"{field}: '{feature}' is not a feature of model '{spec.model}'")
        if isinstance(metric, PerformanceMetric):
            allowed = CLASSIFIER_METRICS if reference.classifier else REGRESSOR_METRICS
            if metric.metric not in allowed:
                raise InvalidArgument(
                    f"{field}.performance.metric: '{metric.metric}' does not fit this model "
                    f"(expected one of {sorted(allowed)})"
                )
            if metric.class_label and metric.class_label not in reference.class_labels:
                raise InvalidArgument(
                    f"{field}.performance.class_label: '{metric.class_label}' is not a class label"
                )
        if isinstance(metric, FairnessMetric):
            spec_feature = reference.feature(metric.feature)
            if spec_feature is None or not spec_feature.protected:
                raise InvalidArgument(
                    f"{field}.fairness.feature: '{metric.feature}' is not protected"
                )
            if not reference.classifier:
                raise InvalidArgument(f"{field}.fairness: fairness needs a classifier")
        if isinstance(metric, DriftMetric) and metric.method in ("WASSERSTEIN", "KS"):
            spec_feature = reference.feature(feature)
            if spec_feature is not None and not spec_feature.numeric:
                raise InvalidArgument(
                    f"{field}.drift.method: {metric.method} needs a numeric feature"
                )

    async def evaluate(self, spec: RuleSpec, end_ns: int) -> Evaluation:
        end_s = bucket_end(after_now_s(end_ns), self._aggregates.base_s)
        start_s = end_s - spec.window // NS
        scope = Scope(
            spec.model,
            spec.version,
            spec.deployment.removeprefix("deployments/"),
            spec.variant,
            start_s,
            end_s,
        )
        try:
            selection = await self._aggregates.select(scope)
        except NotFound:
            return Evaluation(None, 0, start_s * NS, end_s * NS)
        held = ordered(selection)
        value, samples = _value(spec, held)
        return Evaluation(value, samples, start_s * NS, end_s * NS)


def _value(spec: RuleSpec, held: list[VersionRows]) -> tuple[float | None, int]:
    metric = spec.condition.metric
    if not held:
        return None, 0
    if isinstance(metric, DriftMetric):
        return _drift_value(metric, held)
    if isinstance(metric, QualityMetric):
        return _quality_value(metric, held)
    if isinstance(metric, PerformanceMetric):
        return _performance_value(metric, held)
    assert isinstance(metric, FairnessMetric)
    return _fairness_value(metric, held)


def _drift_value(metric: DriftMetric, held: list[VersionRows]) -> tuple[float | None, int]:
    newest = held[-1]
    options = rp.DriftOptions(min_samples=1)
    if metric.method and metric.feature:
        setting = options.column_settings[metric.feature]
        setting.method = rp.DriftMethod.Value(f"DRIFT_METHOD_{metric.method}")
    report = drift.drift_report(newest, options)
    if not metric.feature:
        return report.drifted_share, newest.rows
    found = (
        report.prediction
        if metric.feature == "prediction"
        else next((f for f in report.features if f.feature == metric.feature), None)
    )
    if found is None or not found.current_count:
        return None, 0
    return found.statistic, int(found.current_count)


def _quality_value(metric: QualityMetric, held: list[VersionRows]) -> tuple[float | None, int]:
    report = quality.quality_report(held, [metric.feature] if metric.feature else [])
    rows = report.row_count
    if metric.measure == "REJECTED_RATE":
        return report.rejected_rate, rows + report.rejected_row_count
    if not metric.feature:
        return report.missing_rate, rows
    entry = report.features[0] if report.features else None
    if entry is None:
        return None, 0
    value = {
        "MISSING_RATE": entry.missing_rate,
        "OUT_OF_RANGE_RATE": entry.out_of_range_rate,
        "UNSEEN_CATEGORY_RATE": entry.unseen_category_rate,
    }[metric.measure]
    return value, entry.row_count


def _performance_value(
    metric: PerformanceMetric, held: list[VersionRows]
) -> tuple[float | None, int]:
    joined = performance.pool(held)
    if joined is None:
        return None, 0
    if metric.class_label:
        report = performance.performance_report(held, rp.PerformanceOptions(per_class=True))
        for entry in report.per_class:
            if entry.class_label == metric.class_label:
                value = next((m.value for m in entry.metrics if m.name == metric.metric), None)
                return value, joined.labeled
        return None, joined.labeled
    found = performance.values(joined)
    if metric.metric not in found:
        return None, joined.labeled
    return found[metric.metric][0], found[metric.metric][1]


def _fairness_value(metric: FairnessMetric, held: list[VersionRows]) -> tuple[float | None, int]:
    options = rp.FairnessOptions(features=[metric.feature])
    _, positive = fairness.check_options(held[-1].reference, options)
    entry = fairness.feature_fairness(held, metric.feature, positive, options)
    labeled = sum(h.labeled for h in held)
    if entry is None:
        return None, 0
    if metric.measure == "DEMOGRAPHIC_PARITY_DIFFERENCE":
        return entry.demographic_parity_difference, sum(g.row_count for g in entry.groups)
    if metric.measure == "DEMOGRAPHIC_PARITY_RATIO":
        return entry.demographic_parity_ratio, sum(g.row_count for g in entry.groups)
    if not entry.HasField("equalized_odds_difference"):
        return None, labeled
    return entry.equalized_odds_difference, labeled
