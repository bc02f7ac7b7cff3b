"""The registry benchmark: registrations/s at 32 clients (metadata only, and with the
upload beside it), alias resolve latency, filtered search over 10,000 versions and the
upload of a 100 MB model, on SQLite and on PostgreSQL (skipped, saying why, when it
cannot be reached).

Each run starts a fresh ``keel registry serve`` process per backend, each on an empty
database; the clients are coroutines in this process, one ``grpc.aio`` channel per
registry. ``--runs N`` prints medians of N runs. ``KEEL_BENCH_DATABASE_URL`` names the
PostgreSQL server to create scratch databases on; ``KEEL_BENCH_PROFILE=<folder>`` runs
the registries under cProfile.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack, ExitStack

import grpc

from bench.artifacts import Model, SmallModels, large_model
from bench.registry_load import CHANNEL_OPTIONS
from bench.registry_phases import Plan, RunFigures, Session
from bench.registry_report import report
from bench.registry_server import Running, admin_url, postgres_unreachable, registry
from services.common.safe_load import inspect_artifact

DEFAULT_RUNS = 1
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
PLAN = Plan(clients=32, seconds=4.0, corpus=10_000, resolves=1_000, searches=200)
QUICK_PLAN = Plan(clients=32, seconds=2.0, corpus=2_000, resolves=300, searches=50)
UPLOAD_BYTES = 100_000_000
QUICK_UPLOAD_BYTES = 20_000_000


def run(runs: int, quick: bool) -> None:
    plan = QUICK_PLAN if quick else PLAN
    small = SmallModels()
    big, big_ubj, note = large_model(QUICK_UPLOAD_BYTES if quick else UPLOAD_BYTES)
    if quick:
        note += " (--quick: smaller than the 100 MB of the goal, and a smaller search corpus)"
    started = time.perf_counter()
    inspect_artifact(big.data)
    safe_load_s = time.perf_counter() - started
    backends = ["sqlite"]
    reason = postgres_unreachable(admin_url())
    if reason is None:
        backends.append("postgresql")
    results: dict[str, list[RunFigures]] = {backend: [] for backend in backends}
    for _ in range(runs):
        with ExitStack() as stack:
            running = {backend: stack.enter_context(registry(backend)) for backend in backends}
            figures = asyncio.run(_one_run(running, plan, small, big, big_ubj))
        for backend, measured in figures.items():
            results[backend].append(measured)
    for backend, runs_of_backend in results.items():
        report(LABELS[backend], runs_of_backend, plan, note, safe_load_s)
    if reason is not None:
        print(f"\nregistry on PostgreSQL: skipped, the server cannot be reached: {reason}")


async def _one_run(
    running: dict[str, Running], plan: Plan, small: SmallModels, big: Model, big_ubj: Model
) -> dict[str, RunFigures]:
    async with AsyncExitStack() as stack:
        sessions: dict[str, Session] = {}
        for backend, server in running.items():
            channel = grpc.aio.insecure_channel(server.address, options=CHANNEL_OPTIONS)
            await stack.enter_async_context(channel)
            sessions[backend] = Session(channel, server.pid, plan)
        for session in sessions.values():
            await session.registrations(small)
        await asyncio.gather(*(s.seed(len(sessions)) for s in sessions.values()))
        for session in sessions.values():
            await session.reads()
            await session.uploads(big, big_ubj)
    return {backend: session.figures for backend, session in sessions.items()}
