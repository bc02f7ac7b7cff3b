"""Every RPC of keel.registry.v1.RegistryService, fuzzed against a real registry.

The registry (SQLite) holds model ``churn`` with versions 1 (``production``) and 2
(``staging``) and deployment ``churn-api``; the requests are random messages, random
messages with plausible names and values, and valid requests with one or two fields
broken. Every answer must be a deliberate status: not INTERNAL or UNKNOWN, no hang, no
stack trace. Model ``sentinel``, which no request names, must read back intact after.

``KEEL_FUZZ_EXAMPLES=10000 .venv/bin/pytest tests/fuzz/test_fuzz_registry.py`` runs the
slow suite (see tests/fuzz/harness.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from hypothesis import strategies as st

from keel.common.v1 import metric_pb2
from keel.registry.v1 import deployment_pb2, model_pb2
from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc
from tests.fuzz.harness import (
    TIMEOUT_S,
    Rpc,
    Tally,
    call,
    calls,
    examples_per_rpc,
    fuzz,
    rpcs,
)
from tests.fuzz.servers import SERVING, ServerThread, channel_to, health, tracer_provider
from tests.support.fuzzing import Hints, broken_names, requests, sequence_mutants
from tests.support.registry import (
    metrics,
    running_registry,
    signature,
    sklearn_artifact,
    upload_requests,
    xgboost_artifact,
)

pytestmark = pytest.mark.timeout(TIMEOUT_S)
SERVICE = pb.DESCRIPTOR.services_by_name["RegistryService"]
RPCS = rpcs(SERVICE, endless=("WatchEvents",))
USER = (("x-keel-user", "alice"),)

SHA = xgboost_artifact(trees=5).sha256
NAMES = [
    "models/churn",
    "models/churn/versions/1",
    "models/churn/versions/2",
    "models/churn/aliases/production",
    "models/churn/aliases/staging",
    "deployments/churn-api",
    f"artifacts/{SHA}",
]
FILTER_TOKENS = [
    "model", "version", "status", "flavor", "author", "alias", "create_time", "tags.team",
    "metrics.f1", "training_metrics.auc", "cv_metrics.f1", "lineage.code_revision",
    "resource", "actor", "action", "time", "sequence", "=", "!=", "<", "<=", ">", ">=",
    "LIKE", "IN", "NOT", "AND", "OR", "(", ")", ",", '"churn"', '"%"', '"_"', '"\\"',
    '"READY"', '"ALIAS_SET"', '"2025-06-01T00:00:00Z"', '"not a time"', "0.8", "-1", "1e999",
    "1e", "9223372036854775808", "desc", "asc", "", '"', "\\",
]  # fmt: skip


def expressions() -> st.SearchStrategy[str]:
    """Filter and order expressions: valid ones and token soup that is almost one."""
    soup = st.lists(st.sampled_from(FILTER_TOKENS), max_size=12).map(" ".join)
    valid = st.sampled_from(
        [
            'model = "churn" AND metrics.f1 >= 0.8',
            'NOT tags.team = "risk" OR version IN (1, 2)',
            'action IN ("ALIAS_SET", "ALIAS_ROLLED_BACK") AND sequence > 0',
            "metrics.f1 desc, create_time",
            "sequence desc",
        ]
    )
    return st.one_of(valid, soup)


def timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    return st.builds(
        timestamp_pb2.Timestamp,
        seconds=st.integers(0, 4_102_444_800),
        nanos=st.integers(0, 999_999_999),
    )


HINTS: Hints = {
    "name": broken_names(NAMES),
    "parent": broken_names(NAMES[:3]),
    "CheckPromotionRequest.alias": broken_names(NAMES[3:5]),
    "alias": st.sampled_from(["production", "staging", "canary", "Production", ""]),
    "model_id": st.sampled_from(["fuzzed", "churn", "a", "a" * 63, "a" * 64, "-", "Fuzz"]),
    "deployment_id": st.sampled_from(["churn-web", "churn-api", "x" * 64, "A"]),
    "models": broken_names(NAMES[:1]),
    "model": broken_names(NAMES[:1]),
    "target": broken_names(NAMES[1:5]),
    "reference": st.sampled_from(
        ["churn@production", "churn@latest", "churn@", "@production", "churn@@x", "churn"]
    ),
    "version": st.sampled_from([1, 2, 3, 0, -1]),
    "expected_version": st.sampled_from([1, 2, 0, -1]),
    "sha256": st.sampled_from([SHA, SHA.upper(), SHA[:-1], hashlib.sha256(b"").hexdigest()]),
    "filter": expressions(),
    "order_by": expressions(),
    "page_size": st.sampled_from([0, 1, 2, 1000, 1001, -1]),
    "weight": st.sampled_from([0, 30, 70, 100, 101, -1]),
    "google.protobuf.Timestamp": timestamps(),
}


def _version(artifact_sha: str = SHA) -> model_pb2.ModelVersion:
    return model_pb2.ModelVersion(
        flavor=model_pb2.FLAVOR_XGBOOST,
        artifact=model_pb2.Artifact(sha256=artifact_sha),
        signature=signature(("f0", "f1", "f2", "f3")),
        evaluation_metrics=metrics(f1=0.9, accuracy=0.8),
        tags={"team": "risk"},
    )


def _deployment() -> deployment_pb2.Deployment:
    routes = [
        deployment_pb2.Route(target="models/churn/versions/1", weight=70, variant="a"),
        deployment_pb2.Route(target="models/churn/versions/2", weight=30, variant="b", canary=True),
    ]
    return deployment_pb2.Deployment(
        name="deployments/churn-api", model="models/churn", routes=routes
    )


def seeds() -> dict[str, list[Any]]:
    """Valid requests of every RPC, to send as they are or with a field or two broken."""
    model = model_pb2.Model(
        name="models/churn",
        description="churn",
        task=1,  # type: ignore[arg-type]
        objectives=[metric_pb2.Objective(metric="f1", comparator=1, threshold=0.8)],  # type: ignore[arg-type]
        promotion_policy=model_pb2.PromotionPolicy(protected_aliases=["production"]),
    )
    mask = field_mask_pb2.FieldMask(paths=["description", "tags"])
    version_patch = model_pb2.ModelVersion(name="models/churn/versions/2", description="d")
    v1, v2 = "models/churn/versions/1", "models/churn/versions/2"
    staging, production = "models/churn/aliases/staging", "models/churn/aliases/production"
    since = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    return {
        "CreateModel": [pb.CreateModelRequest(model=model, model_id="fuzzed")],
        "GetModel": [pb.GetModelRequest(name="models/churn")],
        "UpdateModel": [pb.UpdateModelRequest(model=model, update_mask=mask)],
        "ListModels": [pb.ListModelsRequest(page_size=1, filter='model = "churn"')],
        "ArchiveModel": [pb.ArchiveModelRequest(name="models/fuzzed")],
        "DeleteModel": [pb.DeleteModelRequest(name="models/fuzzed", etag="1")],
        "CreateModelVersion": [
            pb.CreateModelVersionRequest(parent="models/churn", model_version=_version())
        ],
        "GetModelVersion": [pb.GetModelVersionRequest(name=v1, view=2)],  # type: ignore[arg-type]
        "ListModelVersions": [pb.ListModelVersionsRequest(parent="models/churn", page_size=1)],
        "SearchModelVersions": [
            pb.SearchModelVersionsRequest(filter='model = "churn"', order_by="version desc")
        ],
        "UpdateModelVersion": [
            pb.UpdateModelVersionRequest(model_version=version_patch, update_mask=mask)
        ],
        "ArchiveModelVersion": [pb.ArchiveModelVersionRequest(name=v2, reason="fuzz")],
        "DownloadArtifact": [pb.DownloadArtifactRequest(name=f"artifacts/{SHA}", offset=10)],
        "GetArtifact": [pb.GetArtifactRequest(name=f"artifacts/{SHA}")],
        "SetAlias": [pb.SetAliasRequest(name=staging, version=1, expected_version=2)],
        "GetAlias": [pb.GetAliasRequest(name=production)],
        "ListAliases": [pb.ListAliasesRequest(parent="models/churn")],
        "DeleteAlias": [pb.DeleteAliasRequest(name=staging, expected_version=2)],
        "ResolveAlias": [pb.ResolveAliasRequest(reference="churn@production", as_of=since)],
        "ListAliasHistory": [
            pb.ListAliasHistoryRequest(parent="models/churn", alias="production", start_time=since)
        ],
        "RollbackAlias": [pb.RollbackAliasRequest(name=staging, reason="fuzz")],
        "CheckPromotion": [pb.CheckPromotionRequest(alias=production, version=2)],
        "ApproveModelVersion": [pb.ApproveModelVersionRequest(name=v2, alias="production")],
        "RejectModelVersion": [
            pb.RejectModelVersionRequest(name=v2, alias="production", comment="no")
        ],
        "ListApprovals": [pb.ListApprovalsRequest(parent=v2)],
        "ListAuditEntries": [pb.ListAuditEntriesRequest(filter='model = "churn"')],
        "CreateDeployment": [
            pb.CreateDeploymentRequest(deployment=_deployment(), deployment_id="churn-web")
        ],
        "GetDeployment": [pb.GetDeploymentRequest(name="deployments/churn-api")],
        "ListDeployments": [pb.ListDeploymentsRequest(model="models/churn")],
        "UpdateDeployment": [
            pb.UpdateDeploymentRequest(
                deployment=_deployment(), update_mask=field_mask_pb2.FieldMask(paths=["routes"])
            )
        ],
        "DeleteDeployment": [pb.DeleteDeploymentRequest(name="deployments/churn-web")],
        "ListDeploymentRevisions": [
            pb.ListDeploymentRevisionsRequest(name="deployments/churn-api")
        ],
        "AbortCanary": [pb.AbortCanaryRequest(name="deployments/churn-api", alert_rule="f1")],
        "WatchEvents": [
            pb.WatchEventsRequest(
                after_sequence=0, heartbeat_interval=duration_pb2.Duration(seconds=1)
            )
        ],
        "UploadArtifact": [],
    }


SEEDS = seeds()
assert set(SEEDS) == {rpc.name for rpc in RPCS}, "a seed list for every RPC"


MIN_INT64 = -(2**63)
REGRESSIONS = {  # what the fuzzer found once, sent on every run
    "CreateModelVersion": [
        call(
            pb.CreateModelVersionRequest(
                parent="models/churn",
                model_version=model_pb2.ModelVersion(flavor=-(2**31)),  # type: ignore[arg-type]
            )
        )
    ],
    "ResolveAlias": [
        call(
            pb.ResolveAliasRequest(
                reference="churn@production", as_of=timestamp_pb2.Timestamp(seconds=MIN_INT64)
            )
        )
    ],
    "ListAliasHistory": [
        call(
            pb.ListAliasHistoryRequest(
                parent="models/churn", end_time=timestamp_pb2.Timestamp(nanos=10**9)
            )
        )
    ],
    "WatchEvents": [
        call(pb.WatchEventsRequest(heartbeat_interval=duration_pb2.Duration(seconds=MIN_INT64)))
    ],
    "GetModel": [call(pb.GetModelRequest(name="models/" + "O" * 70_000))],
    "GetModelVersion": [
        call(pb.GetModelVersionRequest(name="models/churn/versions/9223372036854775808")),
        call(pb.GetModelVersionRequest(name="models/churn/versions/²")),
    ],
    "ListAuditEntries": [call(pb.ListAuditEntriesRequest(filter="sequence > " + "9" * 5000))],
}


def upload_streams() -> list[list[pb.UploadArtifactRequest]]:
    small = b"not a model, " * 100
    return [list(upload_requests(xgboost_artifact(trees=5).data)), list(upload_requests(small))]


def strategy(rpc: Rpc) -> st.SearchStrategy[Any]:
    streams = sequence_mutants(upload_streams(), HINTS) if rpc.name == "UploadArtifact" else None
    return calls(rpc, requests(rpc.method.input_type, HINTS, SEEDS[rpc.name]), streams)


@asynccontextmanager
async def registry_stack(root: Path) -> AsyncIterator[str]:
    url = f"sqlite:///{root / 'r.db'}"
    registry = running_registry(url, root / "registry", provider=tracer_provider())
    async with registry as (client, port):
        await client.create_model("churn")
        await client.register("churn", xgboost_artifact(trees=5))
        await client.set_alias("churn", "production", 1)
        await client.register("churn", xgboost_artifact(trees=3, seed=1))
        await client.set_alias("churn", "staging", 2)
        await client.stub.CreateDeployment(
            pb.CreateDeploymentRequest(deployment=_deployment(), deployment_id="churn-api"),
            metadata=USER,
            timeout=10,
        )
        await client.create_model("sentinel")
        await client.register("sentinel", sklearn_artifact())
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    root = tmp_path_factory.mktemp("fuzz-registry")
    with ServerThread(lambda: registry_stack(root)) as address, channel_to(address) as found:
        yield found


@pytest.fixture(scope="module")
def tally(tallies: dict[str, Tally]) -> Tally:
    return tallies.setdefault("registry", Tally("registry"))


@pytest.mark.parametrize("rpc", RPCS, ids=[rpc.name for rpc in RPCS])
def test_every_answer_is_deliberate(
    channel: grpc.Channel, tally: Tally, rpc: Rpc, request: pytest.FixtureRequest
) -> None:
    nodeid, found = request.node.nodeid, REGRESSIONS.get(rpc.name, [])
    fuzz(channel, rpc, strategy(rpc), examples_per_rpc(RPCS), tally, nodeid, found)
    assert health(channel, SERVICE.full_name) == SERVING


def test_the_registry_is_healthy_and_correct_after(channel: grpc.Channel) -> None:
    assert health(channel) == SERVING
    stub = pb_grpc.RegistryServiceStub(channel)
    reply = stub.GetModelVersion(
        pb.GetModelVersionRequest(name="models/sentinel/versions/1"), timeout=10
    )
    version = reply.model_version
    assert version.status == model_pb2.MODEL_VERSION_STATUS_READY
    assert version.artifact.sha256 == sklearn_artifact().sha256
    data = b"".join(
        part.chunk
        for part in stub.DownloadArtifact(
            pb.DownloadArtifactRequest(name=version.artifact.name), timeout=30
        )
    )
    assert data == sklearn_artifact().data
