"""SIGTERM to each service under load: every call in flight at the signal finishes
successfully within the grace period, and the process exits 0. Calls made after the
signal may be refused. Long calls make sure some are in flight at the signal: uploads
streamed slowly (registry), model calls held by an injected delay (inference),
prediction streams sent batch by batch (monitor). What was acknowledged is there after
a restart."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from keel.monitor.v1 import ingest_pb2, reports_pb2
from keel.monitor.v1 import monitor_pb2 as mpb
from keel.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as pb
from tests.support.faults import InferenceLoad, Outcome, Outcomes, ServiceProcess, services
from tests.support.monitor import batch, frame, log_classifier
from tests.support.registry import Artifact, Client, signature, training_data, xgboost_artifact
from tests.support.suite import fault_delays, wait_model_ready

GRACE_S = 5.0
MARGIN_S = 0.25  # a call started this close to the signal may not have reached the server
LOAD_S = 2.0  # load before the signal
OK, UNAVAILABLE = grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE
MODEL = "churn"
ROWS = 100  # per prediction batch

Worker = Callable[[], Coroutine[Any, Any, None]]


def refused(call: Outcome) -> bool:
    """A call the stopping server did not take: UNAVAILABLE, or CANCELLED with gRPC core's
    bare "CANCELLED" for a call that had arrived but that no handler had picked up yet when
    the server shut down (grpc/grpc#41785, fix proposed in grpc/grpc#41786): Keel never
    sees such a call, so it cannot answer it otherwise."""
    if call.code == UNAVAILABLE:
        return True
    return call.code == grpc.StatusCode.CANCELLED and call.details == "CANCELLED"


@dataclass(frozen=True)
class AtSignal:
    """A load's calls split by when they started relative to the signal."""

    signalled_at: float
    before: list[Outcome]  # started at least MARGIN_S before it: each must succeed
    late: list[Outcome]  # started within MARGIN_S before it, or after: OK or refused

    @classmethod
    def split(cls, outcomes: Outcomes, signalled_at: float) -> AtSignal:
        calls = outcomes.calls
        return cls(
            signalled_at,
            [c for c in calls if c.started < signalled_at - MARGIN_S],
            [c for c in calls if c.started >= signalled_at - MARGIN_S],
        )

    @property
    def in_flight(self) -> list[Outcome]:
        """Calls of ``before`` still running when the signal came."""
        return [c for c in self.before if c.ended > self.signalled_at]

    def summary(self, service: str, stopped_s: float) -> str:
        refusals = [c for c in self.late if refused(c)]
        cancelled = sum(c.code == grpc.StatusCode.CANCELLED for c in refusals)
        failed = sum(c.code != OK for c in self.before)
        return (
            f"SIGTERM to {service}: {len(self.before)} calls before it, "
            f"{len(self.in_flight)} of them in flight at it, {failed} failed; "
            f"{len(self.late)} later, {len(refusals)} refused ({cancelled} as CANCELLED by "
            f"gRPC core); exited {stopped_s:.2f} s after the signal"
        )

    def check(self, process: ServiceProcess, stopped_s: float, in_flight: set[str]) -> None:
        """No call started before the signal failed, some of each kind ``in_flight`` were
        running at it, later ones succeeded or were refused, and the process exited 0
        within the grace period (so no call was cut short) without a traceback."""
        assert [str(c) for c in self.before if c.code != OK] == [], process.output()[-3000:]
        assert in_flight <= {c.kind for c in self.in_flight}, [str(c) for c in self.in_flight]
        assert [
            f"{c} (started {c.started - self.signalled_at:+.3f} s from the signal)"
            for c in self.late
            if c.code != OK and not refused(c)
        ] == []
        assert process.proc is not None and process.proc.returncode == 0, process.output()[-3000:]
        assert stopped_s < GRACE_S
        assert "Traceback" not in process.output(), process.output()[-3000:]


async def sigterm_under_load(
    process: ServiceProcess, workers: Sequence[Worker], running: list[bool]
) -> tuple[float, float]:
    """Run ``workers`` for LOAD_S, SIGTERM the process, keep them going until it has
    exited; (the signal's time, seconds it took to exit)."""
    tasks = [asyncio.create_task(worker()) for worker in workers]
    await asyncio.sleep(LOAD_S)
    signalled_at = time.monotonic()
    process.signal(signal.SIGTERM)
    await asyncio.to_thread(process.wait, GRACE_S + 10)
    stopped_s = time.monotonic() - signalled_at
    await asyncio.sleep(0.3)
    running[0] = False
    await asyncio.gather(*tasks)
    return signalled_at, stopped_s


# Registry ---------------------------------------------------------------------------
async def slow_upload(
    artifact: Artifact, pieces: int = 10, pause_s: float = 0.15
) -> AsyncIterator[pb.UploadArtifactRequest]:
    """An upload sent in ``pieces`` with pauses: about 1.5 s in flight."""
    header = pb.UploadArtifactHeader(sha256=artifact.sha256, size_bytes=len(artifact.data))
    yield pb.UploadArtifactRequest(header=header)
    step = -(-len(artifact.data) // pieces)
    for start in range(0, len(artifact.data), step):
        await asyncio.sleep(pause_s)
        yield pb.UploadArtifactRequest(chunk=artifact.data[start : start + step])


class RegistryLoad:
    """Slow uploads, registrations by ``request_id``, and listings."""

    def __init__(self, client: Client, artifact: Artifact) -> None:
        self.client, self.artifact = client, artifact
        self.outcomes, self.running = Outcomes(), [True]
        self.registered: dict[str, int] = {}  # request_id -> version

    async def uploader(self) -> None:
        while self.running[0]:
            upload = slow_upload(self.artifact)
            await self.outcomes.record(
                "UploadArtifact",
                self.client.stub.UploadArtifact(upload, metadata=self.client.md, timeout=30),
            )

    async def writer(self, index: int) -> None:
        n = 0
        while self.running[0]:
            n += 1
            version = model_pb2.ModelVersion(
                flavor=self.artifact.flavor,  # type: ignore[arg-type]
                artifact=model_pb2.Artifact(sha256=self.artifact.sha256),
                signature=signature(self.artifact.features),
            )
            request = pb.CreateModelVersionRequest(
                parent=f"models/{MODEL}", model_version=version, request_id=f"w{index}-{n}"
            )
            reply = await self.outcomes.record(
                "CreateModelVersion",
                self.client.stub.CreateModelVersion(request, metadata=self.client.md, timeout=10),
            )
            if reply is not None:
                self.registered[request.request_id] = reply.model_version.version

    async def reader(self) -> None:
        request = pb.ListModelVersionsRequest(parent=f"models/{MODEL}")
        while self.running[0]:
            await self.outcomes.record(
                "ListModelVersions", self.client.stub.ListModelVersions(request, timeout=10)
            )

    def workers(self) -> list[Worker]:
        writers = [partial(self.writer, i) for i in range(3)]
        return [self.uploader, self.uploader, self.reader, self.reader, *writers]


async def test_sigterm_to_the_registry_fails_no_call_in_flight(
    tmp_path: Path, figures: list[str]
) -> None:
    artifact = xgboost_artifact(trees=5)
    env = {"KEEL_REGISTRY_GRACE_PERIOD_S": str(GRACE_S)}
    with services(tmp_path) as started:
        registry = started["registry"] = ServiceProcess("registry", tmp_path, "registry", env)
        async with grpc.aio.insecure_channel(registry.start()) as channel:
            client = Client(channel)
            await client.create_model(MODEL)
            await client.register(MODEL, artifact)
            load = RegistryLoad(client, artifact)
            signalled_at, stopped_s = await sigterm_under_load(
                registry, load.workers(), load.running
            )
        at = AtSignal.split(load.outcomes, signalled_at)
        figures.append(at.summary("registry", stopped_s))
        at.check(registry, stopped_s, {"UploadArtifact"})
        async with grpc.aio.insecure_channel(registry.start()) as channel:
            listed = await Client(channel).stub.ListModelVersions(
                pb.ListModelVersionsRequest(parent=f"models/{MODEL}", page_size=1000), timeout=10
            )
    # Every registration acknowledged survived the stop.
    assert {v.version for v in listed.model_versions} >= set(load.registered.values())


# Inference --------------------------------------------------------------------------
async def test_sigterm_to_inference_fails_no_call_in_flight(
    tmp_path: Path, figures: list[str]
) -> None:
    with services(tmp_path) as started:
        registry = started["registry"] = ServiceProcess("registry", tmp_path, "registry", {})
        async with grpc.aio.insecure_channel(registry.start()) as channel:
            client = Client(channel)
            await client.create_model(MODEL)
            await client.register(MODEL, xgboost_artifact(trees=5))
            await client.set_alias(MODEL, "production", 1)
        env = {
            "KEEL_INFERENCE_REGISTRY_ADDRESS": registry.address,
            "KEEL_INFERENCE_MONITOR_ADDRESS": "",
            "KEEL_INFERENCE_GRACE_PERIOD_S": str(GRACE_S),
            **fault_delays({f"{MODEL}:1": 0.5}),  # every model call takes 0.5 s
        }
        inference = started["inference"] = ServiceProcess("inference", tmp_path, "inference", env)
        address = inference.start()
        async with grpc.aio.insecure_channel(address) as channel:
            await wait_model_ready(oip_grpc.GRPCInferenceServiceStub(channel), MODEL)
        load = InferenceLoad(address, MODEL, training_data()[0][:64], clients=16)
        running = [True]

        async def worker() -> None:
            load.start()
            while running[0]:
                await asyncio.sleep(0.05)
            await load.stop()

        signalled_at, stopped_s = await sigterm_under_load(inference, [worker], running)
    at = AtSignal.split(load.outcomes, signalled_at)
    figures.append(at.summary("inference", stopped_s))
    at.check(inference, stopped_s, {"ModelInfer"})


# Monitor ----------------------------------------------------------------------------
def predictions(version: int, producer: str, sequence: int) -> ingest_pb2.PredictionBatch:
    x: npt.NDArray[np.float64] = np.asarray(frame(ROWS, sequence).to_numpy(), dtype=np.float64)
    ids = [f"{producer}/{sequence}/{j}" for j in range(ROWS)]
    return batch(MODEL, version, x, ids, producer=producer, sequence=sequence)


class MonitorLoad:
    """Prediction streams sent batch by batch, single batches, and data-quality reports;
    ``acked`` counts the rows the monitor acknowledged."""

    def __init__(self, stub: mpb_grpc.MonitorServiceAsyncStub, version: int) -> None:
        self.stub, self.version = stub, version
        self.outcomes, self.running = Outcomes(), [True]
        self.acked = 0

    async def _stream(self, producer: str, batches: int = 8, pause_s: float = 0.15) -> int:
        async def requests() -> AsyncIterator[mpb.LogPredictionsRequest]:
            yield mpb.LogPredictionsRequest(open=ingest_pb2.LogStreamOpen(producer_id=producer))
            for sequence in range(1, batches + 1):
                await asyncio.sleep(pause_s)
                yield mpb.LogPredictionsRequest(batch=predictions(self.version, producer, sequence))

        rows = 0
        async for reply in self.stub.LogPredictions(requests(), timeout=30):
            if reply.HasField("ack"):
                rows += reply.ack.applied_rows
        return rows

    async def streamer(self, index: int) -> None:
        n = 0
        while self.running[0]:
            n += 1
            rows = await self.outcomes.record("LogPredictions", self._stream(f"s{index}-{n}"))
            self.acked += rows or 0

    async def sender(self, index: int) -> None:
        n = 0
        while self.running[0]:
            n += 1
            request = mpb.LogPredictionBatchRequest(batch=predictions(self.version, f"u{index}", n))
            reply = await self.outcomes.record(
                "LogPredictionBatch", self.stub.LogPredictionBatch(request, timeout=10)
            )
            self.acked += reply.ack.applied_rows if reply is not None else 0

    async def reader(self) -> None:
        scope = reports_pb2.ReportScope(model=f"models/{MODEL}")
        while self.running[0]:
            await self.outcomes.record(
                "ComputeDataQuality",
                self.stub.ComputeDataQuality(
                    mpb.ComputeDataQualityRequest(scope=scope), timeout=10
                ),
            )

    def workers(self) -> list[Worker]:
        streamers = [partial(self.streamer, i) for i in range(3)]
        return [*streamers, partial(self.sender, 0), partial(self.sender, 1), self.reader]


async def rows_counted(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await mpb_grpc.MonitorServiceStub(channel).ComputeDataQuality(
            mpb.ComputeDataQualityRequest(scope=reports_pb2.ReportScope(model=f"models/{MODEL}")),
            timeout=30,
        )
    return reply.report.row_count


async def test_sigterm_to_the_monitor_fails_no_call_in_flight(
    tmp_path: Path, figures: list[str]
) -> None:
    with services(tmp_path) as started:
        registry = started["registry"] = ServiceProcess("registry", tmp_path, "registry", {})
        version = await log_classifier(registry.start(), MODEL)
        env = {
            "KEEL_MONITOR_REGISTRY_ADDRESS": registry.address,
            "KEEL_MONITOR_GRACE_PERIOD_S": str(GRACE_S),
        }
        monitor = started["monitor"] = ServiceProcess("monitor", tmp_path, "monitor", env)
        async with grpc.aio.insecure_channel(monitor.start()) as channel:
            load = MonitorLoad(mpb_grpc.MonitorServiceStub(channel), version)
            first = mpb.LogPredictionBatchRequest(batch=predictions(version, "first", 1))
            load.acked += (await load.stub.LogPredictionBatch(first, timeout=30)).ack.applied_rows
            signalled_at, stopped_s = await sigterm_under_load(
                monitor, load.workers(), load.running
            )
        at = AtSignal.split(load.outcomes, signalled_at)
        figures.append(at.summary("monitor", stopped_s))
        at.check(monitor, stopped_s, {"LogPredictions"})
        counted = await rows_counted(monitor.start())
    # Every row acknowledged survived the stop, once.
    assert counted == load.acked
