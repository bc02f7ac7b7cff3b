"""Keel.log_model and Keel.promote against a test double of the registry stub: which
calls are made, in what order, with what. (Real servers: tests/integration.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any, cast

import grpc
import numpy as np
import pytest
import xgboost as xgb
from google.protobuf import any_pb2
from google.rpc import status_pb2
from sklearn.linear_model import LinearRegression, LogisticRegression

from keel.client import (
    DeadlineExceeded,
    GateRefused,
    Keel,
    NotFound,
    RegisteredVersion,
    RegistrationFailed,
)
from keel.client.registry import CHUNK_BYTES, RegistryClient, upload_requests
from keel.common.v1 import metric_pb2, schema_pb2
from keel.registry.v1 import gate_pb2, model_pb2, registry_pb2
from tests.unit.client.fakes import FakeRpcError

RNG = np.random.default_rng(3)
X = RNG.normal(size=(120, 3))
Y = (X[:, 0] - X[:, 2] > 0).astype(int)
PENDING = model_pb2.MODEL_VERSION_STATUS_PENDING
READY = model_pb2.MODEL_VERSION_STATUS_READY


class FakeRegistry:
    """Answers like the registry, records every request."""

    def __init__(self) -> None:
        self.models: dict[str, model_pb2.Model] = {}
        self.artifacts: dict[str, bytes] = {}
        self.versions: list[model_pb2.ModelVersion] = []
        self.calls: list[tuple[str, Any]] = []
        self.polls_until_settled = 2
        self.final_status = READY
        self.status_message = ""
        self.upload_messages: list[registry_pb2.UploadArtifactRequest] = []
        self.gate_report: gate_pb2.GateReport | None = None

    def GetModel(self, request: registry_pb2.GetModelRequest, **kw: Any) -> Any:  # noqa: N802
        self.calls.append(("GetModel", request))
        if request.name not in self.models:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"{request.name} not found")
        return registry_pb2.GetModelResponse(model=self.models[request.name])

    def CreateModel(self, request: registry_pb2.CreateModelRequest, **kw: Any) -> Any:  # noqa: N802
        self.calls.append(("CreateModel", request))
        model = model_pb2.Model()
        model.CopyFrom(request.model)
        model.name = f"models/{request.model_id}"
        self.models[model.name] = model
        return registry_pb2.CreateModelResponse(model=model)

    def UpdateModel(self, request: registry_pb2.UpdateModelRequest, **kw: Any) -> Any:  # noqa: N802
        self.calls.append(("UpdateModel", request))
        model = self.models[request.model.name]
        assert list(request.update_mask.paths) == ["objectives"]
        del model.objectives[:]
        model.objectives.extend(request.model.objectives)
        return registry_pb2.UpdateModelResponse(model=model)

    def GetArtifact(self, request: registry_pb2.GetArtifactRequest, **kw: Any) -> Any:  # noqa: N802
        self.calls.append(("GetArtifact", request))
        sha = request.name.removeprefix("artifacts/")
        if sha not in self.artifacts:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, "no such artifact")
        return registry_pb2.GetArtifactResponse(artifact=model_pb2.Artifact(sha256=sha))

    def UploadArtifact(  # noqa: N802
        self, requests: Iterator[registry_pb2.UploadArtifactRequest], **kw: Any
    ) -> Any:
        self.upload_messages = list(requests)
        self.calls.append(("UploadArtifact", kw["timeout"]))
        header = self.upload_messages[0].header
        data = b"".join(m.chunk for m in self.upload_messages[1:])
        assert len(data) == header.size_bytes
        assert hashlib.sha256(data).hexdigest() == header.sha256
        self.artifacts[header.sha256] = data
        return registry_pb2.UploadArtifactResponse(
            artifact=model_pb2.Artifact(name=f"artifacts/{header.sha256}", sha256=header.sha256)
        )

    def CreateModelVersion(  # noqa: N802
        self, request: registry_pb2.CreateModelVersionRequest, **kw: Any
    ) -> Any:
        self.calls.append(("CreateModelVersion", request))
        assert request.model_version.artifact.sha256 in self.artifacts
        version = model_pb2.ModelVersion()
        version.CopyFrom(request.model_version)
        version.version = len(self.versions) + 1
        version.name = f"{request.parent}/versions/{version.version}"
        version.status = PENDING
        self.versions.append(version)
        return registry_pb2.CreateModelVersionResponse(model_version=version)

    def GetModelVersion(  # noqa: N802
        self, request: registry_pb2.GetModelVersionRequest, **kw: Any
    ) -> Any:
        self.calls.append(("GetModelVersion", request))
        version = self.versions[int(request.name.rsplit("/", 1)[1]) - 1]
        self.polls_until_settled -= 1
        if self.polls_until_settled <= 0:
            version.status = self.final_status
            version.status_message = self.status_message
        return registry_pb2.GetModelVersionResponse(model_version=version)

    def SetAlias(self, request: registry_pb2.SetAliasRequest, **kw: Any) -> Any:  # noqa: N802
        self.calls.append(("SetAlias", request))
        if self.gate_report is not None:
            holder = any_pb2.Any()
            holder.Pack(self.gate_report)
            status = status_pb2.Status(
                code=grpc.StatusCode.FAILED_PRECONDITION.value[0],
                message="gates refused",
                details=[holder],
            )
            raise FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "gates refused", status)
        return registry_pb2.SetAliasResponse()

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def keel(fake: FakeRegistry) -> Iterator[Keel]:
    client = Keel(timeout=5.0)
    client._registry = RegistryClient(cast(Any, fake), timeout=5.0)
    client._sleep = lambda seconds: None
    yield client
    client.close()


def log(keel: Keel, **kwargs: Any) -> RegisteredVersion:
    model = kwargs.pop("model", None) or LogisticRegression().fit(X[:80], Y[:80])
    y_train, y_test = kwargs.pop("y", (Y[:80], Y[80:]))
    kwargs.setdefault("cv", None)
    return keel.log_model(model, "churn", X[:80], y_train, X[80:], y_test, **kwargs)


def test_the_first_log_creates_the_model_uploads_registers_and_waits(
    keel: Keel, fake: FakeRegistry
) -> None:
    result = log(keel, objectives=["f1 >= 0.5"], protected=["f1"], owner_team="risk")
    assert fake.names() == [
        "GetModel",
        "CreateModel",
        "GetArtifact",
        "UploadArtifact",
        "CreateModelVersion",
        "GetModelVersion",
        "GetModelVersion",
    ]
    created = fake.calls[1][1]
    assert created.model_id == "churn"
    assert created.model.task == schema_pb2.TASK_BINARY_CLASSIFICATION
    assert created.model.owner_team == "risk"
    assert [(o.metric, o.threshold) for o in created.model.objectives] == [("f1", 0.5)]
    request = fake.calls[4][1]
    assert request.parent == "models/churn"
    assert request.request_id  # a retried call does not register twice
    version = request.model_version
    assert version.flavor == model_pb2.FLAVOR_SKLEARN
    assert [f.name for f in version.signature.inputs if f.protected] == ["f1"]
    assert {m.name for m in version.evaluation_metrics} >= {"f1", "roc_auc", "log_loss"}
    assert {m.split for m in version.training_metrics} == {metric_pb2.METRIC_SPLIT_TRAIN}
    assert not version.HasField("cross_validation")
    assert version.reference_profile.row_count == 80
    assert version.reference_profile.label.categorical.categories
    training = version.lineage.training_dataset
    assert training.sha256 == hashlib.sha256(X[:80].tobytes()).hexdigest()
    assert version.lineage.parameters["C"] == "1.0"
    assert result == RegisteredVersion(
        name="churn",
        version=1,
        status="READY",
        sha256=version.artifact.sha256,
        metrics={m.name: m.value for m in version.evaluation_metrics},
    )
    assert result.resource_name == "models/churn/versions/1"


def test_the_upload_is_a_header_then_chunks_of_one_mebibyte() -> None:
    data = bytes(range(256)) * (CHUNK_BYTES * 2 // 256 + 10)
    messages = list(upload_requests(data, hashlib.sha256(data).hexdigest()))
    assert messages[0].WhichOneof("content") == "header"
    assert messages[0].header.size_bytes == len(data)
    assert [len(m.chunk) for m in messages[1:]] == [CHUNK_BYTES, CHUNK_BYTES, 2560]
    assert b"".join(m.chunk for m in messages[1:]) == data


def test_an_artifact_already_stored_is_not_uploaded_again(keel: Keel, fake: FakeRegistry) -> None:
    # XGBoost's UBJSON is byte-stable; skops files are not (they embed object ids).
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(X[:80], Y[:80])
    log(keel, model=model)
    fake.polls_until_settled = 1
    second = log(keel, model=model)
    assert fake.names().count("UploadArtifact") == 1
    assert second.version == 2
    assert fake.versions[0].artifact.sha256 == fake.versions[1].artifact.sha256


def test_objectives_update_the_model_only_when_given_and_changed(
    keel: Keel, fake: FakeRegistry
) -> None:
    log(keel, objectives=["f1 >= 0.5"])
    log(keel)  # omitted: left alone
    log(keel, objectives=["f1 >= 0.5"])  # unchanged: no call
    assert "UpdateModel" not in fake.names()
    log(keel, objectives=["f1 >= 0.6", "roc_auc > 0.7"])
    updates = [request for name, request in fake.calls if name == "UpdateModel"]
    assert len(updates) == 1
    assert updates[0].model.name == "models/churn"
    assert [o.metric for o in fake.models["models/churn"].objectives] == ["f1", "roc_auc"]


def test_bad_input_fails_before_any_call(keel: Keel, fake: FakeRegistry) -> None:
    with pytest.raises(ValueError, match="speed"):
        log(keel, objectives=["speed >= 3"])
    with pytest.raises(ValueError, match="model name"):
        keel.log_model(LogisticRegression().fit(X, Y), "Churn!", X, Y, X, Y, cv=None)
    with pytest.raises(TypeError, match="never pickles"):
        keel.log_model(object(), "churn", X, Y, X, Y, cv=None)
    with pytest.raises(ValueError, match="protected"):
        log(keel, protected=["sex"])
    assert fake.calls == []


def test_a_model_of_another_task_is_refused(keel: Keel, fake: FakeRegistry) -> None:
    log(keel)
    regressor = LinearRegression().fit(X[:80], X[:80, 0])
    with pytest.raises(ValueError, match="TASK_BINARY_CLASSIFICATION"):
        log(keel, model=regressor, y=(X[:80, 0], X[80:, 0]))


def test_a_failed_version_raises_registration_failed(keel: Keel, fake: FakeRegistry) -> None:
    fake.final_status = model_pb2.MODEL_VERSION_STATUS_FAILED
    fake.status_message = "signature has 4 inputs, model expects 3"
    with pytest.raises(RegistrationFailed, match="model expects 3") as caught:
        log(keel)
    assert caught.value.version == 1


def test_a_version_that_stays_pending_is_a_deadline_exceeded(
    keel: Keel, fake: FakeRegistry
) -> None:
    fake.polls_until_settled = 10**6
    keel.timeout = 0.2
    with pytest.raises(DeadlineExceeded, match="still PENDING"):
        log(keel)


def test_promote_sets_the_alias(keel: Keel, fake: FakeRegistry) -> None:
    keel.promote("churn", 3, "production", expected_version=2)
    request = fake.calls[-1][1]
    assert request.name == "models/churn/aliases/production"
    assert request.version == 3
    assert request.HasField("expected_version") and request.expected_version == 2
    keel.promote("churn", 4, "staging")
    assert not fake.calls[-1][1].HasField("expected_version")


def test_promote_raises_gate_refused_with_the_report(keel: Keel, fake: FakeRegistry) -> None:
    fake.gate_report = gate_pb2.GateReport(
        alias="models/churn/aliases/production", target_version=3, allowed=False
    )
    with pytest.raises(GateRefused) as caught:
        keel.promote("churn", 3, "production")
    assert caught.value.report == fake.gate_report


def test_missing_models_raise_not_found(keel: Keel) -> None:
    with pytest.raises(NotFound):
        keel.registry.get_model("nope")


def test_keel_opens_no_channel_until_a_call_and_closes_them() -> None:
    with Keel(registry="127.0.0.1:1", timeout=1.0) as keel:
        assert keel._channels == {}
        keel.registry  # noqa: B018 - opens the channel without connecting
        assert set(keel._channels) == {"registry"}
    assert keel._channels == {}


def test_bad_addresses_are_refused() -> None:
    with pytest.raises(ValueError, match="host:port"):
        Keel(registry="localhost")
    with pytest.raises(ValueError, match="timeout"):
        Keel(timeout=0)


def test_the_client_imports_and_constructs_without_the_ml_extra() -> None:
    script = textwrap.dedent(
        """
        import sys
        for name in ("numpy", "sklearn", "xgboost", "skops", "pandas"):
            sys.modules[name] = None  # any import of them now fails
        from keel.client import Keel, GateRefused
        with Keel() as keel:
            keel.registry
        assert not any(sys.modules.get(n) for n in ("numpy", "sklearn", "xgboost", "skops"))
        try:
            keel.log_model(object(), "m", [], [], [], [])
        except ImportError as error:
            assert "keel-client[ml]" in str(error), error
        else:
            raise AssertionError("log_model ran without numpy")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
