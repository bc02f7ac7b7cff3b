"""The registry benchmark: registrations/s at 32 clients (metadata only, and with the
upload beside it), alias resolve latency, filtered search over 10,000 versions and the
upload of a 100 MB model, on SQLite and on PostgreSQL (skipped, saying why, when it
cannot be reached).

Each run starts a fresh ``keel registry serve`` process and an empty database; the
clients are coroutines in this process on one ``grpc.aio`` channel. ``--runs N`` prints
medians of N runs. ``KEEL_BENCH_DATABASE_URL`` names the PostgreSQL server to create
scratch databases on; ``KEEL_BENCH_PROFILE=<folder>`` runs the registry under cProfile.
"""

from __future__ import annotations

import asyncio
import time

from bench.artifacts import SmallModels, large_model
from bench.registry_phases import Plan, RunFigures, run_once
from bench.registry_report import report
from bench.registry_server import admin_url, postgres_unreachable, registry
from services.registry.safe_load import inspect_artifact

DEFAULT_RUNS = 1
BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
PLAN = Plan(clients=32, seconds=5.0, corpus=10_000, resolves=1_000, searches=200)
QUICK_PLAN = Plan(clients=32, seconds=2.0, corpus=2_000, resolves=300, searches=50)
UPLOAD_BYTES = 100_000_000
QUICK_UPLOAD_BYTES = 20_000_000


def run(runs: int, quick: bool) -> None:
    plan = QUICK_PLAN if quick else PLAN
    small = SmallModels()
    big, note = large_model(QUICK_UPLOAD_BYTES if quick else UPLOAD_BYTES)
    if quick:
        note += " (--quick: smaller than the 100 MB of the goal; search corpus smaller too)"
    started = time.perf_counter()
    inspect_artifact(big.data)
    safe_load_s = time.perf_counter() - started
    for backend, label in BACKENDS.items():
        if backend == "postgresql":
            reason = postgres_unreachable(admin_url())
            if reason is not None:
                print(f"\nregistry on PostgreSQL: skipped, the server cannot be reached: {reason}")
                continue
        results: list[RunFigures] = []
        for _ in range(runs):
            with registry(backend) as running:
                results.append(asyncio.run(run_once(running, plan, small, big)))
        report(label, results, plan, note, safe_load_s)
