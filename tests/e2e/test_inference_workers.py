"""`keel inference serve --workers 2`: two processes answer on one port (SO_REUSEPORT)."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc

from keel.inference.v1 import inference_pb2, inference_pb2_grpc
from tests.support.processes import serve_argv, spawn, wait_ready


def test_two_workers_share_one_port(tmp_path: Path) -> None:
    registry = spawn(serve_argv("registry", tmp_path / "registry", tmp_path / "registry.json"))
    inference = None
    try:
        registry_address = wait_ready(registry, tmp_path / "registry.json").address
        inference = spawn(
            serve_argv(
                "inference", tmp_path / "inference", tmp_path / "inference.json", "--workers", "2"
            ),
            env={"KEEL_INFERENCE_REGISTRY_ADDRESS": registry_address},
        )
        served = wait_ready(inference, tmp_path / "inference.json")
        replicas = set()
        for _ in range(40):  # fresh connections, spread over the workers by the kernel
            with grpc.insecure_channel(
                served.address, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                stub = inference_pb2_grpc.InferenceServiceStub(channel)
                reply = stub.ListServedModels(inference_pb2.ListServedModelsRequest(), timeout=10)
                replicas.add(reply.replica.replica_id)
        assert served.pid == inference.pid
    finally:
        outputs = []
        for proc in (inference, registry):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                outputs.append(proc.communicate(timeout=60)[0])
    assert len(replicas) == 2, replicas
    assert inference is not None and inference.returncode == 0, outputs
    assert "inference-1 | keel: inference listening on" in outputs[0]
    assert "inference-2 | keel: inference listening on" in outputs[0]
