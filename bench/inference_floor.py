"""The inference floor: a bare grpc.aio ModelInfer that parses the request and answers a
fixed response. No model, no Keel plumbing (no interceptors, health or reflection):
what any Python gRPC inference server costs at least with this client.

``python -m bench.inference_floor READY_FILE`` binds 127.0.0.1:0 and writes the port it
got to READY_FILE (the same JSON as Keel's ``--ready-file``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import numpy as np

from bench.floor_server import serve_bare
from keel.oip.v2 import open_inference_pb2 as oip


def fixed_response() -> oip.ModelInferResponse:
    response = oip.ModelInferResponse(model_name="floor", model_version="1")
    response.outputs.add(name="probabilities", datatype="FP32", shape=[1, 2])
    response.raw_output_contents.append(np.array([[0.5, 0.5]], dtype=np.float32).tobytes())
    return response


async def serve(ready_file: Path) -> None:
    answer = fixed_response()

    async def model_infer(
        request: oip.ModelInferRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> oip.ModelInferResponse:
        return answer

    handler = grpc.unary_unary_rpc_method_handler(
        model_infer,
        request_deserializer=oip.ModelInferRequest.FromString,
        response_serializer=oip.ModelInferResponse.SerializeToString,
    )
    await serve_bare("floor", "inference.GRPCInferenceService", {"ModelInfer": handler}, ready_file)


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
