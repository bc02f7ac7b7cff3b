"""The page size of a SQLite file: set when the engine creates the file, kept when it exists;
the monitor makes its database with 16 KiB pages (ADR 0012)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import pytest
from pydantic import ValidationError
from sqlalchemy import text

from keel.registry.v1 import registry_pb2_grpc
from services.common.db import make_engine
from services.monitor.service import build_monitor
from services.monitor.settings import MonitorSettings


def _page_size_and_journal(path: Path) -> tuple[int, str]:
    with sqlite3.connect(path) as raw:
        size = raw.execute("PRAGMA page_size").fetchone()[0]
        return size, raw.execute("PRAGMA journal_mode").fetchone()[0]


def test_a_new_file_is_made_with_the_page_size_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    engine = make_engine(f"sqlite:///{path}", page_size=65_536)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x BLOB)"))
        connection.execute(text("INSERT INTO t VALUES (zeroblob(200000))"))
        # the log's limit stays 64 MiB whatever the page size: 1,024 pages of 64 KiB
        assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 1_024
    engine.dispose()
    assert _page_size_and_journal(path) == (65_536, "wal")


def test_an_existing_file_keeps_its_page_size_and_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE t (x INTEGER)")
        raw.execute("INSERT INTO t VALUES (7)")
    engine = make_engine(f"sqlite:///{path}", page_size=65_536)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (8)"))
        assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 16_384
    with engine.connect() as connection:
        assert connection.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [7, 8]
    engine.dispose()
    assert _page_size_and_journal(path) == (4_096, "wal")


@pytest.mark.parametrize("size", [0, 256, 3_000, 131_072])
def test_a_page_size_sqlite_cannot_use_is_refused(tmp_path: Path, size: int) -> None:
    with pytest.raises(ValueError, match=f"page_size: expected a power of two .* got {size}$"):
        make_engine(f"sqlite:///{tmp_path / 'x.db'}", page_size=size)
    assert not (tmp_path / "x.db").exists()


def test_the_monitor_setting_is_checked_where_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MonitorSettings().sqlite_page_size == 16_384
    monkeypatch.setenv("KEEL_MONITOR_SQLITE_PAGE_SIZE", "65536")
    assert MonitorSettings().sqlite_page_size == 65_536
    monkeypatch.setenv("KEEL_MONITOR_SQLITE_PAGE_SIZE", "5000")
    with pytest.raises(ValidationError, match="(?s)sqlite_page_size.*power of two.*got 5000"):
        MonitorSettings()


async def test_the_monitor_makes_its_database_with_its_page_size(tmp_path: Path) -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:  # never called here
        monitor = build_monitor(
            MonitorSettings(data_dir=tmp_path), registry_pb2_grpc.RegistryServiceStub(channel)
        )
        monitor.db.engine.dispose()
    assert _page_size_and_journal(tmp_path / "monitor.db") == (16_384, "wal")
