"""The registry under test: a real ``keel registry serve`` process on SQLite (a
temporary folder) or PostgreSQL (a scratch database created and dropped per run).

``KEEL_BENCH_PROFILE=<folder>`` runs each registry under cProfile (every thread, see
``bench.profiled``) and writes ``<folder>/registry-<backend>-<n>.prof``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import psycopg
from psycopg import sql

from bench.procs import start, stop

ADMIN_URL_ENV = "KEEL_BENCH_DATABASE_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PROFILE_ENV = "KEEL_BENCH_PROFILE"
_started = count(1)


@dataclass(frozen=True)
class Running:
    address: str
    pid: int


def admin_url() -> str:
    return os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def postgres_unreachable(url: str) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used, or None when it can."""
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3, autocommit=True) as admin:
            admin.execute("SELECT 1")
    except Exception as error:  # any failure to connect means: skip, and say why
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"{url}: {first}"
    return None


@contextmanager
def _scratch_database(url: str) -> Iterator[str]:
    name = f"keel_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(_libpq(url), autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


def _argv(backend: str, folder: Path) -> list[str]:
    profile = os.environ.get(PROFILE_ENV)
    if profile:
        out = Path(profile).resolve() / f"registry-{backend}-{next(_started)}.prof"
        out.parent.mkdir(parents=True, exist_ok=True)
        head = [sys.executable, "-m", "bench.profiled", str(out)]
    else:
        head = [sys.executable, "-m", "keel"]
    return [
        *head,
        *("registry", "serve", "--port", "0", "--metrics-port", "0"),
        *("--data-dir", str(folder / "data"), "--ready-file", str(folder / "ready.json")),
    ]


@contextmanager
def registry(backend: str) -> Iterator[Running]:
    """A fresh registry on ``backend`` (``sqlite`` or ``postgresql``), stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as scratch:
        with _database(backend) as url:
            env = {"KEEL_REGISTRY_LOG_LEVEL": "WARNING", "KEEL_REGISTRY_DATABASE_URL": url}
            folder = Path(scratch)
            proc, address = start(_argv(backend, folder), folder / "ready.json", env=env)
            try:
                yield Running(address, proc.pid)
            finally:
                stop(proc)


@contextmanager
def _database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        yield ""  # the registry's default: a SQLite file in its data folder
        return
    with _scratch_database(admin_url()) as url:
        yield url
