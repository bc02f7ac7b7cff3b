"""The monitor benchmark (issue 5): Keel's monitor against Evidently 0.7.23 on the same
data — a binary classifier with 13 numeric features, 3 of them drifted in the current
data by half a standard deviation (``bench.monitor_data``).

    python -m bench monitor [--runs N] [--quick]
    python -m bench.monitor [--runs N] [--quick] [--keel-only]

1. Evidently, in the .bench venv (``bench.monitor_evidently``, a subprocess):
   ``Report([DataDriftPreset()])`` over 100,000 reference and 1,000,000 current rows
   (``--quick``: 100,000), with the model's score as a 14th column; seconds, rows/s,
   peak RSS and the columns it flags.
2. Keel: a registry and a monitor (``keel monitor serve``), each its own process; the
   model registered with ``Keel.log_model`` (signature and reference profile of the same
   100,000 reference rows); then 1,000,000 rows (``--quick``: 200,000) in 1,000-row
   batches over the ``LogPredictions`` stream, from one producer and from two at once
   (rows/s from the first send to the last ack; batches pre-built before timing), and
   the same streams right after to a floor (``bench.monitor_floor``: a bare grpc.aio
   ``LogPredictions`` that parses each batch and acks it), for what the stream allows,
   and then to a second monitor that keeps no join window (``KEEL_MONITOR_JOIN_WINDOW_S=0``:
   aggregates only, no labels, like Evidently's drift report; ADR 0015);
   ``ComputeDrift`` p50/p90 over 50 calls; then 10,000,000 more rows (``--quick``:
   1,000,000) while the monitor's RSS is sampled every 0.5 s, and ``ComputeDrift`` again.
3. The figures beside the goals (>= 500,000 rows/s, >= 30x Evidently's rows/s, verdict
   <= 10 ms at any volume, RSS flat), and both tools' per-column verdicts side by side.
4. Where the CPU goes: each server's CPU per 1,000 rows (the monitor, the one with no join
   window, the floor) and this client's; what the join window's storage costs in
   ``sqlite3`` alone (``bench.monitor_storage``); and what the machine's cores leave the
   monitor per 1,000 rows at 30x Evidently's rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import monitor_data as data
from bench import procs
from bench.inference_servers import Running, start_registry, stop
from bench.monitor_batches import LoggedModel, Plan, bodies, parse
from bench.monitor_load import (
    Ingestion,
    MonitorRefused,
    Progress,
    RssSamples,
    drift_calls,
    ingest,
)
from bench.monitor_load import sample_rss as sample
from bench.monitor_model import Trained, register, train
from bench.monitor_report import (
    Evidently,
    KeelFigures,
    Verdicts,
    evidently_lines,
    keel_lines,
    verdict_lines,
)
from bench.monitor_storage import storage_cost
from bench.stats import CpuMeter, CpuShare, machine_note
from services.common.service import read_ready_file

ROOT = Path(__file__).resolve().parent.parent
BENCH_PYTHON = ROOT / ".bench" / "bin" / "python"
DEFAULT_RUNS = 1
REFERENCE_ROWS = 100_000
DRIFT_CALLS = 50
BUCKET_S = 300  # the monitor's default base bucket (KEEL_MONITOR_BUCKET_S)
DAY_BUCKETS = 287  # one batch per bucket, all inside ComputeDrift's default 24 h range
EXIT_NOT_BUILT = 3
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class Sizes:
    evidently_rows: int
    ingest_rows: int
    rss_rows: int


FULL = Sizes(evidently_rows=1_000_000, ingest_rows=1_000_000, rss_rows=10_000_000)
QUICK = Sizes(evidently_rows=100_000, ingest_rows=200_000, rss_rows=1_000_000)


def run_evidently(rows: int, trained: Trained) -> Evidently:
    if not BENCH_PYTHON.exists():
        raise SystemExit(f"monitor bench: {BENCH_PYTHON} is missing: run `make .bench/.installed`")
    argv = [str(BENCH_PYTHON), "-m", "bench.monitor_evidently", str(REFERENCE_ROWS), str(rows)]
    argv.append(json.dumps(trained.as_json()))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"monitor bench: Evidently's run failed:\n{done.stderr[-3000:]}")
    return Evidently(json.loads(done.stdout.strip().splitlines()[-1]))


def start_monitor(
    folder: Path, registry: str, name: str = "monitor", settings: dict[str, str] | None = None
) -> Running:
    """``keel monitor serve`` on port 0 (``settings``: more ``KEEL_MONITOR_*`` variables); a
    clear SystemExit when it exits first (code 3: the monitor service is not built yet)."""
    ready, log = folder / f"{name}.json", folder / f"{name}.log"
    argv = [sys.executable, "-m", "keel", "monitor", "serve", "--port", "0", "--metrics-port"]
    argv += ["0", "--data-dir", str(folder / name), "--ready-file", str(ready)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KEEL_MONITOR_REGISTRY_ADDRESS": registry}
    env.update(settings or {})
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.exists():
        code = proc.poll()
        if code is not None or time.monotonic() > deadline:
            stop(proc)
            tail = log.read_text(errors="replace")[-2000:].strip()
            if code == EXIT_NOT_BUILT:
                raise SystemExit(
                    "monitor bench: `keel monitor serve` exited with code 3: the monitor service "
                    f"is not built yet (services/monitor/service.py, issue #5). It said: {tail}"
                )
            why = f"exited with code {code}" if code is not None else "did not start in time"
            raise SystemExit(f"monitor bench: `keel monitor serve` {why}; its output:\n{tail}")
        time.sleep(0.05)
    return Running(name, proc, read_ready_file(ready).address, log)


async def _ingest_once(
    monitors: Monitors,
    plans: list[Plan],
    batch_bodies: list[bytes],
    keel: KeelFigures,
) -> None:
    """The same streams to the monitor, to the floor, then to the monitor that keeps no
    join window."""
    started = time.perf_counter()
    prebuilt = [list(plan.requests(batch_bodies)) for plan in plans]
    keel.requests_s.append(time.perf_counter() - started)
    streams = [(p.producer, r, p.batches) for p, r in zip(plans, prebuilt, strict=True)]
    for server, runs in (
        (monitors.keel, keel.default),
        (monitors.floor, keel.floor),
        (monitors.windowless, keel.windowless),
    ):
        done, share = await _metered(server, streams, Progress())
        runs.add(len(plans), done, share)


async def _metered(
    server: Running, streams: Sequence[tuple[str, Iterable[bytes], int]], progress: Progress
) -> tuple[Ingestion, CpuShare]:
    """``streams`` ingested by ``server``, and the CPU it (and this process) used meanwhile."""
    with CpuMeter(server.proc.pid) as cpu:
        done = await ingest(server.address, streams, progress)
    return done, cpu.share


async def _rss_phase(
    monitor: Running, rows: int, batch_bodies: list[bytes], keel: KeelFigures
) -> None:
    plan = Plan("bench-rss", "rss-", 0, rows // data.BLOCK)
    progress, stop_sampling = Progress(), asyncio.Event()
    keel.rss, keel.rss_rows = RssSamples(), rows
    sampler = asyncio.create_task(sample(monitor.proc.pid, progress, stop_sampling, keel.rss))
    try:
        stream = (plan.producer, plan.requests(batch_bodies), plan.batches)
        keel.rss_ingestion, keel.cpu_rss = await _metered(monitor, [stream], progress)
    finally:
        stop_sampling.set()
        await sampler
    keel.disk_mb = sum(f.stat().st_size for f in monitor.log.parent.glob("monitor/**/*")) / 2**20


def start_floor(folder: Path) -> Running:
    """The bare ``LogPredictions`` of ``bench.monitor_floor``."""
    ready = folder / "floor.json"
    proc, address = procs.start([sys.executable, "-m", "bench.monitor_floor", str(ready)], ready)
    return Running("floor", proc, address, Path(os.devnull))  # its stderr is the bench's


@dataclass(frozen=True)
class Monitors:
    """The servers the ingestion runs go to: Keel's monitor, the floor, and a monitor
    that keeps no join window (``KEEL_MONITOR_JOIN_WINDOW_S=0``: aggregates only)."""

    keel: Running
    floor: Running
    windowless: Running


async def keel_half(
    monitors: Monitors, logged: LoggedModel, sizes: Sizes, runs: int
) -> KeelFigures:
    keel = KeelFigures()
    batches = sizes.ingest_rows // data.BLOCK
    started = time.perf_counter()
    batch_bodies = bodies(batches, logged)
    keel.bodies_s = time.perf_counter() - started
    sample_batch = parse(next(Plan("check", "check-", 0, 1).requests(batch_bodies))).batch
    assert sample_batch.row_count == data.BLOCK and len(sample_batch.features) == 13
    sent = 0
    for r in range(runs):
        one = [Plan(f"bench-{r}-one", f"{r}one-", 0, batches)]
        await _ingest_once(monitors, one, batch_bodies, keel)
        halves = [
            Plan(f"bench-{r}-two-{h}", f"{r}two{h}-", h * (batches // 2), batches // 2)
            for h in (0, 1)
        ]
        await _ingest_once(monitors, halves, batch_bodies, keel)
        sent += batches * data.BLOCK + 2 * (batches // 2) * data.BLOCK
    monitor = monitors.keel
    timings = await drift_calls(monitor.address, logged.model, logged.version, DRIFT_CALLS)
    keel.verdicts.append(Verdicts(sent, timings))
    await _rss_phase(monitor, sizes.rss_rows, batch_bodies, keel)
    sent += sizes.rss_rows
    timings = await drift_calls(monitor.address, logged.model, logged.version, DRIFT_CALLS)
    keel.verdicts.append(Verdicts(sent, timings))
    # A day of history: one batch in each 5-minute bucket of the last 24 h.
    day = Plan("bench-day", "day-", 0, DAY_BUCKETS)
    stream = (day.producer, list(day.requests(bodies(DAY_BUCKETS, logged, BUCKET_S))), day.batches)
    await ingest(monitor.address, [stream], Progress())
    sent += day.rows
    timings = await drift_calls(monitor.address, logged.model, logged.version, DRIFT_CALLS)
    keel.verdicts.append(Verdicts(sent, timings, DAY_BUCKETS))
    keel.storage = storage_cost(sample_batch.SerializeToString(), sample_batch.row_count)
    return keel


def run(runs: int, quick: bool, *, with_evidently: bool = True) -> None:
    sizes = QUICK if quick else FULL
    started = time.perf_counter()
    trained = train(REFERENCE_ROWS)
    seconds = time.perf_counter() - started
    print(f"monitor: trained the model on {REFERENCE_ROWS:,} reference rows in {seconds:.1f} s")
    evidently = run_evidently(sizes.evidently_rows, trained) if with_evidently else None
    if evidently is not None:
        evidently_lines(evidently)
    with tempfile.TemporaryDirectory(prefix="keel-bench-monitor-") as scratch:
        folder = Path(scratch)
        registry = start_registry(folder)
        try:
            logged = register(registry.address, trained)
            servers: list[Running] = []
            try:
                servers.append(start_monitor(folder, registry.address))
                servers.append(start_floor(folder))
                no_window = {"KEEL_MONITOR_JOIN_WINDOW_S": "0"}
                servers.append(
                    start_monitor(folder, registry.address, "monitor-no-window", no_window)
                )
                keel = asyncio.run(keel_half(Monitors(*servers), logged, sizes, runs))
            except MonitorRefused as refused:
                tails = [
                    f"the end of {s.name}'s output:\n"
                    + s.log.read_text(errors="replace")[-3000:].strip()
                    for s in servers
                    if s.name.startswith("monitor")
                ]
                raise SystemExit(f"monitor bench: {refused}\n" + "\n".join(tails)) from refused
            finally:
                for server in reversed(servers):
                    stop(server.proc)
        except BaseException:
            verdict_lines(None, evidently)
            raise
        finally:
            stop(registry.proc)
    keel_lines(keel, evidently)
    verdict_lines(keel, evidently)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.monitor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="ingestion runs (medians)")
    parser.add_argument("--quick", action="store_true", help="fewer rows everywhere")
    parser.add_argument("--keel-only", action="store_true", help="skip Evidently's run")
    args = parser.parse_args(argv)
    print(machine_note())
    run(max(1, args.runs), args.quick, with_evidently=not args.keel_only)


if __name__ == "__main__":
    main()
