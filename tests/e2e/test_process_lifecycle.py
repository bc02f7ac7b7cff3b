"""Service processes as a user starts them: ready line and file, metrics endpoint,
graceful SIGTERM, and several processes run as one by the supervisor behind `keel up`."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from keel.monitor.v1 import monitor_pb2, monitor_pb2_grpc, reports_pb2
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from keel.registry.v1 import registry_pb2, registry_pb2_grpc
from services.common.service import read_ready_file
from services.common.supervisor import Child, Supervisor
from tests.support.processes import probe_argv, python_env, spawn, wait_ready


def infer_request(sleep_s: float) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name="slow", id="in-flight")
    request.parameters["sleep_s"].double_param = sleep_s
    return request


def test_process_reports_its_port_and_serves_metrics(tmp_path: Path) -> None:
    ready = tmp_path / "probe.json"
    proc = spawn(probe_argv(ready), env={"KEEL_PROBE_METRICS_PORT": "0"})
    try:
        listening = wait_ready(proc, ready)
        assert listening.port > 0 and listening.metrics_port
        with grpc.insecure_channel(listening.address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(oip.ServerLiveRequest(), timeout=5).live
        url = f"http://127.0.0.1:{listening.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as page:
            text = page.read().decode()
        method = "/inference.GRPCInferenceService/ServerLive"
        sample = f'keel_rpc_server_calls_total{{code="OK",method="{method}",service="probe"}} 1.0'
        assert sample in text
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert output.splitlines()[0] == f"keel: probe listening on {listening.address}"


def test_sigterm_lets_an_in_flight_call_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    ready = tmp_path / "probe.json"
    proc = spawn(probe_argv(ready))
    listening = wait_ready(proc, ready)

    async def scenario() -> tuple[oip.ModelInferResponse, grpc.StatusCode]:
        async with grpc.aio.insecure_channel(listening.address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            slow = asyncio.ensure_future(stub.ModelInfer(infer_request(1.5), timeout=20))
            await asyncio.sleep(0.4)  # the call is in flight, sleeping in the handler
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            async with grpc.aio.insecure_channel(listening.address) as fresh:
                late = oip_grpc.GRPCInferenceServiceStub(fresh)
                try:
                    await late.ServerLive(oip.ServerLiveRequest(), timeout=2)
                    code = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as error:
                    code = error.code()
            return await slow, code

    try:
        answer, late_code = asyncio.run(scenario())
    finally:
        output, _ = proc.communicate(timeout=30)
    assert answer.id == "in-flight"
    assert late_code == grpc.StatusCode.UNAVAILABLE
    assert proc.returncode == 0, output


def test_supervisor_runs_children_as_one_and_stops_them_all(tmp_path: Path) -> None:
    children = [
        Child(
            name, probe_argv(tmp_path / f"{name}.json"), tmp_path / f"{name}.json", env=python_env()
        )
        for name in ("alpha", "beta")
    ]
    out = io.StringIO()
    supervisor = Supervisor(children, out=out, grace_s=10)

    async def scenario() -> int:
        stop = asyncio.Event()
        running = asyncio.create_task(supervisor.run(stop))
        while len(supervisor.listening) < 2 and not running.done():
            await asyncio.sleep(0.05)
        for listening in supervisor.listening.values():
            async with grpc.aio.insecure_channel(listening.address) as channel:
                stub = oip_grpc.GRPCInferenceServiceStub(channel)
                assert (await stub.ServerLive(oip.ServerLiveRequest(), timeout=5)).live
        stop.set()
        return await running

    assert asyncio.run(scenario()) == 0
    lines = out.getvalue().splitlines()
    assert any(line.startswith("alpha | keel: probe listening on") for line in lines)
    assert any(line.startswith("beta  | keel: probe listening on") for line in lines)
    for listening in supervisor.listening.values():
        with pytest.raises(ProcessLookupError):
            os.kill(listening.pid, 0)


def test_supervisor_stops_the_others_when_one_child_dies(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import sys; print('boom'); sys.exit(7)"]
    children = [
        Child(
            "alpha", probe_argv(tmp_path / "alpha.json"), tmp_path / "alpha.json", env=python_env()
        ),
        Child("broken", crash, tmp_path / "broken.json"),
    ]
    out = io.StringIO()
    code = asyncio.run(Supervisor(children, out=out, grace_s=10).run(asyncio.Event()))
    assert code == 7
    assert "broken | boom" in out.getvalue()
    assert "broken exited with code 7 before it was ready" in out.getvalue()


def test_keel_up_demo_plays_the_lifecycle_and_stops_on_sigint(tmp_path: Path) -> None:
    """``make run``'s demo: registered through the gates, traffic answered by inference,
    logged to the monitor (drift in the second half), labels joined; then Ctrl-C."""
    argv = [sys.executable, "-m", "keel", "up", "--data-dir", str(tmp_path), "--demo"]
    argv += ["--registry-port", "0", "--inference-port", "0", "--monitor-port", "0"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=python_env()
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if "demo: done" in line or "demo: traffic stopped" in line or "not loaded" in line:
                break
        listening = read_ready_file(tmp_path / "run" / "registry.json")
        with grpc.insecure_channel(listening.address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            resolved = stub.ResolveAlias(
                registry_pb2.ResolveAliasRequest(reference="credit-risk@production"), timeout=10
            )
        watched = read_ready_file(tmp_path / "run" / "monitor.json")
        with grpc.insecure_channel(watched.address) as channel:
            monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
            scope = reports_pb2.ReportScope(model="models/credit-risk")
            for _ in range(100):  # the labels of the second half were just sent
                performance = monitor.ComputePerformance(
                    monitor_pb2.ComputePerformanceRequest(scope=scope), timeout=10
                ).report
                if performance.labeled_count >= 2000:
                    break
                time.sleep(0.1)
            drift = monitor.ComputeDrift(
                monitor_pb2.ComputeDriftRequest(scope=scope), timeout=10
            ).report
    finally:  # stop keel up (and so its children) even when an assertion failed
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    output = "\n".join(lines) + rest
    assert proc.returncode == 0, output
    assert resolved.model_version.version == 1
    assert any(line.startswith("registry  | keel: registry listening on") for line in lines), output
    assert "promoted to staging and production through the gates" in output
    assert "demo: done — 2000 predictions made and labelled" in output
    assert "keel report credit-risk" in output
    assert drift.row_count == 2000 and performance.labeled_count == 2000
    drifted = {f.feature for f in drift.features if f.drifted}
    assert {"income", "debt_ratio"} <= drifted and "sex" not in drifted
    with pytest.raises(ProcessLookupError):
        os.kill(listening.pid, 0)
