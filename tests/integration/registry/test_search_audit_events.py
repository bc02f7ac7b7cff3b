"""Search with the filter grammar, the audit log, and the resumable change stream."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import duration_pb2

from keel.registry.v1 import deployment_pb2, event_pb2, model_pb2
from keel.registry.v1 import registry_pb2 as pb
from tests.support.registry import Client, rpc_error, sklearn_artifact


async def populate(registry: Client) -> None:
    await registry.create_model("churn")
    await registry.create_model("fraud")
    await registry.register("churn", evaluation={"f1": 0.71}, tags={"team": "risk"})
    await registry.register(
        "churn", sklearn_artifact(), evaluation={"f1": 0.83}, tags={"team": "risk"}
    )
    await registry.register("churn", evaluation={"f1": 0.91})
    await registry.register("fraud", evaluation={"f1": 0.88}, tags={"team": "payments"})
    await registry.set_alias("churn", "production", 2)


async def search(
    registry: Client, text: str, order: str = "", size: int = 0, token: str = ""
) -> pb.SearchModelVersionsResponse:
    return await registry.stub.SearchModelVersions(
        pb.SearchModelVersionsRequest(filter=text, order_by=order, page_size=size, page_token=token)
    )


def refs(reply: pb.SearchModelVersionsResponse) -> list[str]:
    return [v.name for v in reply.model_versions]


async def test_search_filters_orders_and_pages(registry: Client) -> None:
    await populate(registry)
    found = await search(registry, 'model = "churn" AND metrics.f1 >= 0.8', "metrics.f1 desc")
    assert refs(found) == ["models/churn/versions/3", "models/churn/versions/2"]
    tagged = await search(
        registry, 'tags.team = "risk" OR (flavor = "XGBOOST" AND NOT model = "churn")', "version"
    )
    assert refs(tagged) == [
        "models/churn/versions/1",
        "models/fraud/versions/1",
        "models/churn/versions/2",
    ] or sorted(refs(tagged)) == sorted(
        ["models/churn/versions/1", "models/churn/versions/2", "models/fraud/versions/1"]
    )
    held = await search(registry, 'alias = "production"')
    assert refs(held) == ["models/churn/versions/2"]
    assert list(held.model_versions[0].aliases) == ["production"]
    page1 = await search(registry, "", "metrics.f1 desc", size=2)
    page2 = await search(registry, "", "metrics.f1 desc", size=2, token=page1.next_page_token)
    assert refs(page1) + refs(page2) == [
        "models/churn/versions/3",
        "models/fraud/versions/1",
        "models/churn/versions/2",
        "models/churn/versions/1",
    ]
    assert page2.next_page_token == ""
    other_query = await rpc_error(
        search(registry, 'model = "churn"', size=2, token=page1.next_page_token)
    )
    assert other_query.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in (
        other_query.details() or ""
    )


async def test_invalid_filters_name_the_position(registry: Client) -> None:
    bad = await rpc_error(search(registry, "metrics.f1 >= "))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "position 14" in (bad.details() or "")
    unknown = await rpc_error(search(registry, 'colour = "red"'))
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT and "position 0" in (
        unknown.details() or ""
    )


async def test_every_mutation_is_in_the_audit_log(registry: Client) -> None:
    await populate(registry)
    entries = await registry.stub.ListAuditEntries(
        pb.ListAuditEntriesRequest(filter='model = "churn"')
    )
    actions = [e.action for e in entries.entries]
    assert actions == [
        event_pb2.CHANGE_TYPE_MODEL_CREATED,
        *[event_pb2.CHANGE_TYPE_MODEL_VERSION_CREATED, event_pb2.CHANGE_TYPE_MODEL_VERSION_READY]
        * 3,
        event_pb2.CHANGE_TYPE_ALIAS_SET,
    ]
    assert all(e.actor == "alice" for e in entries.entries)
    sequences = [e.sequence for e in entries.entries]
    assert sequences == sorted(sequences)
    moved = entries.entries[-1]
    assert moved.resource == "models/churn/aliases/production" and moved.after.Is(
        __import__("keel.registry.v1.alias_pb2", fromlist=["Alias"]).Alias.DESCRIPTOR
    )
    newest = await registry.stub.ListAuditEntries(
        pb.ListAuditEntriesRequest(
            filter='action = "ALIAS_SET"', order_by="sequence desc", page_size=1
        )
    )
    assert [e.sequence for e in newest.entries] == [sequences[-1]]


async def collect_events(stream: object, count: int) -> list[pb.WatchEventsResponse]:
    seen: list[pb.WatchEventsResponse] = []
    async for item in stream:  # type: ignore[attr-defined]
        if item.WhichOneof("kind") == "event":
            seen.append(item)
            if len(seen) == count:
                break
    return seen


async def test_watch_replays_missed_events_in_order_then_streams_live_ones(
    registry: Client,
) -> None:
    await populate(registry)
    # 2 models, 4 versions (created + ready), 1 alias move
    everything = await collect_events(
        registry.stub.WatchEvents(pb.WatchEventsRequest(after_sequence=0)), 11
    )
    sequences = [e.event.sequence for e in everything]
    assert sequences == list(range(1, 12))
    assert everything[-1].event.type == event_pb2.CHANGE_TYPE_ALIAS_SET
    resume_at = sequences[4]
    resumed = await collect_events(
        registry.stub.WatchEvents(pb.WatchEventsRequest(after_sequence=resume_at)), 6
    )
    assert [e.event.sequence for e in resumed] == sequences[5:]

    live_stream = registry.stub.WatchEvents(
        pb.WatchEventsRequest(
            models=["models/churn"],
            types=[event_pb2.CHANGE_TYPE_ALIAS_SET],
            heartbeat_interval=duration_pb2.Duration(seconds=1),
        )
    )
    first = await anext(aiter(live_stream))
    assert first.heartbeat.latest_sequence == sequences[-1]
    live = asyncio.ensure_future(collect_events(live_stream, 1))
    await registry.set_alias("churn", "staging", 3)
    [moved] = await asyncio.wait_for(live, 10)
    assert moved.event.type == event_pb2.CHANGE_TYPE_ALIAS_SET
    assert (
        moved.event.alias.name == "models/churn/aliases/staging" and moved.event.alias.version == 3
    )
    assert moved.event.sequence == sequences[-1] + 1
    live_stream.cancel()


async def test_deployments_weights_revisions_and_canary_abort(registry: Client) -> None:
    await registry.create_model("churn")
    await registry.register("churn")
    await registry.register("churn")
    await registry.set_alias("churn", "production", 1)
    deployment = model_deployment(
        [
            ("models/churn/aliases/production", 90, "control", False),
            ("models/churn/versions/2", 10, "canary", True),
        ]
    )
    created = (
        await registry.stub.CreateDeployment(
            pb.CreateDeploymentRequest(deployment=deployment, deployment_id="churn-api"),
            metadata=registry.md,
        )
    ).deployment
    assert created.revision == 1 and [r.resolved_version for r in created.routes] == [1, 2]
    bad = model_deployment(
        [("models/churn/versions/1", 60, "a", False), ("models/churn/versions/2", 30, "b", False)]
    )
    refused = await rpc_error(
        registry.stub.CreateDeployment(
            pb.CreateDeploymentRequest(deployment=bad, deployment_id="x")
        )
    )
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and "sum to 100, got 90" in (
        refused.details() or ""
    )

    aborted = await registry.stub.AbortCanary(
        pb.AbortCanaryRequest(name="deployments/churn-api", alert_rule="f1-drop"),
        metadata=registry.md,
    )
    assert aborted.changed and [r.weight for r in aborted.deployment.routes] == [100, 0]
    assert aborted.deployment.revision == 2
    revisions = await registry.stub.ListDeploymentRevisions(
        pb.ListDeploymentRevisionsRequest(name="deployments/churn-api")
    )
    assert [r.revision for r in revisions.revisions] == [2, 1]
    assert [r.weight for r in revisions.revisions[1].routes] == [90, 10]
    entries = await registry.stub.ListAuditEntries(
        pb.ListAuditEntriesRequest(filter='action = "DEPLOYMENT_CANARY_ABORTED"')
    )
    assert entries.entries[0].reason == "guard alert rule 'f1-drop' fired"
    listed = await registry.stub.ListDeployments(pb.ListDeploymentsRequest(model="models/churn"))
    assert [d.name for d in listed.deployments] == ["deployments/churn-api"]
    held = await rpc_error(registry.stub.DeleteModel(pb.DeleteModelRequest(name="models/churn")))
    assert "deployment 'churn-api'" in (held.details() or "")
    await registry.stub.DeleteDeployment(pb.DeleteDeploymentRequest(name="deployments/churn-api"))
    gone = await rpc_error(
        registry.stub.GetDeployment(pb.GetDeploymentRequest(name="deployments/churn-api"))
    )
    assert gone.code() == grpc.StatusCode.NOT_FOUND


def model_deployment(routes: list[tuple[str, int, str, bool]]) -> deployment_pb2.Deployment:
    return deployment_pb2.Deployment(
        model="models/churn",
        routes=[
            deployment_pb2.Route(target=t, weight=w, variant=v, canary=c) for t, w, v, c in routes
        ],
        sticky_key_parameter="customer_id",
    )


__all__ = ["model_pb2"]
