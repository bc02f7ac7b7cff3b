"""Bearer tokens and roles on real in-process servers with auth on: static tokens and
HS256 JWTs, the role table, model ownership by team, the author who may not approve,
the audit log's actor, the service tokens between the services, health without a
token, and denials that say nothing but the generic words."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import yaml  # type: ignore[import-untyped]
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from keel.common.v1 import schema_pb2
from keel.monitor.v1 import monitor_pb2 as mpb
from keel.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from keel.registry.v1 import deployment_pb2, model_pb2
from keel.registry.v1 import registry_pb2 as rpb
from keel.registry.v1 import registry_pb2_grpc as rpb_grpc
from services.common.auth import hash_token
from services.common.denials import PERMISSION_DENIED_MESSAGE, UNAUTHENTICATED_MESSAGE
from services.common.errors import INTERNAL_MESSAGE
from services.common.rpc import Handler
from services.common.server import ServerDeps, ServiceBinding, build_server
from services.registry.service import open_registry
from services.registry.settings import RegistrySettings
from tests.support.inference import raw_request, running_inference
from tests.support.monitor import frame, log_classifier, running_monitor
from tests.support.probe import OIP_SERVICE, ProbeSettings
from tests.support.registry import (
    signature,
    upload_requests,
    xgboost_artifact,
)

SECRET = "an HS256 secret of more than 32 bytes, for tests"
ISSUER = "https://login.example.test"
AUDIENCE = "keel"
# token -> (subject, roles, team)
TOKENS = {
    "tok-reader": ("rita", ["reader"], "a"),
    "tok-predictor": ("pat", ["predictor"], ""),
    "tok-alice": ("alice", ["writer", "approver"], "a"),
    "tok-bob": ("bob", ["writer"], "b"),
    "tok-carol": ("carol", ["approver", "reader"], ""),
    "tok-admin": ("root", ["admin"], ""),
    "tok-inference": ("keel-inference", ["reader", "writer"], "*"),
    "tok-monitor": ("keel-monitor", ["reader", "writer"], "*"),
}
Metadata = tuple[tuple[str, str], ...]


def as_(token: str, *extra: tuple[str, str]) -> Metadata:
    return (("authorization", f"Bearer {token}"), *extra)


def id_token(subject: str, key: str = SECRET, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now + 300,
        "roles": ["writer"],
        "team": "a",
    }
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="HS256")


def auth_settings(tmp: Path, service_token: str = "") -> dict[str, Any]:
    path = tmp / "tokens.yaml"
    if not path.exists():
        entries = [
            {"sha256": hash_token(token), "subject": subject, "roles": roles, "team": team}
            for token, (subject, roles, team) in TOKENS.items()
        ]
        path.write_text(yaml.safe_dump({"tokens": entries}))
    return {
        "auth_mode": "tokens,jwt",
        "auth_token_file": str(path),
        "auth_jwt_secret": SECRET,
        "auth_jwt_issuer": ISSUER,
        "auth_jwt_audience": AUDIENCE,
        "auth_service_token": service_token,
    }


@dataclass
class Registry:
    stub: rpb_grpc.RegistryServiceAsyncStub
    channel: grpc.aio.Channel
    address: str


@asynccontextmanager
async def registry_with_auth(tmp: Path) -> AsyncIterator[Registry]:
    settings = RegistrySettings(
        port=0,
        metrics_port=None,
        data_dir=tmp / "registry",
        database_url=f"sqlite:///{tmp / 'r.db'}",
        event_poll_s=0.05,
        **auth_settings(tmp),
    )
    provider = TracerProvider()
    async with open_registry(settings, provider, CollectorRegistry()) as deps:
        server, port = build_server(settings, tracer_provider=provider, deps=deps)
        await server.start()
        try:
            address = f"127.0.0.1:{port}"
            async with grpc.aio.insecure_channel(address) as channel:
                yield Registry(rpb_grpc.RegistryServiceStub(channel), channel, address)
        finally:
            await server.stop(None)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with registry_with_auth(tmp_path) as running:
        yield running


async def refusal(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded; expected a refusal")


def assert_denied(error: grpc.aio.AioRpcError, code: grpc.StatusCode) -> None:
    """The code, the generic words and a request id: nothing else."""
    assert error.code() == code
    expected = {
        grpc.StatusCode.UNAUTHENTICATED: UNAUTHENTICATED_MESSAGE,
        grpc.StatusCode.PERMISSION_DENIED: PERMISSION_DENIED_MESSAGE,
    }[code]
    assert error.details() == expected
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None and len(status.details) == 1
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert set(info.metadata) == {"request_id"}
    assert re.fullmatch(r"[0-9a-f]{32}", info.metadata["request_id"])


async def create_model(
    stub: rpb_grpc.RegistryServiceAsyncStub, name: str, md: Metadata, owner_team: str = ""
) -> model_pb2.Model:
    model = model_pb2.Model(task=schema_pb2.TASK_BINARY_CLASSIFICATION, owner_team=owner_team)
    reply = await stub.CreateModel(
        rpb.CreateModelRequest(model=model, model_id=name), metadata=md, timeout=10
    )
    return reply.model


async def create_version(
    stub: rpb_grpc.RegistryServiceAsyncStub, model: str, md: Metadata
) -> model_pb2.ModelVersion:
    artifact = xgboost_artifact()
    await stub.UploadArtifact(upload_requests(artifact.data), metadata=md, timeout=60)
    version = model_pb2.ModelVersion(
        flavor=artifact.flavor,  # type: ignore[arg-type]
        artifact=model_pb2.Artifact(sha256=artifact.sha256),
        signature=signature(artifact.features),
    )
    request = rpb.CreateModelVersionRequest(parent=f"models/{model}", model_version=version)
    return (await stub.CreateModelVersion(request, metadata=md, timeout=30)).model_version


# Health, and callers without a valid token ---------------------------------------------------
async def test_health_and_reflection_need_no_token(registry: Registry) -> None:
    health = health_pb2_grpc.HealthStub(registry.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(registry.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names = set()
    async for answer in reflection.ServerReflectionInfo(iter([request]), timeout=5):
        names |= {s.name for s in answer.list_services_response.service}
    assert "keel.registry.v1.RegistryService" in names


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        as_("tok-nobody"),
        (("authorization", "tok-reader"),),
        (("x-keel-user", "root"),),
        as_(id_token("dave", exp=int(time.time()) - 3600)),
        as_(id_token("dave", iss="https://evil.test")),
        as_(id_token("dave", aud="another-app")),
        as_(id_token("dave", key="a different secret that is also long enough")),
    ],
    ids=[
        "none",
        "unknown",
        "no-scheme",
        "stated-only",
        "expired",
        "issuer",
        "audience",
        "signature",
    ],
)
async def test_a_call_without_a_valid_token_is_unauthenticated_and_told_nothing_more(
    registry: Registry, metadata: Metadata
) -> None:
    error = await refusal(
        registry.stub.GetModel(rpb.GetModelRequest(name="models/x"), metadata=metadata)
    )
    assert_denied(error, grpc.StatusCode.UNAUTHENTICATED)


# Roles -----------------------------------------------------------------------------------------
async def test_a_reader_reads_but_cannot_write(registry: Registry) -> None:
    stub = registry.stub
    await create_model(stub, "churn", as_("tok-admin"))
    reader = as_("tok-reader")
    found = await stub.GetModel(rpb.GetModelRequest(name="models/churn"), metadata=reader)
    assert found.model.name == "models/churn"
    listed = await stub.ListModels(rpb.ListModelsRequest(), metadata=reader)
    assert [m.name for m in listed.models] == ["models/churn"]
    denied = [
        await refusal(create_model(stub, "mine", reader)),  # unary
        await refusal(  # client stream
            stub.UploadArtifact(upload_requests(b"data"), metadata=reader, timeout=10)
        ),
        await refusal(
            stub.ApproveModelVersion(
                rpb.ApproveModelVersionRequest(name="models/churn/versions/1", alias="production"),
                metadata=reader,
            )
        ),
    ]
    for error in denied:
        assert_denied(error, grpc.StatusCode.PERMISSION_DENIED)


async def test_a_predictor_reads_nothing_in_the_registry(registry: Registry) -> None:
    predictor = as_("tok-predictor")
    stub = registry.stub
    calls: Sequence[Awaitable[object]] = [
        stub.ListAuditEntries(rpb.ListAuditEntriesRequest(), metadata=predictor),
        stub.GetModel(rpb.GetModelRequest(name="models/churn"), metadata=predictor),
    ]
    for call in calls:
        assert_denied(await refusal(call), grpc.StatusCode.PERMISSION_DENIED)
    watch = stub.WatchEvents(rpb.WatchEventsRequest(), metadata=predictor)  # server stream
    with pytest.raises(grpc.aio.AioRpcError) as stream_error:
        async for _ in watch:
            pass
    assert_denied(stream_error.value, grpc.StatusCode.PERMISSION_DENIED)


# Model ownership -------------------------------------------------------------------------------
async def test_a_writer_of_another_team_cannot_touch_the_model(registry: Registry) -> None:
    stub = registry.stub
    alice, bob = as_("tok-alice"), as_("tok-bob")
    created = await create_model(stub, "fraud", alice)
    assert created.owner_team == "a"  # the creator's team by default
    await create_version(stub, "fraud", alice)
    route = deployment_pb2.Route(target="models/fraud/versions/1", weight=100)
    deployment = deployment_pb2.Deployment(model="models/fraud", routes=[route])
    calls: Sequence[Awaitable[object]] = [
        create_version(stub, "fraud", bob),
        stub.SetAlias(
            rpb.SetAliasRequest(name="models/fraud/aliases/staging", version=1), metadata=bob
        ),
        stub.CreateDeployment(
            rpb.CreateDeploymentRequest(deployment=deployment, deployment_id="fraud"),
            metadata=bob,
        ),
        stub.ArchiveModel(rpb.ArchiveModelRequest(name="models/fraud"), metadata=bob),
        create_model(stub, "planted", bob, owner_team="a"),
    ]
    for call in calls:
        assert_denied(await refusal(call), grpc.StatusCode.PERMISSION_DENIED)
    # The owner and an admin may.
    await stub.SetAlias(
        rpb.SetAliasRequest(name="models/fraud/aliases/staging", version=1), metadata=alice
    )
    await stub.CreateDeployment(
        rpb.CreateDeploymentRequest(deployment=deployment, deployment_id="fraud"),
        metadata=as_("tok-admin"),
    )
    versions = await stub.ListModelVersions(
        rpb.ListModelVersionsRequest(parent="models/fraud"), metadata=as_("tok-reader")
    )
    assert [v.version for v in versions.model_versions] == [1]  # bob's left no number


# Approvals and the audit log -------------------------------------------------------------------
async def test_the_author_cannot_approve_their_own_version(registry: Registry) -> None:
    stub = registry.stub
    alice = as_("tok-alice")
    await create_model(stub, "churn", alice)
    version = await create_version(stub, "churn", alice)
    assert version.author == "alice"
    request = rpb.ApproveModelVersionRequest(name=version.name, alias="production")
    # Stating another identity changes nothing once tokens are on.
    for md in (alice, as_("tok-alice", ("x-keel-user", "carol"))):
        own = await refusal(stub.ApproveModelVersion(request, metadata=md))
        assert own.code() == grpc.StatusCode.PERMISSION_DENIED
    approved = await stub.ApproveModelVersion(request, metadata=as_("tok-carol"))
    assert approved.approval.approver == "carol"


async def test_the_audit_log_records_the_tokens_subject(registry: Registry) -> None:
    stub = registry.stub
    spoofed = ("x-keel-user", "mallory")
    created = await create_model(stub, "churn", as_("tok-alice", spoofed))
    assert created.created_by == "alice"
    await create_model(stub, "from-jwt", as_(id_token("dave"), spoofed))
    audit = await stub.ListAuditEntries(
        rpb.ListAuditEntriesRequest(order_by="sequence"), metadata=as_("tok-reader")
    )
    assert [(e.resource, e.actor) for e in audit.entries] == [
        ("models/churn", "alice"),
        ("models/from-jwt", "dave"),
    ]


# The three services together -----------------------------------------------------------------
async def eventually_found(stub: mpb_grpc.MonitorServiceAsyncStub, prediction_id: str) -> None:
    request = mpb.GetPredictionRequest(model="models/churn", prediction_id=prediction_id)
    deadline = time.monotonic() + 30
    while True:
        try:
            await stub.GetPrediction(request, metadata=as_("tok-reader"), timeout=5)
            return
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def wait_ready(stub: oip_grpc.GRPCInferenceServiceAsyncStub, md: Metadata) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            reply = await stub.ModelReady(oip.ModelReadyRequest(name="churn"), metadata=md)
            if reply.ready:
                return
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
        assert time.monotonic() < deadline, "the model never became ready"
        await asyncio.sleep(0.1)


async def test_services_call_each_other_with_their_own_tokens(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inference follows the registry and logs to the monitor, the monitor reads the
    registry, each with its service token; a predictor infers but may not administer."""
    monkeypatch.setenv("KEEL_TOKEN", "tok-alice")  # the Python client sends it
    version = await log_classifier(registry.address, "churn")
    await registry.stub.SetAlias(
        rpb.SetAliasRequest(name="models/churn/aliases/production", version=version),
        metadata=as_("tok-alice"),
    )
    monitor_settings = auth_settings(tmp_path, "tok-monitor")
    async with running_monitor(
        registry.address, f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "monitor", **monitor_settings
    ) as monitor:
        async with running_inference(
            int(registry.address.rsplit(":", 1)[1]),
            tmp_path / "inference",
            monitor_address=monitor.address,
            prediction_log_flush_s=0.05,
            **auth_settings(tmp_path, "tok-inference"),
        ) as served:
            predictor = as_("tok-predictor")
            await wait_ready(served.stub, predictor)
            rows = frame(3, 0).to_numpy()
            request = raw_request("churn", rows, request_id="order-1")
            reply = await served.stub.ModelInfer(request, metadata=predictor)
            assert reply.model_name == "churn"
            await eventually_found(monitor.stub, "order-1/0")
            denied: Sequence[Awaitable[object]] = [
                served.stub.ModelInfer(request, metadata=as_("tok-reader")),
                served.stub.RepositoryModelLoad(
                    oip.RepositoryModelLoadRequest(model_name="churn"), metadata=predictor
                ),
            ]
            for call in denied:
                assert_denied(await refusal(call), grpc.StatusCode.PERMISSION_DENIED)
            unauthenticated = await refusal(served.stub.ModelInfer(request))
            assert_denied(unauthenticated, grpc.StatusCode.UNAUTHENTICATED)


def _sync_server_live(
    request: oip.ServerLiveRequest, context: grpc.ServicerContext
) -> oip.ServerLiveResponse:
    raise AssertionError("a handler auth cannot guard must never run")


def _sync_live_handler() -> Handler:
    return grpc.unary_unary_rpc_method_handler(
        _sync_server_live,
        request_deserializer=oip.ServerLiveRequest.FromString,
        response_serializer=oip.ServerLiveResponse.SerializeToString,
    )


async def test_a_method_auth_cannot_guard_is_never_served(tmp_path: Path) -> None:
    settings = ProbeSettings(port=0, **auth_settings(tmp_path))
    registered = ServiceBinding(
        OIP_SERVICE,
        lambda s: s.add_registered_method_handlers(  # type: ignore[attr-defined]
            OIP_SERVICE, {"ServerLive": _sync_live_handler()}
        ),
    )
    # Registered methods (every generated add_*_to_server registers its methods) are
    # checked when the server is built.
    with pytest.raises(TypeError, match="ServerLive"):
        build_server(
            settings, tracer_provider=TracerProvider(), deps=ServerDeps("probe", [registered])
        )

    # A method reached only through a generic handler is checked at its first call,
    # which is answered INTERNAL with the generic words, without running the handler.
    generic = ServiceBinding(
        OIP_SERVICE,
        lambda s: s.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    OIP_SERVICE, {"ServerLive": _sync_live_handler()}
                ),
            )
        ),
    )
    server, port = build_server(
        settings, tracer_provider=TracerProvider(), deps=ServerDeps("probe", [generic])
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ServerLive(oip.ServerLiveRequest(), metadata=as_("tok-admin"), timeout=5)
            assert caught.value.code() == grpc.StatusCode.INTERNAL
            assert caught.value.details() == INTERNAL_MESSAGE
    finally:
        await server.stop(None)
