"""keel.inference.v1 messages to records and back (Explain, served-model state)."""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.common.v1 import schema_pb2
from keel.inference.v1 import inference_pb2 as pb
from services.common.errors import InvalidArgument
from services.inference.explain import Explanation
from services.inference.records import ModelSignature
from services.inference.serving import LoadedVersion, Server
from services.inference.upstream import Snapshot
from services.inference.validation import DecodedTensor

DATATYPES = {
    schema_pb2.DATA_TYPE_FLOAT32: ("FP32", np.float32),
    schema_pb2.DATA_TYPE_FLOAT64: ("FP64", np.float64),
    schema_pb2.DATA_TYPE_INT32: ("INT32", np.int32),
    schema_pb2.DATA_TYPE_INT64: ("INT64", np.int64),
    schema_pb2.DATA_TYPE_BOOL: ("BOOL", np.bool_),
}
FIELDS = {
    "float_values": np.float32,
    "double_values": np.float64,
    "int64_values": np.int64,
    "bool_values": np.bool_,
}


def decode_tensors(tensors: list[pb.Tensor]) -> dict[str, DecodedTensor]:
    decoded: dict[str, DecodedTensor] = {}
    for i, tensor in enumerate(tensors):
        field = f"inputs[{i}]"
        shape = tuple(int(d) for d in tensor.shape)
        if any(d < 0 for d in shape):
            raise InvalidArgument(
                f"{field}.shape: expected non-negative dimensions, got {list(shape)}"
            )
        count = int(np.prod(shape)) if shape else 1
        kind = tensor.WhichOneof("values")
        if tensor.data_type == schema_pb2.DATA_TYPE_STRING:
            if kind != "string_values":
                raise InvalidArgument(f"{field}: a STRING tensor carries string_values")
            array: np.ndarray = np.array(
                [v.encode() for v in tensor.string_values.values], dtype=object
            )
            datatype = "BYTES"
        elif tensor.data_type in DATATYPES:
            datatype, dtype = DATATYPES[tensor.data_type]
            if kind == "raw_values":
                width = np.dtype(dtype).itemsize
                if len(tensor.raw_values) != count * width:
                    raise InvalidArgument(
                        f"{field}.raw_values: expected {count * width} bytes, "
                        f"got {len(tensor.raw_values)}"
                    )
                array = np.frombuffer(tensor.raw_values, dtype=np.dtype(dtype).newbyteorder("<"))
            elif kind in FIELDS:
                array = np.asarray(getattr(tensor, kind).values, dtype=dtype)
            else:
                raise InvalidArgument(f"{field}: expected values or raw_values")
        else:
            raise InvalidArgument(
                f"{field}.data_type: expected a data type, got {tensor.data_type}"
            )
        if array.size != count:
            raise InvalidArgument(
                f"{field}: shape {list(shape)} needs {count} values, got {array.size}"
            )
        decoded[tensor.name] = DecodedTensor(tensor.name, datatype, shape, array.reshape(shape))
    return decoded


def explain_response(
    request: pb.ExplainRequest,
    version: LoadedVersion,
    variant: str,
    explanation: Explanation,
    signature: ModelSignature,
) -> pb.ExplainResponse:
    method = (
        pb.EXPLANATION_METHOD_TREE_SHAP
        if explanation.method == "TREE_SHAP"
        else pb.EXPLANATION_METHOD_LINEAR
    )
    response = pb.ExplainResponse(
        model_name=version.info.model,
        model_version=str(version.info.version),
        variant=variant,
        request_id=request.request_id,
        method=method,
        output_space=pb.OUTPUT_SPACE_MARGIN,
        feature_names=list(explanation.feature_names),
    )
    labels = _labels(signature, len(explanation.contributions))
    wanted = set(request.class_labels)
    unknown = wanted - set(labels)
    if unknown and signature.task == "MULTICLASS_CLASSIFICATION":
        raise InvalidArgument(
            f"class_labels: unknown label(s) {sorted(unknown)}; expected some of {labels}"
        )
    for label, contributions, expected in zip(
        labels, explanation.contributions, explanation.expected_value, strict=True
    ):
        if wanted and signature.task == "MULTICLASS_CLASSIFICATION" and label not in wanted:
            continue
        response.row_count = int(contributions.shape[0])
        response.explanations.add(
            class_label=label,
            expected_value=float(expected),
            contributions=contributions.astype(np.float64).ravel().tolist(),
            outputs=(contributions.sum(axis=1, dtype=np.float64) + expected).tolist(),
        )
    return response


def _labels(signature: ModelSignature, outputs: int) -> list[str]:
    if signature.task == "REGRESSION":
        return [""]
    labels = list(signature.class_labels) or [str(i) for i in range(max(outputs, 2))]
    return labels[-1:] if signature.task == "BINARY_CLASSIFICATION" else labels[:outputs]


def served_model(server: Server, name: str) -> pb.ServedModel:
    snapshot = server.routing.snapshot
    served = pb.ServedModel(name=name, applied_event_sequence=snapshot.sequence)
    deployment = snapshot.deployments.get(name)
    served.routing_source = (
        pb.ROUTING_SOURCE_DEPLOYMENT if deployment is not None else pb.ROUTING_SOURCE_ALIAS
    )
    if deployment is not None:
        served.sticky_key_parameter = deployment.sticky_key_parameter
    _routes(served.routes, server, snapshot, name)
    served.ready = all(r.state == pb.LOAD_STATE_READY for r in served.routes if not r.shadow)
    pending = server.pending
    if pending is not None:
        _routes(served.pending_routes, server, pending, name)
        if [(r.model_name, r.model_version) for r in served.pending_routes] != [
            (r.model_name, r.model_version) for r in served.routes
        ]:
            served.pending_event_sequence = pending.sequence
        else:
            del served.pending_routes[:]
    return served


def _routes(into: Any, server: Server, snapshot: Snapshot, name: str) -> None:
    """The routes ``snapshot`` gives ``name``, each with its load state."""
    deployment = snapshot.deployments.get(name)
    if deployment is not None:
        total = sum(r.weight for r in deployment.routes if not r.shadow) or 1.0
        for r in deployment.routes:
            route = into.add(
                variant=r.variant,
                model_name=r.model,
                model_version=r.version,
                alias=r.alias,
                weight=r.weight,
                traffic_fraction=0.0 if r.shadow else r.weight / total,
                shadow=r.shadow,
            )
            _state(route, server, r.model, r.version)
        return
    version = snapshot.aliases.get(name, {}).get("production", 0)
    route = into.add(
        variant="default",
        model_name=name,
        model_version=version,
        alias="production",
        weight=1.0,
        traffic_fraction=1.0,
    )
    _state(route, server, name, version)


def _state(route: pb.Route, server: Server, model: str, version: int) -> None:
    loaded = server.loaded.get((model, version))
    if loaded is not None:
        route.state = pb.LOAD_STATE_READY
        route.load_time.FromNanoseconds(int(loaded.load_time * 1e9))
        route.artifact_sha256 = loaded.info.sha256
        route.platform = loaded.info.flavor
        route.artifact_source = (
            pb.ARTIFACT_SOURCE_CACHE if loaded.source == "cache" else pb.ARTIFACT_SOURCE_REGISTRY
        )
    elif (model, version) in server.failures:
        route.state = pb.LOAD_STATE_FAILED
        route.state_reason = server.failures[(model, version)]
    else:
        route.state = pb.LOAD_STATE_LOADING


def replica(server: Server, replica_id: str) -> pb.ReplicaStatus:
    return pb.ReplicaStatus(
        replica_id=replica_id,
        applied_event_sequence=server.routing.snapshot.sequence,
        registry_connected=server.registry_connected,
    )
