"""The whole suite as separate processes (registry, monitor, inference wired together by
their settings), and what the end-to-end tests send through it: deployments, requests
in parallel over one channel, a worse model on purpose."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterable, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt

from keel.inference.v1 import inference_pb2, inference_pb2_grpc
from keel.monitor.v1 import alerts_pb2, ingest_pb2, reports_pb2
from keel.monitor.v1 import monitor_pb2 as mpb
from keel.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from keel.registry.v1 import deployment_pb2, event_pb2, model_pb2
from keel.registry.v1 import registry_pb2 as rpb
from tests.support.processes import ROOT, python_env, serve_argv, stop, wait_ready
from tests.support.registry import Artifact, training_data

CONCURRENCY = 16


@dataclass(frozen=True)
class Process:
    proc: subprocess.Popen[str]
    address: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass(frozen=True)
class Suite:
    """The three services' addresses, and their processes (for their output)."""

    registry: Process
    monitor: Process
    inference: Process

    def outputs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{process.output()[-4000:]}"
            for name, process in (
                ("registry", self.registry),
                ("monitor", self.monitor),
                ("inference", self.inference),
            )
        )


@contextmanager
def service(tmp: Path, name: str, env: Mapping[str, str]) -> Iterator[Process]:
    """``keel <name> serve`` with its output in ``tmp/name.log`` (a file, not a pipe that
    nobody reads and that would block a chatty process once full)."""
    ready, log = tmp / f"{name}.json", tmp / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            serve_argv(name, tmp / name, ready),
            cwd=ROOT,
            env=python_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        try:
            address = wait_ready(proc, ready).address
        except AssertionError as error:
            raise AssertionError(f"{error}\n{log.read_text(errors='replace')}") from None
        yield Process(proc, address, log)
    finally:
        stop(proc, grace_s=15)


@contextmanager
def running_suite(
    tmp: Path,
    inference_env: Mapping[str, str] | None = None,
    *,
    env_for: Callable[[str], Mapping[str, str]] = lambda name: {},
) -> Iterator[Suite]:
    """Registry, then the monitor following it, then inference following both; stopped
    in the reverse order. ``env_for(name)`` adds settings to every service (TLS files)."""
    with ExitStack() as stack:
        registry = stack.enter_context(
            service(tmp, "registry", {"KEEL_REGISTRY_EVENT_POLL_S": "0.05", **env_for("registry")})
        )
        monitor = stack.enter_context(
            service(
                tmp,
                "monitor",
                {
                    "KEEL_MONITOR_REGISTRY_ADDRESS": registry.address,
                    "KEEL_MONITOR_GUARD_REFRESH_S": "0.2",
                    "KEEL_MONITOR_EVENT_POLL_S": "0.05",
                    **env_for("monitor"),
                },
            )
        )
        inference = stack.enter_context(
            service(
                tmp,
                "inference",
                {
                    "KEEL_INFERENCE_REGISTRY_ADDRESS": registry.address,
                    "KEEL_INFERENCE_MONITOR_ADDRESS": monitor.address,
                    "KEEL_INFERENCE_REGISTRY_RETRY_S": "0.2",
                    **env_for("inference"),
                    **(inference_env or {}),
                },
            )
        )
        yield Suite(registry, monitor, inference)


def fault_delays(delays: Mapping[str, float]) -> dict[str, str]:
    """Inference's fault injection: ``{"model:version": seconds}`` its model calls block."""
    return {"KEEL_INFERENCE_FAULT_DELAYS_S": json.dumps(dict(delays))}


# Models and deployments ----------------------------------------------------------------
def truth(x: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """The true class of rows of ``training_data``'s rule."""
    values = np.asarray(x, dtype=np.float64)
    return (values[:, 0] + 0.5 * values[:, 1] - values[:, 2] > 0).astype(np.int64)


@cache
def guessing_artifact(seed: int = 0) -> Artifact:
    """An XGBoost classifier trained on shuffled labels: about as good as a coin."""
    import xgboost

    x, y = training_data(seed)
    shuffled = np.random.default_rng(seed + 100).permutation(y)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=4, random_state=seed)
    model.fit(x, shuffled)
    return Artifact(
        bytes(model.get_booster().save_raw("ubj")),
        model_pb2.FLAVOR_XGBOOST,
        ("f0", "f1", "f2", "f3"),
    )


def route(
    model: str, version: int, weight: int, variant: str, *, canary: bool = False
) -> deployment_pb2.Route:
    return deployment_pb2.Route(
        target=f"models/{model}/versions/{version}", weight=weight, variant=variant, canary=canary
    )


def rows(count: int, seed: int) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).normal(size=(count, 4)).astype(np.float32)


# Requests ------------------------------------------------------------------------------
async def wait_model_ready(
    stub: oip_grpc.GRPCInferenceServiceAsyncStub, name: str, timeout_s: float = 60
) -> None:
    """Until inference says ``name`` is ready (NOT_FOUND while it has not heard of it)."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                reply = await stub.ModelReady(oip.ModelReadyRequest(name=name), timeout=5)
                if reply.ready:
                    return
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            await asyncio.sleep(0.1)


async def infer_all(
    stub: oip_grpc.GRPCInferenceServiceAsyncStub,
    requests: Sequence[oip.ModelInferRequest],
    concurrency: int = CONCURRENCY,
) -> list[oip.ModelInferResponse]:
    """Every request answered, ``concurrency`` in flight at a time; answers in order."""
    answers: list[oip.ModelInferResponse | None] = [None] * len(requests)
    pending: Iterator[tuple[int, oip.ModelInferRequest]] = iter(enumerate(requests))

    async def worker() -> None:
        for index, request in pending:
            answers[index] = await stub.ModelInfer(request, timeout=30)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [a for a in answers if a is not None]


def row_ids(request_id: str, count: int) -> list[str]:
    """The prediction ids inference logs for a request of ``count`` rows."""
    return [request_id] if count == 1 else [f"{request_id}/{i}" for i in range(count)]


# What the monitor, the registry and inference show afterwards ------------------------
def scope(model: str, **fields: object) -> reports_pb2.ReportScope:
    return reports_pb2.ReportScope(model=f"models/{model}", **fields)  # type: ignore[arg-type]


async def rows_counted(
    monitor: mpb_grpc.MonitorServiceAsyncStub,
    where: reports_pb2.ReportScope,
    timeout_s: float = 10,
) -> int:
    """Rows the monitor holds in ``where`` (0 while it has never heard of the model)."""
    try:
        reply = await monitor.ComputeDataQuality(
            mpb.ComputeDataQualityRequest(scope=where), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return 0
        raise
    return reply.report.row_count


async def until_counted(
    monitor: mpb_grpc.MonitorServiceAsyncStub,
    where: reports_pb2.ReportScope,
    expected: int,
    timeout_s: float = 30,
) -> None:
    """Until the monitor holds ``expected`` rows in ``where``; fails if it holds more."""
    count = 0
    try:
        async with asyncio.timeout(timeout_s):
            while (count := await rows_counted(monitor, where)) < expected:
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(
            f"the monitor holds {count} of {expected} rows after {timeout_s}s"
        ) from None
    assert count == expected


async def until_logged(
    monitor: mpb_grpc.MonitorServiceAsyncStub, model: str, prediction_id: str, timeout_s: float = 30
) -> ingest_pb2.PredictionRecord:
    """The logged prediction, once the monitor has it (NOT_FOUND until then)."""
    request = mpb.GetPredictionRequest(model=f"models/{model}", prediction_id=prediction_id)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    return (await monitor.GetPrediction(request, timeout=10)).prediction
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(
            f"the monitor has no prediction '{prediction_id}' after {timeout_s}s"
        ) from None


async def first_event(
    events: AsyncIterable[rpb.WatchEventsResponse], timeout_s: float = 30
) -> event_pb2.Event:
    async with asyncio.timeout(timeout_s):
        async for item in events:
            if item.WhichOneof("kind") == "event":
                return item.event
    raise AssertionError("the event stream ended")


async def alert_events(
    watch: AsyncIterable[mpb.WatchAlertsResponse], rule: str, timeout_s: float = 90
) -> list[alerts_pb2.AlertEvent]:
    """The rule's alert events up to its action's outcome (succeeded, skipped, failed)."""
    done = (
        alerts_pb2.ACTION_STATE_SUCCEEDED,
        alerts_pb2.ACTION_STATE_SKIPPED,
        alerts_pb2.ACTION_STATE_FAILED,
    )
    got: list[alerts_pb2.AlertEvent] = []
    async with asyncio.timeout(timeout_s):
        async for reply in watch:
            if reply.event.alert.rule != rule:
                continue
            got.append(reply.event)
            results = reply.event.alert.action_results
            if results and all(r.state in done for r in results):
                return got
    raise AssertionError(f"the alert stream ended after {got}")


async def until_served(
    keel_inference: inference_pb2_grpc.InferenceServiceAsyncStub, name: str, sequence: int
) -> inference_pb2.ServedModel:
    async with asyncio.timeout(30):
        while True:
            reply = await keel_inference.GetServedModel(
                inference_pb2.GetServedModelRequest(name=name), timeout=10
            )
            if reply.served_model.applied_event_sequence >= sequence:
                return reply.served_model
            await asyncio.sleep(0.1)
