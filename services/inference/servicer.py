"""inference.GRPCInferenceService (Open Inference Protocol + Triton's statistics and
repository extensions): protobuf in, one serving call, protobuf out."""

from __future__ import annotations

import asyncio
import logging
import time

from opentelemetry import trace

from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from services.common.errors import InvalidArgument, NotFound
from services.common.rpc import Context
from services.inference import convert, statistics
from services.inference.predictions import PredictionLog, PredictionRecord, new_prediction_id
from services.inference.records import Features, Outputs
from services.inference.serving import LoadedVersion, Server
from services.inference.validation import to_features

log = logging.getLogger(__name__)
SERVER_NAME = "keel-inference"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data", "statistics", "model_repository", "schedule_policy"]


def _sticky(request: oip.ModelInferRequest, parameter: str) -> str | None:
    if not parameter or parameter not in request.parameters:
        return None
    value = request.parameters[parameter]
    kind = value.WhichOneof("parameter_choice")
    return None if kind is None else str(getattr(value, kind))


def _trace_id() -> str:
    span = trace.get_current_span().get_span_context()
    return format(span.trace_id, "032x") if span.is_valid else ""


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(self, server: Server, predictions: PredictionLog) -> None:
        self.server = server
        self.predictions = predictions
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    async def ServerLive(
        self, request: oip.ServerLiveRequest, context: Context
    ) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: oip.ServerReadyRequest, context: Context
    ) -> oip.ServerReadyResponse:
        return oip.ServerReadyResponse(ready=self.server.ready)

    async def ModelReady(
        self, request: oip.ModelReadyRequest, context: Context
    ) -> oip.ModelReadyResponse:
        return oip.ModelReadyResponse(ready=self.server.is_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: oip.ServerMetadataRequest, context: Context
    ) -> oip.ServerMetadataResponse:
        return oip.ServerMetadataResponse(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS
        )

    async def ModelMetadata(
        self, request: oip.ModelMetadataRequest, context: Context
    ) -> oip.ModelMetadataResponse:
        target = await self.server.target(request.name, request.version, None)
        info = target.version.info
        versions = [str(v) for m, v in sorted(self.server.loaded) if m == info.model]
        return convert.model_metadata(request.name, versions, info.signature, info.flavor)

    async def ModelInfer(
        self, request: oip.ModelInferRequest, context: Context
    ) -> oip.ModelInferResponse:
        started = time.perf_counter()
        deployment = self.server.routing.snapshot.deployments.get(request.model_name)
        sticky = _sticky(request, deployment.sticky_key_parameter if deployment else "")
        target = await self.server.target(request.model_name, request.model_version, sticky)
        version = target.version
        features = to_features(version.info.signature, convert.decode_inputs(request))
        outputs = await version.batcher.submit(features)
        response = oip.ModelInferResponse(
            model_name=request.model_name, model_version=str(version.info.version), id=request.id
        )
        convert.encode_outputs(
            outputs, convert.requested_outputs(request), convert.answers_raw(request), response
        )
        prediction_id = request.id or new_prediction_id()
        trace_id = _trace_id()
        self._log(
            prediction_id, version, target.variant, features, outputs, started, trace_id, False
        )
        for variant, shadow in target.shadows:
            self._shadow(prediction_id, shadow, variant, features, trace_id)
        return response

    def _log(
        self,
        prediction_id: str,
        version: LoadedVersion,
        variant: str,
        features: Features,
        outputs: Outputs,
        started: float,
        trace_id: str,
        shadow: bool,
    ) -> None:
        self.predictions.put(
            PredictionRecord(
                prediction_id,
                version.info.model,
                version.info.version,
                variant,
                features.columns,
                outputs.tensors,
                time.perf_counter() - started,
                trace_id,
                shadow,
            )
        )

    def _shadow(
        self,
        prediction_id: str,
        version: LoadedVersion,
        variant: str,
        features: Features,
        trace_id: str,
    ) -> None:
        """A copy of the request for a shadow: logged under its variant, never awaited."""

        async def run() -> None:
            started = time.perf_counter()
            try:
                outputs = await version.batcher.submit(features)
            except Exception as error:  # noqa: BLE001 - a shadow never affects the caller
                log.warning("shadow %s failed: %s", variant, error)
                return
            self._log(prediction_id, version, variant, features, outputs, started, trace_id, True)

        task = asyncio.create_task(run())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def ModelStatistics(
        self, request: oip.ModelStatisticsRequest, context: Context
    ) -> oip.ModelStatisticsResponse:
        chosen = [
            lv
            for (model, number), lv in sorted(self.server.loaded.items())
            if (not request.name or model == request.name)
            and (not request.version or str(number) == request.version)
        ]
        if request.name and not chosen:
            which = f" {request.version}" if request.version else ""
            raise NotFound(f"model '{request.name}' has no loaded version{which}")
        return oip.ModelStatisticsResponse(
            model_stats=[statistics.model_statistics(lv) for lv in chosen]
        )

    async def RepositoryIndex(
        self, request: oip.RepositoryIndexRequest, context: Context
    ) -> oip.RepositoryIndexResponse:
        return statistics.repository_index(self.server, request.ready)

    async def RepositoryModelLoad(
        self, request: oip.RepositoryModelLoadRequest, context: Context
    ) -> oip.RepositoryModelLoadResponse:
        version = ""
        if "version" in request.parameters:
            version = request.parameters["version"].string_param or str(
                request.parameters["version"].int64_param
            )
        target = await self.server.target(request.model_name, version, None)
        await self.server.ensure(target.version.info.model, target.version.info.version)
        return oip.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: oip.RepositoryModelUnloadRequest, context: Context
    ) -> oip.RepositoryModelUnloadResponse:
        if not request.model_name:
            raise InvalidArgument("model_name: expected the model to unload")
        await self.server.unload(request.model_name)
        return oip.RepositoryModelUnloadResponse()
