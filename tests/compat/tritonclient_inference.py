"""tritonclient's own calls against a Keel inference service, printed as JSON.

Runs under .venv-compat: ``python tritonclient_inference.py HOST:PORT NUMERIC_MODEL
CATEGORICAL_MODEL``.
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


def main(address: str, numeric: str, categorical: str) -> None:
    client = triton.InferenceServerClient(address)
    rows = np.array([[0.5, -1.0, 0.25, 2.0], [-0.3, 0.1, 1.5, -0.7]], dtype=np.float32)

    def infer_numeric() -> dict[str, Any]:
        features = triton.InferInput("features", list(rows.shape), "FP32")
        features.set_data_from_numpy(rows)
        result = client.infer(numeric, [features])
        return {
            "version": result.get_response().model_version,
            "label": result.as_numpy("label").tolist(),
            "probabilities": result.as_numpy("probabilities").tolist(),
        }

    def infer_wrong_shape() -> Any:
        features = triton.InferInput("features", [2, 3], "FP32")
        features.set_data_from_numpy(rows[:, :3].copy())
        return client.infer(numeric, [features]).as_numpy("label").tolist()

    def infer_categorical() -> dict[str, Any]:
        plan = triton.InferInput("plan", [3], "BYTES")
        plan.set_data_from_numpy(
            np.array([b"basic", b"pro", "pr\u00e9mium".encode()], dtype=object)
        )
        age = triton.InferInput("age", [3], "FP32")
        age.set_data_from_numpy(np.array([25.0, 40.0, 61.0], dtype=np.float32))
        result = client.infer(
            categorical, [plan, age], outputs=[triton.InferRequestedOutput("label")]
        )
        return {
            "label": result.as_numpy("label").tolist(),
            "outputs": [o.name for o in result.get_response().outputs],
        }

    def metadata() -> dict[str, Any]:
        meta = client.get_model_metadata(numeric, as_json=True)
        return {"inputs": meta["inputs"], "outputs": [o["name"] for o in meta["outputs"]]}

    def statistics() -> dict[str, Any]:
        stats = client.get_inference_statistics(numeric, as_json=True)["model_stats"][0]
        return {"name": stats["name"], "inference_count": int(stats.get("inference_count", 0))}

    def index() -> list[tuple[str, str, str]]:
        found = client.get_model_repository_index(as_json=True)["models"]
        return sorted((m["name"], m["version"], m.get("state", "")) for m in found)

    seen = {
        "live": attempt(client.is_server_live),
        "ready": attempt(client.is_server_ready),
        "model_ready": attempt(lambda: client.is_model_ready(numeric)),
        "metadata": attempt(metadata),
        "infer": attempt(infer_numeric),
        "wrong_shape": attempt(infer_wrong_shape),
        "categorical": attempt(infer_categorical),
        "statistics": attempt(statistics),
        "index": attempt(index),
        "unload": attempt(lambda: client.unload_model(numeric)),
        "load": attempt(lambda: client.load_model(numeric)),
        "after_reload": attempt(infer_numeric),
    }
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
