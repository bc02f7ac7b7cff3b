"""keel.inference.v1.InferenceService: explanations and this replica's routing state."""

from __future__ import annotations

import asyncio
import os
import socket

from opentelemetry.util.types import AttributeValue

from keel.inference.v1 import inference_pb2 as pb
from keel.inference.v1 import inference_pb2_grpc as pb_grpc
from services.common.errors import InvalidArgument, NotFound, ResourceExhausted
from services.common.rpc import Context
from services.common.tracing import span_if_recording
from services.inference import convert_keel
from services.inference.serving import Server
from services.inference.validation import to_features

MAX_EXPLAIN_ROWS = 1000


class KeelInferenceServicer(pb_grpc.InferenceServiceServicer):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.replica_id = f"{socket.gethostname()}:{os.getpid()}"

    async def Explain(self, request: pb.ExplainRequest, context: Context) -> pb.ExplainResponse:
        if not request.model_name:
            raise InvalidArgument("model_name: expected a model or deployment name")
        deployment = self.server.routing.snapshot.deployments.get(request.model_name)
        if request.variant and deployment is None:
            raise InvalidArgument("variant: only a deployment has variants")
        target = await self.server.target(
            request.model_name, request.model_version, request.sticky_key or None
        )
        version = target.version
        if request.variant and deployment is not None:
            chosen = [r for r in deployment.routes if r.variant == request.variant]
            if not chosen:
                raise NotFound(f"deployment '{deployment.name}' has no variant '{request.variant}'")
            version = await self.server.ensure(chosen[0].model, chosen[0].version)
        signature = version.info.signature
        features = to_features(signature, convert_keel.decode_tensors(list(request.inputs)))
        if features.rows > MAX_EXPLAIN_ROWS:
            raise ResourceExhausted(
                f"inputs: at most {MAX_EXPLAIN_ROWS} rows per Explain, got {features.rows}"
            )
        loop = asyncio.get_running_loop()
        traced: dict[str, AttributeValue] = {
            "keel.model": version.info.model,
            "keel.version": version.info.version,
            "keel.rows": features.rows,
        }
        with span_if_recording(self.server.tracer, "keel.inference.explain", traced) as span:
            explanation = await loop.run_in_executor(
                self.server.executor, version.model.explain, features
            )
            if span is not None:
                span.set_attribute("keel.explain.method", explanation.method)
        variant = request.variant or (target.variant if deployment is not None else "")
        return convert_keel.explain_response(request, version, variant, explanation, signature)

    async def GetServedModel(
        self, request: pb.GetServedModelRequest, context: Context
    ) -> pb.GetServedModelResponse:
        snapshot = self.server.routing.snapshot
        if request.name not in snapshot.deployments and request.name not in snapshot.tasks:
            raise NotFound(f"'{request.name}' is not served here (no such model or deployment)")
        return pb.GetServedModelResponse(
            served_model=convert_keel.served_model(self.server, request.name),
            replica=convert_keel.replica(self.server, self.replica_id),
        )

    async def ListServedModels(
        self, request: pb.ListServedModelsRequest, context: Context
    ) -> pb.ListServedModelsResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size: expected 0 or more")
        size = min(request.page_size or 50, 1000)
        snapshot = self.server.routing.snapshot
        names = sorted(set(snapshot.deployments) | set(snapshot.tasks))
        names = [n for n in names if n > request.page_token]
        page = names[:size]
        return pb.ListServedModelsResponse(
            served_models=[convert_keel.served_model(self.server, n) for n in page],
            next_page_token=page[-1] if len(names) > size else "",
            replica=convert_keel.replica(self.server, self.replica_id),
        )
