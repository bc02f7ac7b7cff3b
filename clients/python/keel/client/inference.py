"""InferenceClient: the inference service's RPCs (Open Inference Protocol and
``keel.inference.v1``), one method each, raising typed exceptions.

Protobuf in, protobuf out; turning feature tables into tensors is ``tensors.py``'s job
(it needs numpy, this module does not).
"""

from __future__ import annotations

from typing import Any

import grpc

from keel.client.errors import invoke
from keel.inference.v1 import inference_pb2, inference_pb2_grpc
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc

OIP_SERVICE = "inference.GRPCInferenceService"
KEEL_SERVICE = "keel.inference.v1.InferenceService"
SERVICES = (OIP_SERVICE, KEEL_SERVICE)


class InferenceClient:
    """Calls to the inference service over one channel."""

    def __init__(self, channel: grpc.Channel, *, timeout: float = 30.0) -> None:
        self._oip = oip_grpc.GRPCInferenceServiceStub(channel)
        self._keel = inference_pb2_grpc.InferenceServiceStub(channel)
        self._timeout = timeout

    def _call(self, method: Any, request: Any) -> Any:
        return invoke(method, request, timeout=self._timeout)

    def model_metadata(self, name: str, version: str = "") -> oip.ModelMetadataResponse:
        """Inputs and outputs of ``name`` (a model or a deployment) at ``version``
        (empty: what the name routes to; a number; an alias)."""
        request = oip.ModelMetadataRequest(name=name, version=version)
        response: oip.ModelMetadataResponse = self._call(self._oip.ModelMetadata, request)
        return response

    def model_ready(self, name: str, version: str = "") -> bool:
        """Whether ``name`` answers now without loading (NotFound while unknown)."""
        request = oip.ModelReadyRequest(name=name, version=version)
        response: oip.ModelReadyResponse = self._call(self._oip.ModelReady, request)
        return response.ready

    def infer(self, request: oip.ModelInferRequest) -> oip.ModelInferResponse:
        response: oip.ModelInferResponse = self._call(self._oip.ModelInfer, request)
        return response

    def explain(self, request: inference_pb2.ExplainRequest) -> inference_pb2.ExplainResponse:
        response: inference_pb2.ExplainResponse = self._call(self._keel.Explain, request)
        return response

    def served_model(self, name: str) -> inference_pb2.GetServedModelResponse:
        """How the replica that answers serves ``name``: routes and load states."""
        request = inference_pb2.GetServedModelRequest(name=name)
        response: inference_pb2.GetServedModelResponse = self._call(
            self._keel.GetServedModel, request
        )
        return response
