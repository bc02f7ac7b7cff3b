"""The inference benchmark (issue 4): MLServer 1.7.1 in two configurations, Keel (one
process and ``--workers 2``) and a bare grpc.aio floor, serving one 100-tree XGBoost
classifier to the same load generator in one run.

    python -m bench.inference [--runs N] [--quick]

Each server runs as its own process on loopback; the load generator is one more process
per measurement (``bench.inference_load``), the servers taking turns scenario by
scenario. Before measuring, every server's answer is checked against the booster's own
prediction. Keel's swap latency: with one client per Keel server calling, ``production``
moves to a new version (a distinct artifact of the same model); measured from the
SetAlias reply to the first answer carrying the new version.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from bench.inference_models import MODEL, BenchModel, request_rows, train
from bench.inference_registry import Registry
from bench.inference_report import KEELS, SCENARIOS, SERVERS, Figures, Results, ratios, table
from bench.inference_servers import (
    ROOT,
    Running,
    start_floor,
    start_keel,
    start_mlserver,
    start_registry,
    stop,
    wait_model_ready,
)
from bench.stats import machine_note, median, tree_cpu_seconds
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc

SWAPS_PER_RUN = 5


def _client(args: list[str], timeout: float) -> object:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "bench.inference_load", *args]
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"load generator failed ({' '.join(args[:4])}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(server: Running, rows: int, clients: int, seconds: float, warmup: float) -> Figures:
    args = ["load", server.address, str(rows), str(clients), str(seconds), str(warmup)]
    cpu_before = tree_cpu_seconds(server.proc.pid) or 0.0
    got = _client(args, timeout=seconds + warmup + 120)
    cpu = (tree_cpu_seconds(server.proc.pid) or 0.0) - cpu_before
    assert isinstance(got, dict)
    if got["first_error"]:
        print(f"!! {server.name}: {got['errors']} failed calls, e.g. {got['first_error']}")
    return Figures(
        rows,
        got["requests"],
        got["errors"],
        got["seconds"],
        got["p50_ms"],
        got["p99_ms"],
        1000 * cpu / (got["requests"] + got["warmup_requests"]),
    )


def _output(reply: oip.ModelInferResponse, name: str) -> np.ndarray:
    names = [o.name for o in reply.outputs]
    if name not in names:
        raise SystemExit(f"{reply.model_name}: no output {name!r} in the answer, only {names}")
    tensor = reply.outputs[names.index(name)]
    dtype = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}[tensor.datatype]
    raw = np.frombuffer(reply.raw_output_contents[names.index(name)], dtype=dtype)
    return raw.reshape(tuple(tensor.shape))


def verify(server: Running, model: BenchModel) -> str:
    """Check an answer for 5 rows against the booster; say what was checked."""
    rows = request_rows(5)
    request = oip.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="features", datatype="FP32", shape=list(rows.shape))
    request.raw_input_contents.append(rows.tobytes())
    with grpc.insecure_channel(server.address) as channel:
        reply = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    expected = model.expected(rows)
    if server.name == "floor":
        return "floor: answers a fixed response (no model)"
    if server.name.startswith("keel"):
        got = _output(reply, "probabilities")[:, 1]
        labels = _output(reply, "label")
        ok = np.allclose(got, expected, atol=1e-6) and (labels == (expected > 0.5)).all()
        what = "probabilities[:, 1] and label"
    else:  # MLServer's runtime loads a binary:logistic booster as XGBRegressor: P(1)
        got = _output(reply, "predict").reshape(-1).astype(np.float32)
        ok = np.allclose(got, expected, atol=1e-6)
        what = "predict (P(class 1))"
    if not ok:
        raise SystemExit(
            f"{server.name}: wrong answer {got.tolist()}, expected {expected.tolist()}"
        )
    return f"{server.name}: {what} match the booster for 5 rows"


def start_all(folder: Path, model: BenchModel, swaps: int) -> tuple[dict[str, Running], list[int]]:
    registry = start_registry(folder)
    servers = {"registry": registry}
    try:
        client = Registry(registry.address)
        client.create_model()
        client.promote(client.register(model.ubj))
        versions = [client.register(model.variant(i)) for i in range(swaps)]
        client.close()
        for config in ("mlserver-default", "mlserver-best"):
            servers[config] = start_mlserver(config, folder, model)
        servers["keel"] = start_keel("keel", folder, registry.address, 1)
        servers["keel-w2"] = start_keel("keel-w2", folder, registry.address, 2)
        servers["floor"] = start_floor(folder)
        for name in SERVERS:
            wait_model_ready(servers[name])
            print("  " + verify(servers[name], model))
    except BaseException:
        stop_all(servers)
        raise
    return servers, versions


def stop_all(servers: dict[str, Running]) -> None:
    for server in reversed(list(servers.values())):
        stop(server.proc)


def run(runs: int, seconds: float, warmup: float) -> None:
    print(machine_note())
    started = time.perf_counter()
    model = train()
    print(f"trained 100 trees x depth 6 on 20 features in {time.perf_counter() - started:.1f}s")
    results: Results = {}
    swaps: dict[str, list[float]] = {name: [] for name in KEELS}
    with tempfile.TemporaryDirectory(prefix="keel-bench-inference-") as scratch:
        servers, versions = start_all(Path(scratch), model, runs * SWAPS_PER_RUN)
        try:
            for run_index in range(runs):
                order = SERVERS[run_index % len(SERVERS) :] + SERVERS[: run_index % len(SERVERS)]
                for rows, clients in SCENARIOS:
                    for name in order:
                        figures = measure(servers[name], rows, clients, seconds, warmup)
                        results.setdefault((rows, clients, name), []).append(figures)
                mine = versions[run_index * SWAPS_PER_RUN : (run_index + 1) * SWAPS_PER_RUN]
                targets = [f"{k}={servers[k].address}" for k in KEELS]
                args = ["swap", servers["registry"].address, ",".join(map(str, mine)), "0.5"]
                got = _client([*args, *targets], timeout=600)
                assert isinstance(got, dict)
                for k in KEELS:
                    swaps[k].append(median(got[k]))
                print(f"  run {run_index + 1}/{runs} done; swap ms: {got}")
        finally:
            stop_all(servers)
    print()
    print(
        f"inference: 100-tree XGBoost, raw FP32 [rows, 20], {runs} run(s) x {seconds:g}s "
        f"per scenario (after {warmup:g}s warm-up), medians; swap: median of "
        f"{SWAPS_PER_RUN} per run (ms, SetAlias reply -> first answer from the new version)"
    )
    table(results, swaps)
    ratios(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=1, help="runs to take medians of (default 1)")
    parser.add_argument("--quick", action="store_true", help="2 s per scenario instead of 5")
    args = parser.parse_args(argv)
    run(max(1, args.runs), 2.0 if args.quick else 5.0, 0.5 if args.quick else 1.0)


if __name__ == "__main__":
    main()
