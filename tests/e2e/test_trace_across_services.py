"""One request's trace across the suite's processes, exported by OTLP to a collector: the
caller's span → inference (a cold load of the asked version inside it) → the registry's
artifact download → the monitor recording the request's prediction log, each span with
the right parent, all in the caller's trace."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import grpc

from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from tests.support.inference import raw_request
from tests.support.monitor import frame, labels_for, log_classifier
from tests.support.processes import start_service, stop
from tests.support.registry import Client
from tests.support.tracing import Collector, Exported, otlp_collector

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00f067aa0ba902b7"
INFER = "/inference.GRPCInferenceService/ModelInfer"
DOWNLOAD = "/keel.registry.v1.RegistryService/DownloadArtifact"
LOG_STREAM = "/keel.monitor.v1.MonitorService/LogPredictions"


class Processes:
    """Service processes, stopped with SIGTERM (their spans are flushed on the way out),
    in the reverse order of their start."""

    def __init__(self) -> None:
        self.running: list[tuple[str, subprocess.Popen[str]]] = []
        self.outputs: dict[str, str] = {}

    async def start(self, service: str, tmp: Path, env: dict[str, str]) -> str:
        proc, address = await asyncio.to_thread(start_service, service, tmp, service, env)
        self.running.append((service, proc))
        return address

    async def stop_all(self) -> None:
        """In a thread: the collector these processes flush to runs on this loop."""
        while self.running:
            service, proc = self.running.pop()
            self.outputs[service] = await asyncio.to_thread(stop, proc, 30)

    def kill_remaining(self) -> None:
        """After a failure: nothing is left running."""
        for _, proc in self.running:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    def report(self) -> str:
        return "\n".join(f"--- {name} ---\n{out[-3000:]}" for name, out in self.outputs.items())


def register_another(address: str, name: str) -> int:
    """A version whose artifact differs from ``log_classifier``'s (so it is downloaded,
    not found in inference's cache under the same digest)."""
    from sklearn.linear_model import LogisticRegression

    from keel.client import Keel

    train, test = frame(2000, 1), frame(500, 2)
    model = LogisticRegression(C=0.01).fit(train, labels_for(train))
    client = Keel(registry=address)
    try:
        version = client.log_model(
            model, name, train, labels_for(train), test, labels_for(test), cv=None
        )
        return int(version.version)
    finally:
        client.close()


async def wait_ready(stub: oip_grpc.GRPCInferenceServiceAsyncStub, name: str) -> None:
    async with asyncio.timeout(60):
        while True:
            try:
                if (await stub.ModelReady(oip.ModelReadyRequest(name=name), timeout=5)).ready:
                    return
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            await asyncio.sleep(0.1)


async def wait_for_span(collector: Collector, service: str, name: str, timeout_s: float) -> bool:
    """Whether ``service`` exported a span ``name`` in TRACE within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            while not [
                s
                for s in collector.spans()
                if (s.service, s.name, s.trace_id) == (service, name, TRACE)
            ]:
                await asyncio.sleep(0.1)
    except TimeoutError:
        return False
    return True


def ancestors(span: Exported, spans: list[Exported]) -> list[str]:
    by_id = {s.span_id: s for s in spans}
    chain, parent = [], span.parent_id
    while parent and parent != "0" * 16:
        chain.append(parent)
        parent = by_id[parent].parent_id if parent in by_id else ""
    return chain


def describe(spans: list[Exported]) -> str:
    ordered = sorted(spans, key=lambda s: s.span.start_time_unix_nano)
    return "\n".join(f"{s.service} {s.name} {s.span_id} <- {s.parent_id}" for s in ordered)


def only(spans: list[Exported], service: str, name: str) -> Exported:
    found = [s for s in spans if (s.service, s.name) == (service, name)]
    assert len(found) == 1, f"{len(found)} spans {name!r} of {service}:\n{describe(spans)}"
    return found[0]


async def test_one_request_is_one_trace_across_inference_registry_and_monitor(
    tmp_path: Path,
) -> None:
    processes = Processes()
    async with otlp_collector() as (collector, endpoint):
        telemetry = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        try:
            registry = await processes.start(
                "registry", tmp_path, {**telemetry, "KEEL_REGISTRY_EVENT_POLL_S": "0.05"}
            )
            first = await log_classifier(registry, "churn")
            cold = await asyncio.to_thread(register_another, registry, "churn")
            async with grpc.aio.insecure_channel(registry) as channel:
                await Client(channel).set_alias("churn", "production", first)
            monitor = await processes.start(
                "monitor", tmp_path, {**telemetry, "KEEL_MONITOR_REGISTRY_ADDRESS": registry}
            )
            inference = await processes.start(
                "inference",
                tmp_path,
                {
                    **telemetry,
                    "KEEL_INFERENCE_REGISTRY_ADDRESS": registry,
                    "KEEL_INFERENCE_MONITOR_ADDRESS": monitor,
                    "KEEL_INFERENCE_PREDICTION_LOG_FLUSH_S": "0.05",
                },
            )
            async with grpc.aio.insecure_channel(inference) as channel:
                stub = oip_grpc.GRPCInferenceServiceStub(channel)
                await wait_ready(stub, "churn")  # the production version, loaded at start
                request = raw_request("churn", frame(3, 9).to_numpy(), version=str(cold))
                reply = await stub.ModelInfer(
                    request, metadata=(("traceparent", f"00-{TRACE}-{CALLER}-01"),), timeout=60
                )
            assert reply.model_version == str(cold)
            recorded = await wait_for_span(collector, "keel-monitor", "keel.monitor.record", 30)
            await processes.stop_all()
        finally:
            processes.kill_remaining()
    assert recorded, f"no keel.monitor.record span in the trace\n{processes.report()}"

    spans = [s for s in collector.spans() if s.trace_id == TRACE]
    services = {s.service for s in spans}
    assert services == {"keel-inference", "keel-registry", "keel-monitor"}, describe(spans)
    # The caller's span → inference's server span → the cold load inside it.
    server = only(spans, "keel-inference", INFER)
    assert server.parent_id == CALLER
    load = only(spans, "keel-inference", "keel.inference.load")
    assert load.parent_id == server.span_id
    predict = only(spans, "keel-inference", "keel.inference.predict")
    assert predict.parent_id == server.span_id
    # The registry served the artifact download within the request's trace, below the load.
    download = only(spans, "keel-registry", DOWNLOAD)
    chain = ancestors(download, spans)
    assert load.span_id in chain and server.span_id in chain and chain[-1] == CALLER
    # The monitor recorded the request's prediction log as a child of an inference span of
    # the request, linked to the stream that delivered it.
    record = only(spans, "keel-monitor", "keel.monitor.record")
    inference_spans = {s.span_id for s in spans if s.service == "keel-inference"}
    assert record.parent_id in inference_spans
    assert server.span_id in [record.parent_id, *ancestors(record, spans)]
    streams = {
        (s.trace_id, s.span_id)
        for s in collector.spans()
        if (s.service, s.name) == ("keel-monitor", LOG_STREAM)
    }
    assert record.links & streams
