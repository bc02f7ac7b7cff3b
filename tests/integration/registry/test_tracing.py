"""The registry's database work in a traced call: one ``keel.registry.db`` span per unit
of work, under the call's server span; a WatchEvents stream's polling reads make none."""

from __future__ import annotations

import asyncio
from pathlib import Path

from keel.common.v1 import schema_pb2
from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as pb
from tests.support.registry import running_registry
from tests.support.tracing import parent_id, recorded, span_id, traceparent

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER = 0x00F067AA0BA902B7


async def test_each_unit_of_work_of_a_traced_call_is_one_db_span(
    database_url: str, tmp_path: Path
) -> None:
    spans = recorded("keel-registry")
    registry = running_registry(database_url, tmp_path / "data", provider=spans.provider)
    async with registry as (client, _):
        await client.stub.CreateModel(
            pb.CreateModelRequest(
                model=model_pb2.Model(task=schema_pb2.TASK_BINARY_CLASSIFICATION), model_id="churn"
            ),
            metadata=(*client.md, *traceparent(TRACE, CALLER)),
            timeout=10,
        )
        watch = client.stub.WatchEvents(pb.WatchEventsRequest(after_sequence=0), timeout=10)
        await anext(aiter(watch))  # a heartbeat, then the create event
        await anext(aiter(watch))
        await asyncio.sleep(0.3)  # polls every 0.05 s meanwhile
        watch.cancel()
        await spans.wait_for("/keel.registry.v1.RegistryService/CreateModel")
    create = spans.one("/keel.registry.v1.RegistryService/CreateModel", TRACE)
    assert parent_id(create) == CALLER
    [db] = spans.spans("keel.registry.db")
    assert parent_id(db) == span_id(create)
    assert db.attributes is not None
    assert db.attributes["db.operation"] == "Models.create_model"
    assert db.attributes["db.system"] == ("sqlite" if "sqlite" in database_url else "postgresql")
