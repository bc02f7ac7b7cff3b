"""What the join window's storage costs by itself: ``sqlite3`` writing benchmark batches'
segments and ids with the monitor's own statements (``services.monitor.ingest``), tables
(its migrations) and page size, 32 batches a transaction (the monitor's group), with no
service around it. CPU time of this thread (``time.thread_time``: user and system), so
what it prints is the least the monitor's writer can spend per batch on the rows it keeps.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.stats import median
from services.common.db import make_engine, upgrade
from services.monitor.ingest import GROUP_LIMIT, INSERT_IDS, INSERT_SEGMENT
from services.monitor.service import MIGRATIONS
from services.monitor.settings import MonitorSettings

MODEL = "bench-storage"


@dataclass(frozen=True)
class StorageCost:
    """CPU milliseconds per batch (of ``rows`` rows), medians of the repeats."""

    rows: int
    payload_bytes: int
    write_ms: float  # the segment and the ids inserted, and the commit's share
    checkpoint_ms: float  # the write-ahead log copied into the database file

    @property
    def per_thousand_rows_ms(self) -> float:
        return 1000 * (self.write_ms + self.checkpoint_ms) / self.rows


def storage_cost(payload: bytes, rows: int, batches: int = 640, repeats: int = 3) -> StorageCost:
    """Store ``batches`` copies of the serialised batch ``payload`` (of ``rows`` rows) as
    the monitor does, each with ``rows`` new time-ordered ids, in a fresh database per
    repeat; the CPU each batch cost."""
    ids = [
        json.dumps([f"storage-{k * rows + i:012d}" for i in range(rows)]) for k in range(batches)
    ]
    writes, checkpoints = [], []
    for _ in range(repeats):
        write_s, checkpoint_s = _one_database(payload, ids)
        writes.append(1000 * write_s / batches)
        checkpoints.append(1000 * checkpoint_s / batches)
    return StorageCost(rows, len(payload), median(writes), median(checkpoints))


def _one_database(payload: bytes, ids: list[str]) -> tuple[float, float]:
    page_size = MonitorSettings.model_fields["sqlite_page_size"].default
    with tempfile.TemporaryDirectory(prefix="keel-bench-storage-") as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'monitor.db'}", page_size=page_size)
        try:
            upgrade(engine, MIGRATIONS)
            raw = engine.raw_connection()
            try:
                connection = raw.driver_connection
                assert connection is not None
                return _write(connection, payload, ids)
            finally:
                raw.close()
        finally:
            engine.dispose()


def _write(connection: object, payload: bytes, ids: list[str]) -> tuple[float, float]:
    execute = connection.execute  # type: ignore[attr-defined]
    write_s = checkpoint_s = 0.0
    expire = time.time_ns() + 7 * 86_400 * 1_000_000_000
    for first in range(0, len(ids), GROUP_LIMIT):
        started = time.thread_time()
        execute("BEGIN IMMEDIATE")
        for batch_ids in ids[first : first + GROUP_LIMIT]:
            segment = execute(INSERT_SEGMENT["sqlite"], (MODEL, 1, "", "", expire, payload))
            (segment_id,) = segment.fetchone()
            segment.close()
            execute(INSERT_IDS["sqlite"], (MODEL, segment_id, batch_ids))
        execute("COMMIT")
        write_s += time.thread_time() - started
        started = time.thread_time()
        execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        checkpoint_s += time.thread_time() - started
    return write_s, checkpoint_s
