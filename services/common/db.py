"""A service's database: engine, schema migrations, and units of work.

SQLite (the embedded default) runs in WAL mode and every write transaction starts with
``BEGIN IMMEDIATE``, so concurrent writers queue instead of failing half-way; on
PostgreSQL, rows that serialise writers are locked with ``SELECT … FOR UPDATE``.
Blocking database work runs in worker threads, one transaction per unit of work. A
PostgreSQL server that cannot be reached, or goes away mid-call, is ``Unavailable``
(retry later), never an unknown error. A unit of work that loses a race on a unique key
(two callers inserting the same row at once, which PostgreSQL lets both try) runs again
once, when the other's row is there to be seen; losing twice is ``Conflict`` (ABORTED).
SQLite's write-ahead log is copied into the database file by a thread of its own after
commits, not by the committing writer (see ``_Checkpointer``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, event, exc
from sqlalchemy.engine import Engine

from services.common.errors import Conflict, Unavailable

WRITE_OPTION = "keel_write"
GROUP_LIMIT = 64  # units of work committed together at most (SQLite)
# A writer's commit checkpoints the log itself only past this size (SQLite's default is
# 1,000 pages): below it, the checkpointing thread does it.
WAL_AUTOCHECKPOINT_BYTES = 64 * 1024 * 1024
SQLITE_PAGE_SIZES = tuple(2**k for k in range(9, 17))  # 512 … 65,536 bytes
CHECKPOINT_INTERVAL_S = 0.1  # the checkpointing thread's pause between two checkpoints
UNIQUE_RACE_ATTEMPTS = 2  # a unit that loses a race on a unique key runs once more
MIGRATION_LOCK = 0x6B65656C  # "keel"
T = TypeVar("T")
# SQLSTATE classes of a server that is going away or cannot take the call now: connection
# exception, insufficient resources (too many connections), operator intervention
# (shutdown, crash recovery, "cannot connect now").
_OUTAGE_SQLSTATES = ("08", "53", "57P")


def sqlite_page_size(value: int) -> int:
    """``value`` if SQLite can use it as a page size, else ValueError saying what can."""
    if value not in SQLITE_PAGE_SIZES:
        raise ValueError(f"expected a power of two from 512 to 65536 bytes, got {value}")
    return value


def make_engine(url: str, *, page_size: int | None = None) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and BEGIN IMMEDIATE.

    ``page_size`` (bytes) is the page size of a SQLite file this engine creates; a file
    that exists keeps the size it was made with (SQLite cannot change it in WAL mode).
    None: SQLite's default, 4,096. PostgreSQL has its own and ignores it."""
    if page_size is not None:
        try:
            sqlite_page_size(page_size)
        except ValueError as error:
            raise ValueError(f"page_size: {error}") from None
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        if page_size is not None:  # before WAL: only a file without pages yet takes it
            cursor.execute(f"PRAGMA page_size={page_size}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        pages = WAL_AUTOCHECKPOINT_BYTES // cursor.execute("PRAGMA page_size").fetchone()[0]
        cursor.execute(f"PRAGMA wal_autocheckpoint={pages}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # Writers take the write lock up front; readers read in autocommit.
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upgrade(engine: Engine, migrations: Path) -> None:
    """Create or upgrade the schema to the newest migration of the ``migrations`` folder
    (an Alembic script folder whose env.py names the service's own version table)."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together migrate one at a time.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """Runs units of work (functions of a connection) in a transaction, off the loop.

    On SQLite, which has one writer at a time, this process's writers queue here (rather
    than in SQLite's busy handler, which sleeps up to 100 ms between retries) and are
    committed in groups: the units waiting when the writer is free run in one
    transaction, so the group pays for one commit and one thread hand-off; if a unit
    fails, the group is rolled back and its units run again one transaction each, so a
    failure never takes another unit's writes with it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._checkpointer = _Checkpointer(engine) if _sqlite_file(engine) else None
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._pending: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._closed = False

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        # Units of work are functions of what they read, so running one again is safe.
        for attempt in range(UNIQUE_RACE_ATTEMPTS):
            try:
                with self._writer.begin() as connection:
                    done = work(connection)
                self._committed()
                return done
            except exc.IntegrityError as error:
                if not is_unique_violation(error):
                    raise
                if attempt + 1 == UNIQUE_RACE_ATTEMPTS:
                    raise Conflict("a concurrent change wrote the same record; retry") from error
        raise AssertionError("unreachable")  # pragma: no cover

    async def write(self, work: Callable[[Connection], T]) -> T:
        self._check_open()
        if self.dialect != "sqlite":
            return await self._in_thread(self._transaction, work)
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, done))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        while self._pending:
            if self._closed:  # closed while these waited: none may open a connection
                waiting, self._pending = self._pending, []
                for _, done in waiting:
                    if not done.done():
                        done.set_exception(_stopping())
                return
            group, self._pending = self._pending[:GROUP_LIMIT], self._pending[GROUP_LIMIT:]
            outcomes = await self._in_thread(self._group, [work for work, _ in group])
            for (_, done), (ok, value) in zip(group, outcomes, strict=True):
                if done.cancelled():
                    continue
                if ok:
                    done.set_result(value)
                else:
                    done.set_exception(value)

    def _group(self, works: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        """Run ``works`` in one transaction. Failures are rare (a lost compare-and-set, a
        bad request), so no savepoints: when a unit fails, the whole group is rolled back
        and each unit runs again in a transaction of its own."""
        try:
            with self._writer.begin() as connection:
                outcomes = [(True, work(connection)) for work in works]
            self._committed()
            return outcomes
        except Exception as error:  # noqa: BLE001 - handed to the units' callers
            if len(works) == 1:
                return [(False, error)]
        return [self._alone(work) for work in works]

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.nudge()

    def _alone(self, work: Callable[[Connection], Any]) -> tuple[bool, Any]:
        try:
            return True, self._transaction(work)
        except Exception as error:  # noqa: BLE001 - handed to that unit's caller
            return False, error

    async def read(self, work: Callable[[Connection], T]) -> T:
        self._check_open()
        if self.dialect == "sqlite":
            # A read of the local SQLite file (WAL: readers never wait for the writer)
            # is shorter than a hand-off to a thread and back, and that hand-off was
            # most of a small read's tail latency.
            return self._read(work)
        return await self._in_thread(self._read, work)

    def _read(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as connection:
            if self.dialect == "sqlite":
                return work(connection)
            with connection.begin():
                return work(connection)

    async def _in_thread(self, function: Callable[[Any], T], argument: Any) -> T:
        """Run in a worker thread, counted, so that ``aclose`` can wait for work whose
        caller was cancelled (the thread runs on and still holds a connection)."""

        def counted() -> T:
            with self._busy_lock:
                self._busy += 1
            try:
                return function(argument)
            finally:
                with self._busy_lock:
                    self._busy -= 1

        try:
            return await asyncio.to_thread(counted)
        except exc.SQLAlchemyError as error:
            if is_outage(error):
                raise Unavailable("the database cannot be reached now; retry") from error
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise _stopping()

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Refuse new work (``UNAVAILABLE``), wait (up to ``timeout_s``) for work still
        running in threads, then close every connection: a connection checked in after
        ``dispose`` would only be closed by the garbage collector, and work started after
        it would open a new pool that nothing closes."""
        self._closed = True
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._busy and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()


def _stopping() -> Unavailable:
    return Unavailable("the service is stopping and its database is closed; retry")


def _sqlite_file(engine: Engine) -> bool:
    database = engine.url.database
    return engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"


class _Checkpointer:
    """Copies SQLite's write-ahead log into the database file (a PASSIVE checkpoint, which
    waits for nobody) in a thread of its own, woken by commits and at most every
    ``CHECKPOINT_INTERVAL_S``. The writer used to do it inside every commit that found
    the log past 1,000 pages: for the monitor that was about every group of batches, a
    quarter of a millisecond per batch of the one writer's time. A writer still
    checkpoints a log past ``WAL_AUTOCHECKPOINT_BYTES`` (this thread fell behind)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def nudge(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sqlite-checkpoint", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                with self._engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except exc.SQLAlchemyError:  # the writer's own checkpoint is the backstop
                pass
            self._stop.wait(CHECKPOINT_INTERVAL_S)

    def close(self) -> None:
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None:
            thread.join()


def is_unique_violation(error: exc.IntegrityError) -> bool:
    """Whether ``error`` is a duplicate key (rather than, say, a missing foreign key)."""
    orig = error.orig
    if isinstance(orig, psycopg.Error):
        return orig.sqlstate == "23505"
    return "UNIQUE constraint failed" in str(orig)


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says the database server is down or went away mid-call (retrying
    later may succeed), rather than that the statement or the data were wrong."""
    if isinstance(error, exc.DisconnectionError | exc.TimeoutError):  # gone, or pool exhausted
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    orig = error.orig
    if isinstance(orig, psycopg.InterfaceError):  # the connection was closed under us
        return True
    if not isinstance(orig, psycopg.OperationalError):
        return False
    return orig.sqlstate is None or orig.sqlstate.startswith(_OUTAGE_SQLSTATES)
