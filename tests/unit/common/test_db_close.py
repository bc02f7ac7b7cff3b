"""A closed database refuses work with UNAVAILABLE instead of opening a connection in a
new pool that nothing would close; work already running finishes first."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection
from sqlalchemy.pool import QueuePool

from services.common.db import Database, make_engine
from services.common.errors import Unavailable


def count(connection: Connection) -> int:
    connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    return int(connection.exec_driver_sql("SELECT count(*) FROM t").scalar_one())


def insert(connection: Connection) -> None:
    connection.exec_driver_sql("INSERT INTO t VALUES (1)")


def checked_out(db: Database) -> int:
    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


async def test_after_close_reads_and_writes_are_unavailable(tmp_path: Path) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    assert await db.write(count) == 0
    await db.aclose()
    with pytest.raises(Unavailable, match="stopping"):
        await db.write(insert)
    with pytest.raises(Unavailable, match="stopping"):
        await db.read(count)
    assert checked_out(db) == 0


async def test_close_lets_the_running_write_finish_and_refuses_the_queued_ones(
    tmp_path: Path,
) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    await db.write(count)
    started, release = threading.Event(), threading.Event()

    def slow(connection: Connection) -> None:
        started.set()
        release.wait(10)
        insert(connection)

    running = asyncio.ensure_future(db.write(slow))
    while not started.is_set():
        await asyncio.sleep(0.005)
    queued = asyncio.ensure_future(db.write(insert))  # waits for the writer
    await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(db.aclose())
    await asyncio.sleep(0.01)
    release.set()
    await closing
    await running  # committed
    with pytest.raises(Unavailable, match="stopping"):
        await queued
    assert checked_out(db) == 0
    reopened = Database(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    assert await reopened.read(count) == 1  # the running write, not the refused one
    await reopened.aclose()
