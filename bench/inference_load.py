"""The one load generator of the inference benchmark, run as its own process.

Every server gets the same requests: ModelInfer for ``bench-xgb`` with one FP32
``features`` tensor ``[rows, 20]`` in ``raw_input_contents`` and no outputs named,
exactly as tritonclient sends it. Each simulated client owns a channel (its own TCP
connection, so ``--workers`` processes behind one port all get traffic) and calls in a
closed loop, each call with a deadline.

    python -m bench.inference_load load ADDRESS ROWS CLIENTS SECONDS WARMUP
    python -m bench.inference_load swap REGISTRY VERSIONS SETTLE NAME=ADDRESS...

``load`` prints one JSON object: requests, errors, seconds, p50_ms, p99_ms.
``swap`` keeps one client per named server calling, moves ``production`` to each of
VERSIONS (comma-separated) in turn, and prints per server the milliseconds from the
SetAlias reply to the first answer carrying the new version.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc

from bench.inference_models import MODEL, request_rows
from bench.inference_registry import USER
from bench.stats import percentile_ms
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc

CALL_TIMEOUT_S = 10
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def infer_request(rows: int) -> oip.ModelInferRequest:
    matrix = request_rows(rows)
    request = oip.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="features", datatype="FP32", shape=list(matrix.shape))
    request.raw_input_contents.append(matrix.tobytes())
    return request


async def _closed_loop(
    stub: oip_grpc.GRPCInferenceServiceAsyncStub,
    request: oip.ModelInferRequest,
    end: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    while (started := time.perf_counter()) < end:
        try:
            await stub.ModelInfer(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            errors.append(f"{error.code().name}: {error.details()}")
            continue
        latencies.append(time.perf_counter() - started)


async def load(
    address: str, rows: int, clients: int, seconds: float, warmup: float
) -> dict[str, object]:
    request = infer_request(rows)
    channels = [grpc.aio.insecure_channel(address, options=OWN_CONNECTION) for _ in range(clients)]
    try:
        stubs = [oip_grpc.GRPCInferenceServiceStub(channel) for channel in channels]
        for stub in stubs:  # connect every channel before the clock starts
            await stub.ModelInfer(request, timeout=CALL_TIMEOUT_S)
        ignored: list[float] = [0.0] * len(stubs)
        end = time.perf_counter() + warmup
        await asyncio.gather(*(_closed_loop(s, request, end, ignored, []) for s in stubs))
        latencies: list[float] = []
        errors: list[str] = []
        started = time.perf_counter()
        end = started + seconds
        await asyncio.gather(*(_closed_loop(s, request, end, latencies, errors) for s in stubs))
        elapsed = time.perf_counter() - started
    finally:
        for channel in channels:
            await channel.close(None)
    return {
        "requests": len(latencies),
        "warmup_requests": len(ignored),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "seconds": elapsed,
        "p50_ms": percentile_ms(latencies, 0.5),
        "p99_ms": percentile_ms(latencies, 0.99),
    }


async def swap(
    registry: str, versions: list[int], settle: float, targets: dict[str, str]
) -> dict[str, list[float]]:
    """Milliseconds from each SetAlias reply to each server's first answer from it."""
    request = infer_request(1)
    found: dict[str, list[float]] = {name: [] for name in targets}
    wanted: dict[str, tuple[str, float]] = {}
    stop = asyncio.Event()

    async def watch(name: str, stub: oip_grpc.GRPCInferenceServiceAsyncStub) -> None:
        while not stop.is_set():
            reply = await stub.ModelInfer(request, timeout=CALL_TIMEOUT_S)
            if name in wanted and reply.model_version == wanted[name][0]:
                found[name].append(1000 * max(0.0, time.perf_counter() - wanted.pop(name)[1]))

    channels = [grpc.aio.insecure_channel(a, options=OWN_CONNECTION) for a in targets.values()]
    async with grpc.aio.insecure_channel(registry) as registry_channel:
        aliases = pb_grpc.RegistryServiceStub(registry_channel)
        stubs = [oip_grpc.GRPCInferenceServiceStub(channel) for channel in channels]
        tasks = [asyncio.create_task(watch(n, s)) for n, s in zip(targets, stubs, strict=True)]
        await asyncio.sleep(settle)
        for version in versions:
            name = f"models/{MODEL}/aliases/production"
            await aliases.SetAlias(
                pb.SetAliasRequest(name=name, version=version), metadata=USER, timeout=30
            )
            moved = time.perf_counter()
            wanted.update({target: (str(version), moved) for target in targets})
            deadline = moved + 60
            while wanted and time.perf_counter() < deadline and not any(t.done() for t in tasks):
                await asyncio.sleep(0.005)
            if wanted:
                raise SystemExit(f"no answer from version {version} by {sorted(wanted)}")
            await asyncio.sleep(settle)
        stop.set()
        await asyncio.gather(*tasks)
    for channel in channels:
        await channel.close(None)
    return found


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "load":
        address, rows, clients, seconds, warmup = args
        result: object = asyncio.run(
            load(address, int(rows), int(clients), float(seconds), float(warmup))
        )
    else:
        registry, versions, settle, *pairs = args
        targets = dict(pair.split("=", 1) for pair in pairs)
        numbers = [int(v) for v in versions.split(",")]
        result = asyncio.run(swap(registry, numbers, float(settle), targets))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
