"""Run tritonclient's own gRPC calls against an address and print what it saw as JSON.

Runs under .venv-compat (tritonclient pins protobuf < 7): ``python tritonclient_calls.py
HOST:PORT MODEL``. Each entry is the call, and either its answer or the error
tritonclient raised (status and message).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def attempt(call: Callable[[], Any]) -> dict[str, Any]:
    try:
        return {"answer": call()}
    except InferenceServerException as error:
        return {"status": error.status(), "message": error.message()}


def main(address: str, model: str) -> None:
    client = triton.InferenceServerClient(address)
    features = triton.InferInput("features", [2, 3], "FP32")
    features.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))

    def infer() -> dict[str, Any]:
        result = client.infer(model, [features], request_id="r-1", parameters={"sleep_s": 0.01})
        response = result.get_response()
        parameters = {}
        for key, value in response.parameters.items():
            kind = value.WhichOneof("parameter_choice")
            parameters[key] = {kind: getattr(value, kind)}
        return {"model_name": response.model_name, "id": response.id, "parameters": parameters}

    seen = {
        "is_server_live": attempt(client.is_server_live),
        "is_server_ready": attempt(client.is_server_ready),
        "is_model_ready": attempt(lambda: client.is_model_ready(model)),
        "infer": attempt(infer),
    }
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
