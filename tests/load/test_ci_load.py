"""The CI load test: the three services as separate processes on PostgreSQL, mixed load
from ``keel loadtest`` processes running side by side — inference at 32 clients with
prediction logging on, registry reads at 4 clients — and ``production`` moved to a
second version half-way. Then: no load run saw a single error, and the monitor counted
every answered prediction exactly once, over both versions.

The figures (throughput, p50/p99/p99.9 per load, each service's RSS before and after)
are printed, not asserted. ``KEEL_LOAD_DURATION_S`` sets the load's length (60 s here;
``make soak`` runs the same scenario for 30 minutes).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from keel.client import Keel
from keel.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from tests.support.monitor import log_classifier
from tests.support.postgres import SKIP_REASON, admin_url, fresh_database
from tests.support.processes import ROOT, python_env
from tests.support.suite import Process, rows_counted, scope, service, wait_model_ready

DURATION_S = float(os.environ.get("KEEL_LOAD_DURATION_S", "60"))
INFERENCE_CLIENTS = 32
REGISTRY_CLIENTS = 4
DRAIN_S = 60.0
MODEL = "churn"


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases: the registry's and the monitor's."""
    url = admin_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    with fresh_database(url) as registry, fresh_database(url) as monitor:
        yield registry, monitor


def rss_mib(process: Process) -> float:
    """Resident set size of a running service process, from /proc/<pid>/status."""
    status = Path(f"/proc/{process.proc.pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kib) / 1024


async def keel_loadtest(*args: str) -> dict[str, Any]:
    """``keel loadtest ARGS --json`` as a process of its own; its report."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keel",
        "loadtest",
        *args,
        "--json",
        cwd=ROOT,
        env=python_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (proc.returncode, out.decode(), err.decode())
    report: dict[str, Any] = json.loads(out)
    return report


def promote(registry: str, version: int) -> None:
    with Keel(registry=registry) as client:
        client.promote(MODEL, version, "production")


async def move_alias_half_way(registry: str, version: int) -> float:
    """Moves ``production`` to ``version`` half-way through the load; the time it took."""
    await asyncio.sleep(DURATION_S / 2)
    started = time.monotonic()
    await asyncio.to_thread(promote, registry, version)
    return time.monotonic() - started


async def counted_once(monitor: str, answered: int) -> dict[int, int]:
    """Waits (up to DRAIN_S) until the monitor holds ``answered`` rows over all versions;
    the rows per version (0: all)."""
    async with grpc.aio.insecure_channel(monitor) as channel:
        stub = mpb_grpc.MonitorServiceStub(channel)
        deadline = time.monotonic() + DRAIN_S
        total = await rows_counted(stub, scope(MODEL, version=0))
        while total < answered and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            total = await rows_counted(stub, scope(MODEL, version=0))
        await asyncio.sleep(1.0)  # a batch counted twice would show by now
        return {v: await rows_counted(stub, scope(MODEL, version=v)) for v in (0, 1, 2)}


def figures(name: str, report: dict[str, Any]) -> str:
    latency = report["latency_ms"]
    return (
        f"{name:<10} {report['clients']:>3} clients  {report['ok']:>8} ok  "
        f"{report['error_count']} errors  {report['throughput_rps']:>8.1f} req/s  "
        f"p50 {latency['p50']:.2f} ms  p99 {latency['p99']:.2f} ms  "
        f"p99.9 {latency['p99.9']:.2f} ms  max {latency['max']:.2f} ms"
    )


@pytest.mark.timeout(DURATION_S + 240)
async def test_mixed_load_answers_everything_and_counts_every_prediction_once(
    tmp_path: Path, databases: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    registry_db, monitor_db = databases
    with ExitStack() as stack:
        registry = stack.enter_context(
            service(tmp_path, "registry", {"KEEL_REGISTRY_DATABASE_URL": registry_db})
        )
        monitor = stack.enter_context(
            service(
                tmp_path,
                "monitor",
                {
                    "KEEL_MONITOR_DATABASE_URL": monitor_db,
                    "KEEL_MONITOR_REGISTRY_ADDRESS": registry.address,
                },
            )
        )
        inference = stack.enter_context(
            service(
                tmp_path,
                "inference",
                {
                    "KEEL_INFERENCE_REGISTRY_ADDRESS": registry.address,
                    "KEEL_INFERENCE_MONITOR_ADDRESS": monitor.address,
                    "KEEL_INFERENCE_REGISTRY_RETRY_S": "0.2",
                },
            )
        )
        processes = {"registry": registry, "monitor": monitor, "inference": inference}
        # Two versions of one signature: the first in production, the second moved in later.
        first = await log_classifier(registry.address, MODEL)
        second = await log_classifier(registry.address, MODEL)
        await asyncio.to_thread(promote, registry.address, first)
        async with grpc.aio.insecure_channel(inference.address) as channel:
            await wait_model_ready(oip_grpc.GRPCInferenceServiceStub(channel), MODEL)
        rss_before = {name: rss_mib(process) for name, process in processes.items()}

        common = ("-m", MODEL, "-d", f"{DURATION_S:g}", "--timeout", "10")
        infer, reads, move_s = await asyncio.gather(
            keel_loadtest(
                "inference", *common, "-c", str(INFERENCE_CLIENTS),
                "--inference", inference.address,
            ),
            keel_loadtest(
                "registry", *common, "-c", str(REGISTRY_CLIENTS), "--registry", registry.address
            ),
            move_alias_half_way(registry.address, second),
        )  # fmt: skip
        counted = await counted_once(monitor.address, infer["rows"])
        rss_after = {name: rss_mib(process) for name, process in processes.items()}

        with capsys.disabled():
            print(
                f"\nCI load: {DURATION_S:g} s of mixed load; production moved from v{first} "
                f"to v{second} half-way (the move took {move_s:.2f} s)"
            )
            print(figures("inference", infer))
            print(figures("registry", reads))
            print(
                f"monitor    {counted[0]} rows counted for {infer['rows']} answered "
                f"(v{first}: {counted[1]}, v{second}: {counted[2]})"
            )
            for name in processes:
                print(
                    f"{name:<10} RSS {rss_before[name]:.0f} MiB before, "
                    f"{rss_after[name]:.0f} MiB after"
                )
            print(f"whole test {time.monotonic() - began:.0f} s")

    for report in (infer, reads):
        assert report["errors"] == {}, report["errors"]
        assert report["unsent"] == 0 and report["ok"] > 0
    assert counted[0] == infer["rows"], (counted, infer["rows"], inference.output()[-4000:])
    assert counted[1] > 0 and counted[2] > 0, "both versions answered, before and after the move"
    assert counted[1] + counted[2] == counted[0]
