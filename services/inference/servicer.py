"""inference.GRPCInferenceService (Open Inference Protocol + Triton's statistics and
repository extensions): protobuf in, one serving call, protobuf out."""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, Tracer

from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from services.common.errors import InvalidArgument, NotFound
from services.common.rpc import Context
from services.common.tracing import span_if_recording
from services.inference import convert, statistics
from services.inference.predictions import PredictionRecord, new_prediction_id, shadow_id
from services.inference.serving import Server
from services.inference.shadows import PredictionSink, Shadows
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


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        server: Server,
        predictions: PredictionSink,
        shadows: Shadows,
        tracer: Tracer | None = None,
        limits: convert.Limits | None = None,
    ) -> None:
        self.server = server
        self.limits = limits or convert.Limits()
        self.tracer = tracer or NoOpTracer()
        self.predictions = predictions
        self.shadows = shadows

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
        deployment = self.server.routing.snapshot.deployments.get(request.model_name)
        sticky = _sticky(request, deployment.sticky_key_parameter if deployment else "")
        target = await self.server.target(request.model_name, request.model_version, sticky)
        version = target.version
        with span_if_recording(self.tracer, "keel.inference.validate"):
            tensors = convert.decode_inputs(request, self.limits)
            features = to_features(version.info.signature, tensors)
        outputs = await version.batcher.submit(features)
        prediction_id = request.id or new_prediction_id()
        response = oip.ModelInferResponse(
            model_name=request.model_name,
            model_version=str(version.info.version),
            id=prediction_id,
        )
        convert.encode_outputs(
            outputs, convert.requested_outputs(request), convert.answers_raw(request), response
        )
        routed = request.model_name if deployment is not None and not request.model_version else ""
        span = trace.get_current_span().get_span_context()
        trace_id, span_id = (span.trace_id, span.span_id) if span.is_valid else (0, 0)
        self.predictions.put(
            PredictionRecord(
                prediction_id,
                version.info.model,
                version.info.version,
                routed,
                target.variant,
                version.info.signature,
                features,
                outputs.tensors,
                trace_id,
                span_id,
            )
        )
        for variant, shadow in target.shadows:
            self.shadows.copy(
                PredictionRecord(
                    shadow_id(prediction_id, variant),
                    shadow.info.model,
                    shadow.info.version,
                    routed,
                    variant,
                    shadow.info.signature,
                    features,
                    {},
                    trace_id,
                    span_id,
                ),
                shadow,
                tensors,
                version.info.signature,
            )
        return response

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
