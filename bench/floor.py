"""The plumbing floor: Keel's server stack against a bare grpc.aio server.

Each server runs in its own process; one client process drives it with ServerLive calls:
one client (latency) and 32 concurrent clients (throughput). Printed: medians of
``--runs`` runs and the keel/bare ratio measured within each run.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.procs import start, stop
from bench.stats import percentile_ms
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc

DEFAULT_RUNS = 3
DEFAULT_SECONDS = 3.0


@dataclass
class Figures:
    p50_ms: float
    p99_ms: float
    rps: float


async def _drive(address: str, clients: int, seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        await stub.ServerLive(oip.ServerLiveRequest(), timeout=5)
        end = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < end:
                started = time.perf_counter()
                await stub.ServerLive(oip.ServerLiveRequest(), timeout=5)
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, len(latencies)


def measure(address: str, clients: int, seconds: float) -> Figures:
    latencies, count = asyncio.run(_drive(address, clients, seconds))
    return Figures(
        p50_ms=percentile_ms(latencies, 0.5),
        p99_ms=percentile_ms(latencies, 0.99),
        rps=count / seconds,
    )


def _start(kind: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    argv = [sys.executable, "-m", "bench.floor_server", kind, str(folder / f"{kind}.json")]
    return start(argv, folder / f"{kind}.json", timeout=30)


def run(runs: int, seconds: float) -> None:
    results: dict[tuple[str, int], list[Figures]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        servers = {kind: _start(kind, Path(scratch)) for kind in ("bare", "keel")}
        try:
            for _ in range(runs):
                for clients in (1, 32):
                    for kind, (_, address) in servers.items():
                        figures = measure(address, clients, seconds)
                        results.setdefault((kind, clients), []).append(figures)
        finally:
            for proc, _ in servers.values():
                stop(proc)
    _report(results, runs, seconds)


def _report(results: dict[tuple[str, int], list[Figures]], runs: int, seconds: float) -> None:
    print(f"plumbing floor: ServerLive, {runs} runs x {seconds:.0f}s, medians")
    print(f"{'server':<6} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9}")
    for (kind, clients), figures in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        p50 = statistics.median(f.p50_ms for f in figures)
        p99 = statistics.median(f.p99_ms for f in figures)
        rps = statistics.median(f.rps for f in figures)
        print(f"{kind:<6} {clients:>7} {p50:>8.3f} {p99:>8.3f} {rps:>9.0f}")
    for clients in (1, 32):
        ratios = [
            k.rps / b.rps
            for k, b in zip(results[("keel", clients)], results[("bare", clients)], strict=True)
        ]
        print(
            f"keel/bare throughput at {clients} client(s): median ratio "
            f"{statistics.median(ratios):.2f} (per run: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
