"""Models and versions over real gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import field_mask_pb2

from keel.common.v1 import metric_pb2, schema_pb2
from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as pb
from tests.support.registry import (
    Client,
    objective,
    rpc_error,
    signature,
    sklearn_artifact,
    xgboost_artifact,
)


async def test_create_get_update_and_list_models(registry: Client) -> None:
    created = await registry.create_model(
        "churn",
        description="who leaves",
        owner_team="risk",
        objectives=[objective("f1", metric_pb2.COMPARATOR_GREATER_OR_EQUAL, 0.8)],
    )
    assert created.name == "models/churn" and created.created_by == "alice"
    assert list(created.promotion_policy.protected_aliases) == ["production"]
    got = (await registry.stub.GetModel(pb.GetModelRequest(name="models/churn"))).model
    assert got.description == "who leaves" and got.objectives[0].metric == "f1"

    patch = model_pb2.Model(
        name="models/churn", description="customers who leave", tags={"team": "risk"}
    )
    updated = (
        await registry.stub.UpdateModel(
            pb.UpdateModelRequest(
                model=patch, update_mask=field_mask_pb2.FieldMask(paths=["description", "tags"])
            ),
            metadata=registry.md,
        )
    ).model
    assert updated.description == "customers who leave" and dict(updated.tags) == {"team": "risk"}
    assert updated.owner_team == "risk" and len(updated.objectives) == 1  # not in the mask: kept

    for name in ("a-model", "b-model", "c-model"):
        await registry.create_model(name)
    first = await registry.stub.ListModels(pb.ListModelsRequest(page_size=2))
    assert [m.name for m in first.models] == ["models/a-model", "models/b-model"]
    second = await registry.stub.ListModels(
        pb.ListModelsRequest(page_size=2, page_token=first.next_page_token)
    )
    assert [m.name for m in second.models] == ["models/c-model", "models/churn"]
    assert second.next_page_token == ""


async def test_bad_model_requests_are_refused_clearly(registry: Client) -> None:
    await registry.create_model("churn")
    taken = await rpc_error(registry.create_model("churn"))
    assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
    bad_name = await rpc_error(registry.create_model("Churn_Model"))
    assert bad_name.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model_id" in (bad_name.details() or "") and "[a-z0-9-]" in (bad_name.details() or "")
    unknown = await rpc_error(
        registry.create_model("x", objectives=[objective("f2", metric_pb2.COMPARATOR_GREATER, 0.5)])
    )
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown metric 'f2'" in (unknown.details() or "")
    missing = await rpc_error(registry.stub.GetModel(pb.GetModelRequest(name="models/nope")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    mask = await rpc_error(
        registry.stub.UpdateModel(
            pb.UpdateModelRequest(
                model=model_pb2.Model(name="models/churn"),
                update_mask=field_mask_pb2.FieldMask(paths=["task"]),
            )
        )
    )
    assert mask.code() == grpc.StatusCode.INVALID_ARGUMENT and "task" in (mask.details() or "")


async def test_versions_are_numbered_by_the_server_and_ready(registry: Client) -> None:
    await registry.create_model("churn")
    one = await registry.register("churn", evaluation={"f1": 0.9})
    two = await registry.register("churn", sklearn_artifact(), evaluation={"f1": 0.85})
    assert (one.version, two.version) == (1, 2)
    assert one.status == model_pb2.MODEL_VERSION_STATUS_READY and one.author == "alice"
    assert one.artifact.format == model_pb2.ARTIFACT_FORMAT_XGBOOST_UBJSON
    assert two.artifact.format == model_pb2.ARTIFACT_FORMAT_SKOPS
    got = (
        await registry.stub.GetModelVersion(
            pb.GetModelVersionRequest(name="models/churn/versions/2")
        )
    ).model_version
    assert got.evaluation_metrics[0].name == "f1" and got.evaluation_metrics[
        0
    ].value == pytest.approx(0.85)
    listed = await registry.stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/churn", page_size=1)
    )
    assert [v.version for v in listed.model_versions] == [2]
    rest = await registry.stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/churn", page_token=listed.next_page_token)
    )
    assert [v.version for v in rest.model_versions] == [1]


async def test_a_retried_registration_with_the_same_request_id_creates_one_version(
    registry: Client,
) -> None:
    await registry.create_model("churn")
    first = await registry.register("churn", request_id="run-42")
    again = await registry.register("churn", request_id="run-42")
    assert first.version == again.version == 1
    model = (await registry.stub.GetModel(pb.GetModelRequest(name="models/churn"))).model
    assert model.latest_version == 1


async def test_the_same_model_created_by_many_callers_at_once(registry: Client) -> None:
    """One CreateModel wins and the rest are ALREADY_EXISTS (on PostgreSQL the losers'
    inserts hit the unique key; they run again and see the winner's row)."""
    for name in ("churn", "fraud", "upsell"):
        calls = [registry.create_model(name) for _ in range(6)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        created = [o for o in outcomes if isinstance(o, model_pb2.Model)]
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(created) == 1 and created[0].name == f"models/{name}", outcomes
        assert [e.code() for e in refused] == [grpc.StatusCode.ALREADY_EXISTS] * 5, outcomes


async def test_registration_checks_artifact_and_signature(registry: Client) -> None:
    await registry.create_model("churn")
    wrong_count = await rpc_error(registry.register("churn", features=("a", "b", "c")))
    assert wrong_count.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "3" in (wrong_count.details() or "") and "4" in (wrong_count.details() or "")
    missing = model_pb2.ModelVersion(
        flavor=model_pb2.FLAVOR_XGBOOST,
        artifact=model_pb2.Artifact(sha256="0" * 64),
        signature=xgboost_signature(),
    )
    not_uploaded = await rpc_error(
        registry.stub.CreateModelVersion(
            pb.CreateModelVersionRequest(parent="models/churn", model_version=missing)
        )
    )
    assert not_uploaded.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "UploadArtifact" in (not_uploaded.details() or "")
    versions = await registry.stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/churn")
    )
    assert list(versions.model_versions) == []  # nothing half-written


def xgboost_signature() -> schema_pb2.Signature:
    return signature(xgboost_artifact().features)


async def test_versions_are_immutable_except_description_tags_and_card(registry: Client) -> None:
    await registry.create_model("churn")
    await registry.register("churn")
    patch = model_pb2.ModelVersion(
        name="models/churn/versions/1", description="first", model_card="# Churn v1"
    )
    updated = (
        await registry.stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                model_version=patch,
                update_mask=field_mask_pb2.FieldMask(paths=["description", "model_card"]),
            )
        )
    ).model_version
    assert (updated.description, updated.model_card) == ("first", "# Churn v1")
    frozen = await rpc_error(
        registry.stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                model_version=model_pb2.ModelVersion(
                    name="models/churn/versions/1", flavor=model_pb2.FLAVOR_SKLEARN
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["flavor"]),
            )
        )
    )
    assert frozen.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_archive_and_delete_are_refused_while_referenced(registry: Client) -> None:
    await registry.create_model("churn")
    await registry.register("churn")
    await registry.set_alias("churn", "staging", 1)
    held = await rpc_error(
        registry.stub.ArchiveModelVersion(
            pb.ArchiveModelVersionRequest(name="models/churn/versions/1")
        )
    )
    assert held.code() == grpc.StatusCode.FAILED_PRECONDITION and "staging" in (
        held.details() or ""
    )
    refused = await rpc_error(registry.stub.DeleteModel(pb.DeleteModelRequest(name="models/churn")))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    await registry.stub.DeleteAlias(pb.DeleteAliasRequest(name="models/churn/aliases/staging"))
    deleted = await registry.stub.DeleteModel(pb.DeleteModelRequest(name="models/churn"))
    assert deleted.deleted_versions == 1
    gone = await rpc_error(
        registry.stub.GetArtifact(
            pb.GetArtifactRequest(name=f"artifacts/{xgboost_artifact().sha256}")
        )
    )
    assert gone.code() == grpc.StatusCode.NOT_FOUND  # the unreferenced artifact was collected


async def test_a_malformed_artifact_digest_is_invalid_argument(registry: Client) -> None:
    await registry.create_model("churn")
    version = model_pb2.ModelVersion(
        flavor=model_pb2.FLAVOR_XGBOOST,
        artifact=model_pb2.Artifact(sha256="not-a-digest"),
        signature=xgboost_signature(),
    )
    refused = await rpc_error(
        registry.stub.CreateModelVersion(
            pb.CreateModelVersionRequest(parent="models/churn", model_version=version)
        )
    )
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model_version.artifact.sha256" in (refused.details() or "")
