"""The three services as processes, the monitor SIGKILLed for 30 s in the middle of a
32-client load and started again: no inference call fails, and every prediction
answered is counted by the monitor exactly once (spooled during the outage, replayed
after). The load's latency before, during and after the outage is printed, not
asserted."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from keel.monitor.v1 import monitor_pb2_grpc as pb_grpc
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from tests.support.inference import raw_request
from tests.support.monitor import frame, log_classifier
from tests.support.processes import processes, serve_argv, spawn, start_service, wait_ready
from tests.support.registry import Client
from tests.support.suite import rows_counted, scope

pytestmark = pytest.mark.e2e
CLIENTS = 32
BEFORE_S, OUTAGE_S, AFTER_S = 8.0, 30.0, 8.0


def start_monitor(tmp: Path, port: int, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """The monitor on ``port`` (0: any), its data kept in ``tmp/monitor`` across starts;
    the process and its port."""
    ready = tmp / "monitor.json"
    ready.unlink(missing_ok=True)
    argv = serve_argv("monitor", tmp / "monitor", ready)
    argv[argv.index("--port") + 1] = str(port)
    proc = spawn(argv, env=env)
    return proc, wait_ready(proc, ready).port


class Load:
    """A closed loop of ``CLIENTS`` callers; answered rows and latencies per phase."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.phase = "before"
        self.answered = 0
        self.failures: list[str] = []
        self.latencies: dict[str, list[float]] = {"before": [], "outage": [], "after": []}
        self.running = True

    async def client(self, stub: oip_grpc.GRPCInferenceServiceAsyncStub, seed: int) -> None:
        rows = frame(64, seed).to_numpy()
        i = 0
        while self.running:
            request = raw_request("churn", rows[i % 64 : i % 64 + 1])
            i += 1
            started = time.perf_counter()
            try:
                await stub.ModelInfer(request, timeout=10)
            except grpc.aio.AioRpcError as error:
                self.failures.append(f"{error.code().name}: {error.details()}")
                continue
            self.latencies[self.phase].append(time.perf_counter() - started)
            self.answered += 1

    def summary(self) -> str:
        lines = []
        for phase, values in self.latencies.items():
            ms = np.array(values) * 1000
            if len(ms):
                p50, p99, p999 = np.percentile(ms, [50, 99, 99.9])
                lines.append(
                    f"{phase:>7}: {len(ms):6d} calls, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                    f"p99.9 {p999:.2f} ms, max {ms.max():.1f} ms"
                )
        return "\n".join(lines)


async def test_monitor_killed_for_30s_under_load_counts_every_prediction_once(
    tmp_path: Path,
) -> None:
    with processes() as procs:
        registry, registry_address = start_service("registry", tmp_path, "registry")
        procs.append(registry)
        version = await log_classifier(registry_address, "churn")
        async with grpc.aio.insecure_channel(registry_address) as channel:
            await Client(channel).set_alias("churn", "production", version)
        monitor_env = {"KEEL_MONITOR_REGISTRY_ADDRESS": registry_address}
        monitor, monitor_port = start_monitor(tmp_path, 0, monitor_env)
        procs.append(monitor)
        inference, address = start_service(
            "inference",
            tmp_path,
            "inference",
            {
                "KEEL_INFERENCE_REGISTRY_ADDRESS": registry_address,
                "KEEL_INFERENCE_MONITOR_ADDRESS": f"127.0.0.1:{monitor_port}",
            },
        )
        procs.append(inference)
        load = Load(address)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            clients = [asyncio.create_task(load.client(stub, seed)) for seed in range(CLIENTS)]
            await asyncio.sleep(BEFORE_S)
            monitor.kill()  # SIGKILL: no shutdown of any kind
            monitor.communicate()
            procs.remove(monitor)
            load.phase = "outage"
            await asyncio.sleep(OUTAGE_S)
            monitor, _ = start_monitor(tmp_path, monitor_port, monitor_env)
            procs.append(monitor)
            load.phase = "after"
            await asyncio.sleep(AFTER_S)
            load.running = False
            await asyncio.gather(*clients)
        print(f"\n{load.answered} predictions answered by {CLIENTS} clients\n{load.summary()}")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{monitor_port}") as channel:
            monitor_stub = pb_grpc.MonitorServiceStub(channel)
            deadline = time.monotonic() + 90
            counted = await rows_counted(monitor_stub, scope("churn"), timeout_s=30)
            while counted < load.answered and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                counted = await rows_counted(monitor_stub, scope("churn"), timeout_s=30)
            await asyncio.sleep(1.0)  # a resent batch counted twice would show by now
            counted = await rows_counted(monitor_stub, scope("churn"), timeout_s=30)
        print(f"monitor counted {counted}")
    assert load.failures == []
    assert load.latencies["outage"], "the load stopped during the outage"
    assert counted == load.answered
