"""The inference service: what ``keel inference serve`` runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from keel.inference.v1 import inference_pb2, inference_pb2_grpc
from keel.oip.v2 import open_inference_pb2, open_inference_pb2_grpc
from services.common.bearer import with_service_token
from services.common.channels import create_channel
from services.common.server import ServerDeps, ServiceBinding
from services.common.service import ServiceSpec
from services.common.tls import channel_credentials
from services.inference import upstream
from services.inference.batching import Batcher, Predict
from services.inference.cache import LocalCache
from services.inference.convert import Limits
from services.inference.metrics import InferenceCollector
from services.inference.prediction_log import PredictionLog, open_prediction_log
from services.inference.predictions import PredictionRecord
from services.inference.servicer import InferenceServicer
from services.inference.servicer_keel import KeelInferenceServicer
from services.inference.serving import Server
from services.inference.settings import InferenceSettings
from services.inference.shadows import PredictionSink, Shadows

OIP_SERVICE = open_inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
KEEL_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


def open_inference(
    settings: InferenceSettings, provider: TracerProvider, metrics: CollectorRegistry
) -> AbstractAsyncContextManager[ServerDeps]:
    return serving_stack(settings, provider, metrics)


class _NoLog:
    """No monitor configured: predictions are not logged."""

    def put(self, record: PredictionRecord) -> None:
        pass


@asynccontextmanager
async def serving_stack(
    settings: InferenceSettings,
    provider: TracerProvider,
    metrics: CollectorRegistry,
    sink: PredictionSink | None = None,
) -> AsyncIterator[ServerDeps]:
    """The inference service's dependencies. Every answer goes to ``sink`` when given,
    else to the prediction log delivered to ``settings.monitor_address``."""
    async with contextlib.AsyncExitStack() as stack:
        prediction_log = None
        if sink is None and settings.monitor_address:
            prediction_log = await stack.enter_async_context(
                open_prediction_log(settings, provider)
            )
            sink = prediction_log.shipper
        deps = await stack.enter_async_context(
            _serving(settings, provider, metrics, sink or _NoLog(), prediction_log)
        )
        yield deps


@asynccontextmanager
async def _serving(
    settings: InferenceSettings,
    provider: TracerProvider,
    metrics: CollectorRegistry,
    sink: PredictionSink,
    prediction_log: PredictionLog | None,
) -> AsyncIterator[ServerDeps]:
    executor = ThreadPoolExecutor(settings.predict_threads, thread_name_prefix="predict")

    def batcher(predict: Predict, inline_rows: int) -> Batcher:
        return Batcher(
            predict,
            inline_rows=inline_rows,
            max_batch_rows=settings.max_batch_rows,
            max_delay_s=settings.max_batch_delay_s,
            executor=executor,
            max_queue=settings.max_queue,
            tracer=provider.get_tracer("keel.inference"),
            max_in_flight=settings.predict_threads,
        )

    channel = create_channel(
        settings.registry_address,
        tracer_provider=provider,
        services=[upstream.SERVICE],
        streaming_methods=upstream.STREAMS,
        credentials=channel_credentials(settings),
    )
    channel = with_service_token(channel, settings)
    server = Server(
        upstream.RegistryUpstream(channel),
        LocalCache(settings.data_dir / "cache"),
        executor,
        batcher,
        model_threads=settings.model_threads,
        inline_budget_s=settings.inline_predict_budget_s,
        fault_delays_s=settings.fault_delays_s,
        tracer=provider.get_tracer("keel.inference"),
    )
    await server.start()
    shadows = Shadows(
        sink, threads=settings.shadow_threads, max_in_flight=settings.shadow_max_in_flight
    )
    metrics.register(InferenceCollector(server, shadows, prediction_log))
    stop = asyncio.Event()
    follower = asyncio.create_task(server.follow(stop, settings.registry_retry_s))
    limits = Limits(
        settings.max_request_rows, settings.max_tensor_elements, settings.max_string_bytes
    )
    tracer = provider.get_tracer("keel.inference")
    servicer = InferenceServicer(server, sink, shadows, tracer, limits)
    keel_servicer = KeelInferenceServicer(server)
    bindings = [
        ServiceBinding(
            OIP_SERVICE,
            lambda s: open_inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
                servicer, s
            ),
        ),
        ServiceBinding(
            KEEL_SERVICE,
            lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(keel_servicer, s),
        ),
    ]
    try:
        yield ServerDeps("inference", bindings, metrics)
    finally:
        stop.set()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await channel.close(None)
        shadows.close()
        executor.shutdown(wait=False, cancel_futures=True)


SPEC = ServiceSpec(name="inference", settings=InferenceSettings, open=open_inference)
