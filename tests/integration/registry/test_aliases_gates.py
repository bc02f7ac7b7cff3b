"""Aliases, their history and rollback, and the promotion gates, over real gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_status import rpc_status

from keel.common.v1 import metric_pb2
from keel.registry.v1 import alias_pb2, gate_pb2, model_pb2
from keel.registry.v1 import registry_pb2 as pb
from tests.support.registry import Client, objective, rpc_error


async def test_compare_and_set_resolve_history_and_rollback(registry: Client) -> None:
    await registry.create_model("churn")
    for _ in range(3):
        await registry.register("churn")
    await registry.set_alias("churn", "staging", 1, expected=0)
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    await asyncio.sleep(0.01)
    await registry.set_alias("churn", "staging", 2, expected=1)
    lost = await rpc_error(registry.set_alias("churn", "staging", 3, expected=1))
    assert lost.code() == grpc.StatusCode.ABORTED
    assert "holds version 2, expected 1" in (lost.details() or "")
    await registry.set_alias("churn", "staging", 3, expected=2)

    now = await registry.stub.ResolveAlias(pb.ResolveAliasRequest(reference="churn@staging"))
    assert (now.alias.version, now.model_version.version) == (3, 3)
    then = await registry.stub.ResolveAlias(
        pb.ResolveAliasRequest(reference="churn@staging", as_of=stamp)
    )
    assert then.model_version.version == 1  # what staging pointed to at time T
    latest = await registry.stub.ResolveAlias(pb.ResolveAliasRequest(reference="churn@latest"))
    assert latest.model_version.version == 3

    back = await registry.stub.RollbackAlias(
        pb.RollbackAliasRequest(name="models/churn/aliases/staging"), metadata=registry.md
    )
    assert (back.alias.version, back.alias.previous_version) == (2, 3)
    again = await registry.stub.RollbackAlias(
        pb.RollbackAliasRequest(name="models/churn/aliases/staging"), metadata=registry.md
    )
    assert again.alias.version == 1
    history = await registry.stub.ListAliasHistory(
        pb.ListAliasHistoryRequest(parent="models/churn", alias="staging")
    )
    kinds = [(m.kind, m.from_version, m.to_version) for m in history.moves]
    assert kinds == [
        (alias_pb2.ALIAS_MOVE_KIND_ROLLBACK, 2, 1),
        (alias_pb2.ALIAS_MOVE_KIND_ROLLBACK, 3, 2),
        (alias_pb2.ALIAS_MOVE_KIND_SET, 2, 3),
        (alias_pb2.ALIAS_MOVE_KIND_SET, 1, 2),
        (alias_pb2.ALIAS_MOVE_KIND_SET, 0, 1),
    ]
    assert all(m.actor == "alice" and m.sequence > 0 for m in history.moves)
    version = (
        await registry.stub.GetModelVersion(
            pb.GetModelVersionRequest(name="models/churn/versions/1")
        )
    ).model_version
    assert list(version.aliases) == ["staging"]


async def test_alias_errors(registry: Client) -> None:
    await registry.create_model("churn")
    await registry.register("churn")
    missing = await rpc_error(registry.set_alias("churn", "staging", 9))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    reserved = await rpc_error(registry.set_alias("churn", "latest", 1))
    assert reserved.code() == grpc.StatusCode.INVALID_ARGUMENT
    absent = await rpc_error(
        registry.stub.GetAlias(pb.GetAliasRequest(name="models/churn/aliases/prod"))
    )
    assert absent.code() == grpc.StatusCode.NOT_FOUND
    bad_ref = await rpc_error(registry.stub.ResolveAlias(pb.ResolveAliasRequest(reference="churn")))
    assert bad_ref.code() == grpc.StatusCode.INVALID_ARGUMENT and "model@alias" in (
        bad_ref.details() or ""
    )


async def test_protected_alias_gates_refuse_with_a_report(registry: Client) -> None:
    await registry.create_model(
        "churn", objectives=[objective("f1", metric_pb2.COMPARATOR_GREATER_OR_EQUAL, 0.8)]
    )
    good = await registry.register("churn", evaluation={"f1": 0.9})
    weak = await registry.register("churn", evaluation={"f1": 0.7})
    await registry.set_alias("churn", "production", good.version)

    dry = await registry.stub.CheckPromotion(
        pb.CheckPromotionRequest(alias="models/churn/aliases/production", version=weak.version)
    )
    assert not dry.gate_report.allowed and dry.gate_report.protected
    call = registry.set_alias("churn", "production", weak.version)
    refused = await rpc_error(call)
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "f1 >= 0.8: not met" in (refused.details() or "")
    status = rpc_status.from_call(refused)  # type: ignore[arg-type]
    assert status is not None
    report = gate_pb2.GateReport()
    assert any(d.Unpack(report) for d in status.details)
    by_kind = {c.kind: c for c in report.checks}
    assert by_kind[gate_pb2.GATE_CHECK_KIND_OBJECTIVE].outcome == gate_pb2.GATE_CHECK_OUTCOME_FAILED
    assert by_kind[gate_pb2.GATE_CHECK_KIND_OBJECTIVE].objective.actual == pytest.approx(0.7)
    assert (
        by_kind[gate_pb2.GATE_CHECK_KIND_CHAMPION_COMPARISON].outcome
        == gate_pb2.GATE_CHECK_OUTCOME_FAILED
    )
    assert (
        by_kind[gate_pb2.GATE_CHECK_KIND_VERSION_READY].outcome
        == gate_pb2.GATE_CHECK_OUTCOME_PASSED
    )
    assert report == dry.gate_report.__class__.FromString(report.SerializeToString())
    held = await registry.stub.GetAlias(pb.GetAliasRequest(name="models/churn/aliases/production"))
    assert held.alias.version == good.version  # nothing moved
    # An unprotected alias takes the same version: only READY is checked.
    await registry.set_alias("churn", "challenger", weak.version)


async def test_incompatible_signature_is_refused(registry: Client) -> None:
    from tests.support.registry import sklearn_artifact

    await registry.create_model("churn")
    await registry.register("churn")
    await registry.set_alias("churn", "production", 1)
    renamed = await registry.register(
        "churn", sklearn_artifact(), features=("f0", "f1", "f2", "income")
    )
    refused = await rpc_error(registry.set_alias("churn", "production", renamed.version))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "input 'income' added (required)" in (refused.details() or "")
    assert "input 'f3' removed" in (refused.details() or "")


async def test_approval_from_someone_other_than_the_author(registry: Client) -> None:
    policy = model_pb2.PromotionPolicy(protected_aliases=["production"], require_approval=True)
    await registry.create_model("churn", promotion_policy=policy)
    await registry.register("churn")  # author: alice
    refused = await rpc_error(registry.set_alias("churn", "production", 1))
    assert "needs 1 approval(s)" in (refused.details() or "")
    own = await rpc_error(
        registry.stub.ApproveModelVersion(
            pb.ApproveModelVersionRequest(name="models/churn/versions/1", alias="production"),
            metadata=registry.md,
        )
    )
    assert own.code() == grpc.StatusCode.PERMISSION_DENIED
    bob = registry.as_user("bob")
    approval = await bob.stub.ApproveModelVersion(
        pb.ApproveModelVersionRequest(
            name="models/churn/versions/1", alias="production", comment="ok"
        ),
        metadata=bob.md,
    )
    assert approval.approval.approver == "bob"
    moved = await registry.set_alias("churn", "production", 1)
    assert moved.alias.version == 1 and moved.alias.protected
    listed = await registry.stub.ListApprovals(
        pb.ListApprovalsRequest(parent="models/churn/versions/1")
    )
    assert [a.approver for a in listed.approvals] == ["bob"]
