"""The three targets' requests: inference (``ModelInfer``), registry reads (``GetModel``,
``ListModelVersions``, ``ResolveAlias``) and monitor ingestion (``LogPredictionBatch``).

Each client has a channel of its own — its own TCP connection (a local subchannel
pool), as separate users would. Channels do not retry: a load generator counts every
failure the service answers, where the client library would hide UNAVAILABLE behind its
retry policy. Every call carries the run's deadline.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from keel.loadtest.data import POOL, batch_template, infer_request, matrix_width, stamped
from keel.loadtest.scheduler import Workload
from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as mpb
from keel.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as rpb
from keel.registry.v1 import registry_pb2_grpc as rpb_grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SETUP_TIMEOUT_S = 30.0


def open_channel(address: str) -> grpc.aio.Channel:
    """A channel with a connection of its own and no retries."""
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.enable_retries", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )


@dataclass(frozen=True)
class Options:
    """What the workloads share: the model, the version or alias, rows per request,
    the per-call deadline and the seed of generated data."""

    model: str
    version: str = ""
    alias: str = "production"
    rows: int = 1
    timeout_s: float = 10.0
    seed: int = 0


def _version_reference(options: Options) -> str:
    """The version a workload reads: ``--version`` (a number or an alias), else the
    alias."""
    return options.version or options.alias


# Inference ---------------------------------------------------------------------------


class InferenceWorkload(Workload):
    """``ModelInfer`` of ``rows`` rows, one FP32 ``features`` tensor, raw."""

    def __init__(
        self,
        stubs: Sequence[oip_grpc.GRPCInferenceServiceAsyncStub],
        requests: Sequence[oip.ModelInferRequest],
        options: Options,
    ) -> None:
        self.stubs, self.requests, self.options = stubs, requests, options

    def operation(self, index: int) -> str:
        return "ModelInfer"

    async def send(self, client: int, index: int) -> int:
        request = self.requests[index % len(self.requests)]
        await self.stubs[client].ModelInfer(request, timeout=self.options.timeout_s)
        return self.options.rows


async def inference_workload(
    channels: Sequence[grpc.aio.Channel], options: Options
) -> InferenceWorkload:
    """Learns F from ``ModelMetadata`` and builds the request pool."""
    stubs = [oip_grpc.GRPCInferenceServiceStub(channel) for channel in channels]
    metadata = await stubs[0].ModelMetadata(
        oip.ModelMetadataRequest(name=options.model, version=options.version),
        timeout=SETUP_TIMEOUT_S,
    )
    width = matrix_width(metadata)
    rng = random.Random(options.seed)
    requests = [
        infer_request(options.model, options.version, options.rows, width, rng) for _ in range(POOL)
    ]
    return InferenceWorkload(stubs, requests, options)


# Registry ----------------------------------------------------------------------------

REGISTRY_OPERATIONS = ("GetModel", "ListModelVersions", "ResolveAlias")


class RegistryWorkload(Workload):
    """Reads in turn: ``GetModel``, ``ListModelVersions`` (first page of 50, BASIC) and
    ``ResolveAlias`` of ``{model}@{alias}`` (BASIC)."""

    def __init__(self, stubs: Sequence[rpb_grpc.RegistryServiceAsyncStub], options: Options):
        self.stubs, self.options = stubs, options
        name = f"models/{options.model}"
        self.get = rpb.GetModelRequest(name=name)
        self.list = rpb.ListModelVersionsRequest(
            parent=name, page_size=50, view=model_pb2.MODEL_VERSION_VIEW_BASIC
        )
        self.resolve = rpb.ResolveAliasRequest(
            reference=f"{options.model}@{options.alias}", view=model_pb2.MODEL_VERSION_VIEW_BASIC
        )

    def operation(self, index: int) -> str:
        return REGISTRY_OPERATIONS[index % len(REGISTRY_OPERATIONS)]

    async def send(self, client: int, index: int) -> int:
        stub, timeout = self.stubs[client], self.options.timeout_s
        kind = index % len(REGISTRY_OPERATIONS)
        if kind == 0:
            await stub.GetModel(self.get, timeout=timeout)
        elif kind == 1:
            await stub.ListModelVersions(self.list, timeout=timeout)
        else:
            await stub.ResolveAlias(self.resolve, timeout=timeout)
        return 0


async def registry_workload(
    channels: Sequence[grpc.aio.Channel], options: Options
) -> RegistryWorkload:
    """Checks that the model and its alias exist, so that a typo fails before the run."""
    stubs = [rpb_grpc.RegistryServiceStub(channel) for channel in channels]
    workload = RegistryWorkload(stubs, options)
    await stubs[0].ResolveAlias(workload.resolve, timeout=SETUP_TIMEOUT_S)
    return workload


# Monitor -----------------------------------------------------------------------------


class MonitorWorkload(Workload):
    """``LogPredictionBatch`` of ``rows`` generated rows per request, each row with a
    prediction id of its own (``{run}-{index}.{row}``), so the monitor counts every row."""

    def __init__(
        self,
        stubs: Sequence[mpb_grpc.MonitorServiceAsyncStub],
        templates: Sequence[ingest_pb2.PredictionBatch],
        options: Options,
    ) -> None:
        self.stubs, self.templates, self.options = stubs, templates, options
        self.run = uuid.uuid4().hex[:12]
        self.producer = f"keel-loadtest/{self.run}"

    def operation(self, index: int) -> str:
        return "LogPredictionBatch"

    async def send(self, client: int, index: int) -> int:
        rows = self.options.rows
        ids = [f"{self.run}-{index}.{row}" for row in range(rows)]
        batch = stamped(
            self.templates[index % len(self.templates)], self.producer, ids, time.time_ns()
        )
        request = mpb.LogPredictionBatchRequest(batch=batch)
        await self.stubs[client].LogPredictionBatch(request, timeout=self.options.timeout_s)
        return rows


async def monitor_workload(
    channels: Sequence[grpc.aio.Channel], registry: grpc.aio.Channel, options: Options
) -> MonitorWorkload:
    """Reads the model's task and the version's signature from the registry, and builds
    a pool of batches that fit them."""
    stub = rpb_grpc.RegistryServiceStub(registry)
    model = (
        await stub.GetModel(
            rpb.GetModelRequest(name=f"models/{options.model}"), timeout=SETUP_TIMEOUT_S
        )
    ).model
    reference = _version_reference(options)
    view = model_pb2.MODEL_VERSION_VIEW_BASIC
    if reference.removeprefix("v").isdigit():
        request = rpb.GetModelVersionRequest(
            name=f"models/{options.model}/versions/{reference.removeprefix('v')}", view=view
        )
        version = (await stub.GetModelVersion(request, timeout=SETUP_TIMEOUT_S)).model_version
    else:
        resolve = rpb.ResolveAliasRequest(reference=f"{options.model}@{reference}", view=view)
        version = (await stub.ResolveAlias(resolve, timeout=SETUP_TIMEOUT_S)).model_version
    rng = random.Random(options.seed)
    templates = [
        batch_template(
            options.model, version.version, model.task, version.signature, options.rows, rng
        )
        for _ in range(POOL)
    ]
    stubs = [mpb_grpc.MonitorServiceStub(channel) for channel in channels]
    return MonitorWorkload(stubs, templates, options)
