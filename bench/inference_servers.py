"""Starting the servers the inference benchmark compares, each as its own process on
loopback, and waiting until each answers for the model.

Keel and the floor bind port 0 and report the port they got in a ready file. MLServer
cannot: its ports are fixed in settings.json, so they are chosen here by binding port 0
and closing the socket before MLServer binds it. That is a race (another process may
take the port in between) and is acceptable only for MLServer, which has no way to
report the port it bound; a lost race shows up as MLServer failing to start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench import procs
from bench.inference_models import MODEL, BenchModel, write_mlserver_repository
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from services.common.service import read_ready_file

ROOT = Path(__file__).resolve().parent.parent
MLSERVER = ROOT / ".bench" / "bin" / "mlserver"
START_TIMEOUT_S = 180


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    address: str
    log: Path


def _launch(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER")}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    with log.open("wb") as out:
        return subprocess.Popen(list(argv), env=full_env, stdout=out, stderr=subprocess.STDOUT)


def _failed(name: str, proc: subprocess.Popen[bytes], log: Path, why: str) -> SystemExit:
    stop(proc)
    tail = log.read_text(errors="replace")[-3000:]
    return SystemExit(f"{name}: {why}; the end of its output ({log}):\n{tail}")


def _with_ready_file(
    name: str, argv: list[str], folder: Path, env: dict[str, str] | None = None
) -> Running:
    ready, log = folder / f"{name}.json", folder / f"{name}.log"
    proc = _launch(
        [*argv, "--ready-file", str(ready)] if name != "floor" else [*argv, str(ready)], log, env
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise _failed(name, proc, log, "did not start")
        time.sleep(0.05)
    return Running(name, proc, read_ready_file(ready).address, log)


def start_registry(folder: Path) -> Running:
    argv = [sys.executable, "-m", "keel", "registry", "serve", "--port", "0", "--metrics-port", "0"]
    return _with_ready_file("registry", [*argv, "--data-dir", str(folder / "registry")], folder)


def start_keel(name: str, folder: Path, registry: str, workers: int) -> Running:
    """``keel inference serve`` with default settings (metrics endpoint off: its
    interceptor still counts every call)."""
    argv = [
        sys.executable,
        "-m",
        "keel",
        "inference",
        "serve",
        "--port",
        "0",
        "--metrics-port",
        "0",
    ]
    argv += ["--workers", str(workers), "--data-dir", str(folder / name)]
    # Prediction logging off: MLServer, the peer, logs nothing either.
    env = {"KEEL_INFERENCE_REGISTRY_ADDRESS": registry, "KEEL_INFERENCE_MONITOR_ADDRESS": ""}
    return _with_ready_file(name, argv, folder, env)


def start_floor(folder: Path) -> Running:
    return _with_ready_file("floor", [sys.executable, "-m", "bench.inference_floor"], folder)


def _free_port() -> int:
    # Racy by nature; see the module docstring. Used for MLServer's fixed ports only.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_mlserver(config: str, folder: Path, model: BenchModel) -> Running:
    ports = (_free_port(), _free_port(), _free_port())
    repository = write_mlserver_repository(folder / config, config, model, ports)
    log = folder / f"{config}.log"
    proc = _launch([str(MLSERVER), "start", str(repository)], log)
    return Running(config, proc, f"127.0.0.1:{ports[1]}", log)


def wait_model_ready(server: Running, timeout: float = START_TIMEOUT_S) -> None:
    """Until ModelReady says yes (Keel loads ``production`` from the registry; MLServer
    loads its repository; the floor has no model and is ready once it answers)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise _failed(server.name, server.proc, server.log, "exited")
            try:
                if server.name == "floor":
                    stub.ModelInfer(oip.ModelInferRequest(model_name=MODEL), timeout=2)
                    return
                if stub.ModelReady(oip.ModelReadyRequest(name=MODEL), timeout=2).ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise _failed(server.name, server.proc, server.log, f"model not ready after {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    procs.stop(proc, timeout=20)
