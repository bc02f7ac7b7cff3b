"""Writers committed together: a unit that fails is rolled back alone, the others land,
and the change sequence stays gapless."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from sqlalchemy import Connection, text

from keel.registry.v1 import event_pb2
from keel.registry.v1 import registry_pb2 as pb
from services.common.db import Database, make_engine
from tests.support.registry import Client


async def test_a_failing_unit_is_rolled_back_alone(tmp_path: Path) -> None:
    database = Database(make_engine(f"sqlite:///{tmp_path / 'g.db'}"))
    await database.write(lambda c: c.execute(text("CREATE TABLE t (v INTEGER)")))

    def insert(value: int) -> object:
        def work(connection: Connection) -> int:
            connection.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
            if value % 3 == 0:
                raise ValueError(f"unit {value} fails after writing")
            return value

        return work

    outcomes = await asyncio.gather(
        *(database.write(insert(v)) for v in range(1, 31)),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    failed = [o for o in outcomes if isinstance(o, ValueError)]
    assert len(failed) == 10 and str(failed[0]) == "unit 3 fails after writing"
    rows = await database.read(lambda c: [r[0] for r in c.execute(text("SELECT v FROM t"))])
    assert sorted(rows) == [v for v in range(1, 31) if v % 3]
    database.close()


async def test_racing_compare_and_set_moves_one_wins_and_the_sequence_has_no_gap(
    registry: Client,
) -> None:
    await registry.create_model("churn")
    for _ in range(2):
        await registry.register("churn")
    await registry.set_alias("churn", "staging", 1)
    attempts = await asyncio.gather(
        *(registry.set_alias("churn", "staging", 2, expected=1) for _ in range(40)),
        return_exceptions=True,
    )
    won = [a for a in attempts if isinstance(a, pb.SetAliasResponse)]
    lost = [a for a in attempts if isinstance(a, grpc.aio.AioRpcError)]
    # The first move lands; the other 39 either find 2 already there (no move) or lose the
    # compare-and-set; none moves the alias a second time.
    assert len(won) + len(lost) == 40 and won
    assert all(a.code() == grpc.StatusCode.ABORTED for a in lost)
    history = await registry.stub.ListAliasHistory(
        pb.ListAliasHistoryRequest(parent="models/churn", alias="staging")
    )
    assert [(m.from_version, m.to_version) for m in history.moves] == [(1, 2), (0, 1)]
    events: list[event_pb2.Event] = []
    async for item in registry.stub.WatchEvents(
        pb.WatchEventsRequest(after_sequence=0, heartbeat_interval=duration_pb2.Duration(seconds=1))
    ):
        if item.WhichOneof("kind") == "event":
            events.append(item.event)
        elif events and item.heartbeat.latest_sequence == events[-1].sequence:
            break
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))


__all__ = ["pytest"]
