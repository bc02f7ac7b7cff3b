"""``Keel``: the calls a data scientist makes, one object for the whole platform.

    from keel.client import Keel

    with Keel() as keel:                       # a local `keel up`
        v = keel.log_model(model, "churn", X_train, y_train, X_test, y_test,
                           objectives=["f1 >= 0.80"], protected=["sex"])
        keel.promote("churn", v.version, "production")
        p = keel.predict("churn", X_new)       # labels, probabilities, row ids
        keel.feedback(p, y_new)                # the true labels, later
        keel.performance("churn").metrics      # {"accuracy": …, "f1": …}
        keel.drift("churn").dataset_drift

Channels open on first use; every call has a deadline (``timeout_s``) and is retried on
UNAVAILABLE by the channel's service config. Failed calls raise the typed exceptions of
``keel.client.errors``. The `ml` extra (numpy, scikit-learn, xgboost, skops) is only
imported by the calls that need it (``log_model``, ``predict``, ``explain``,
``feedback``, ``log_predictions``, ``load_model``), so importing and constructing
``Keel``, and the monitor's reports, need only grpcio and protobuf.

The calls live in mixins, one per service: registry calls here, the others in
``calls_inference.py``, ``calls_logging.py`` and ``calls_reports.py``; the channels in
``connection.py``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keel.client.calls_inference import InferenceCalls
from keel.client.calls_logging import LoggingCalls
from keel.client.calls_reports import ReportCalls
from keel.client.connection import (
    DEFAULT_INFERENCE,
    DEFAULT_MONITOR,
    DEFAULT_REGISTRY,
    DEFAULT_TIMEOUT_S,
    check_model_id,
)
from keel.client.errors import AlreadyExists, DeadlineExceeded, RegistrationFailed
from keel.client.loading import ModelReference, load_artifact
from keel.client.objectives import parse_objectives
from keel.client.registry import version_name
from keel.common.v1 import metric_pb2, schema_pb2
from keel.registry.v1 import model_pb2

__all__ = [
    "DEFAULT_INFERENCE",
    "DEFAULT_MONITOR",
    "DEFAULT_REGISTRY",
    "DEFAULT_TIMEOUT_S",
    "Keel",
    "RegisteredVersion",
    "check_model_id",
    "status_text",
]

_FIRST_POLL_S = 0.05
_MAX_POLL_S = 1.0
# Downloads get their own deadline: the default one plus a second per this many bytes.
_DOWNLOAD_BYTES_PER_SECOND = 4 * 1024 * 1024
_BASIC = model_pb2.MODEL_VERSION_VIEW_BASIC

Objectives = str | metric_pb2.Objective | Iterable[str | metric_pb2.Objective]


def status_text(status: model_pb2.ModelVersionStatus.ValueType) -> str:
    """``READY`` for MODEL_VERSION_STATUS_READY, and so on."""
    return model_pb2.ModelVersionStatus.Name(status).removeprefix("MODEL_VERSION_STATUS_")


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version, as ``log_model`` returns it."""

    name: str
    version: int
    status: str
    sha256: str
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def resource_name(self) -> str:
        return version_name(self.name, self.version)

    @classmethod
    def from_message(cls, name: str, version: model_pb2.ModelVersion) -> RegisteredVersion:
        return cls(
            name=name,
            version=version.version,
            status=status_text(version.status),
            sha256=version.artifact.sha256,
            metrics={m.name: m.value for m in version.evaluation_metrics if not m.group},
        )


class Keel(InferenceCalls, LoggingCalls, ReportCalls):
    """A client of one Keel installation (see ``Connection`` for the arguments:
    addresses, ``user``, ``token``, ``tls``/``ca_file``/``cert_file``/``key_file``,
    ``timeout_s``)."""

    # Registry

    def log_model(
        self,
        model: Any,
        name: str,
        X_train: Any,  # noqa: N803 - the names data scientists use
        y_train: Any,
        X_test: Any,  # noqa: N803
        y_test: Any,
        *,
        objectives: Objectives | None = None,
        protected: Sequence[str] | None = None,
        pii: Mapping[str, str] | None = None,
        task: str | int | None = None,
        description: str = "",
        owner_team: str = "",
        tags: Mapping[str, str] | None = None,
        author: str | None = None,
        cv: int | None = 5,
    ) -> RegisteredVersion:
        """Evaluates, profiles, serialises and registers ``model`` as a new version of
        ``name`` (created when it does not exist), then waits until it is READY.

        ``objectives`` (e.g. ``["f1 >= 0.80"]``) set the model's objectives on creation
        and replace them on later calls; omitted, the model's stay as they are.
        ``protected`` names protected features, reported on by fairness metrics.
        ``pii`` maps personal features to ``hash`` or ``drop``: what the inference service
        does to them before a prediction is logged.
        ``task`` (``binary``, ``multiclass``, ``regression``) is inferred when omitted.
        ``cv`` is the number of cross-validation folds, None to skip.
        Raises ValueError/TypeError for bad input (before any call), RegistrationFailed
        when the server refuses the version, DeadlineExceeded when it stays PENDING.
        """
        try:
            from keel.client.registration import prepare_version
        except ImportError as error:
            raise ImportError(
                f"log_model needs the ML extra: pip install 'keel-client[ml]' ({error})"
            ) from error

        check_model_id(name)
        wanted = parse_objectives(objectives) if objectives is not None else None
        prepared = prepare_version(
            model,
            X_train,
            y_train,
            X_test,
            y_test,
            task=task,
            protected=list(protected or ()),
            pii=pii,
            cv=cv,
            description=description,
            tags=tags,
            author=author,
        )
        self._ensure_model(
            name,
            task=prepared.task,
            objectives=wanted,
            description=description,
            owner_team=owner_team,
            tags=tags,
        )
        artifact = self.registry.upload_artifact(prepared.artifact.data)
        request = model_pb2.ModelVersion()
        request.CopyFrom(prepared.version)
        request.artifact.sha256 = artifact.sha256
        created = self.registry.create_model_version(name, request, request_id=uuid.uuid4().hex)
        return RegisteredVersion.from_message(name, self._wait_settled(name, created))

    def _ensure_model(
        self,
        name: str,
        *,
        task: schema_pb2.Task.ValueType,
        objectives: list[metric_pb2.Objective] | None,
        description: str,
        owner_team: str,
        tags: Mapping[str, str] | None,
    ) -> model_pb2.Model:
        existing = self.registry.find_model(name)
        if existing is None:
            wanted = model_pb2.Model(
                description=description,
                owner_team=owner_team,
                task=task,
                objectives=objectives or [],
                tags=dict(tags or {}),
            )
            try:
                return self.registry.create_model(name, wanted)
            except AlreadyExists:  # created concurrently: carry on with it
                existing = self.registry.get_model(name)
        if existing.task != task:
            raise ValueError(
                f"model {name!r} is registered for {schema_pb2.Task.Name(existing.task)}, "
                f"but this model is {schema_pb2.Task.Name(task)}"
            )
        if objectives is not None and list(existing.objectives) != objectives:
            update = model_pb2.Model(name=existing.name, objectives=objectives)
            return self.registry.update_model(update, ["objectives"])
        return existing

    def _wait_settled(self, name: str, version: model_pb2.ModelVersion) -> model_pb2.ModelVersion:
        """Polls the version until it is no longer PENDING, within ``timeout``."""
        deadline = time.monotonic() + self.timeout
        pause = _FIRST_POLL_S
        while version.status == model_pb2.MODEL_VERSION_STATUS_PENDING:
            if time.monotonic() + pause > deadline:
                raise DeadlineExceeded(
                    f"version {version_name(name, version.version)} still PENDING "
                    f"after {self.timeout:g} s"
                )
            self._sleep(pause)
            pause = min(pause * 2, _MAX_POLL_S)
            version = self.registry.get_model_version(
                name, version.version, view=model_pb2.MODEL_VERSION_VIEW_BASIC
            )
        if version.status == model_pb2.MODEL_VERSION_STATUS_FAILED:
            raise RegistrationFailed(
                f"version {version_name(name, version.version)} failed verification: "
                f"{version.status_message or 'no reason given'}",
                name=name,
                version=version.version,
            )
        return version

    def promote(
        self,
        name: str,
        version: int,
        alias: str,
        *,
        expected_version: int | None = None,
        reason: str = "",
    ) -> None:
        """Points ``alias`` of model ``name`` at ``version``. A protected alias moves
        only through the gates: a refusal raises GateRefused, whose ``report`` says
        which check failed. ``expected_version`` makes it a compare-and-set (0: the
        alias must not exist yet); a mismatch raises Conflict."""
        check_model_id(name)
        self.registry.set_alias(
            name, alias, int(version), expected_version=expected_version, reason=reason
        )

    def load_model(self, reference: str) -> Any:
        """The model of a registered version, loaded in this process: ``"name@alias"``,
        ``"name@3"`` or ``"name"`` (the ``production`` alias).

        Downloads the artifact, checks its sha256 against the version (ArtifactRefused
        when it differs) and loads it without unpickling: XGBoost models as
        ``XGBClassifier`` / ``XGBRegressor``, scikit-learn ones from skops with the
        type allowlist. Needs the `ml` extra."""
        wanted = ModelReference.parse(reference)
        if wanted.version is not None:
            found = self.registry.get_model_version(wanted.model, wanted.version, view=_BASIC)
        else:
            found = self.registry.resolve(f"{wanted.model}@{wanted.alias}").model_version
        task = self.registry.get_model(wanted.model).task
        artifact = found.artifact
        data = self.registry.download_artifact(
            artifact.sha256,
            timeout=self.timeout + artifact.size_bytes / _DOWNLOAD_BYTES_PER_SECOND,
        )
        return load_artifact(data, sha256=artifact.sha256, flavor=found.flavor, task=task)
