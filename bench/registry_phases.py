"""One benchmark run against one fresh registry: every phase, in order, on one channel."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import grpc

from bench.artifacts import Model, SmallModels
from bench.registry_load import CHANNEL_OPTIONS, MODELS, Client, Loop, closed_loop, upload_messages
from bench.registry_server import Running
from bench.stats import CpuMeter, CpuShare

POOL = 8  # artifacts uploaded ahead for the metadata-only registrations
FULL_PATH_IDS = 1 << 32  # small-model ids for the full path, apart from the pool's
SEARCH = 'model = "{model}" AND metrics.f1 >= 0.8 AND tags.team = "risk"'
PAGE_SIZE = 50
UNBOUNDED = 600.0  # seconds: phases bounded by a request count instead


@dataclass(frozen=True)
class Plan:
    clients: int
    seconds: float  # each registration phase
    corpus: int  # versions in the registry when searching
    resolves: int
    searches: int


@dataclass
class RunFigures:
    metadata: Loop = field(default_factory=Loop)
    metadata_cpu: CpuShare = field(default_factory=lambda: CpuShare(None, 0.0))
    full: Loop = field(default_factory=Loop)
    full_cpu: CpuShare = field(default_factory=lambda: CpuShare(None, 0.0))
    seed: Loop = field(default_factory=Loop)
    versions: int = 0
    resolve: Loop = field(default_factory=Loop)
    search: Loop = field(default_factory=Loop)
    search_hits: int = 0
    upload_s: float = float("nan")
    refused_upload_s: float = float("nan")
    upload_bytes: int = 0

    def failures(self) -> tuple[int, str]:
        """Failed calls over every measured phase, and the first failure's status."""
        loops = (self.metadata, self.full, self.seed, self.resolve, self.search)
        first = next((loop.first_error for loop in loops if loop.first_error), "")
        return sum(loop.errors for loop in loops), first


async def run_once(running: Running, plan: Plan, small: SmallModels, big: Model) -> RunFigures:
    figures = RunFigures()
    async with grpc.aio.insecure_channel(running.address, options=CHANNEL_OPTIONS) as channel:
        client = Client(channel)
        await client.create_models()
        pool = [small.make(n) for n in range(POOL)]
        for model in pool:
            await client.upload(model)
        await _registrations(client, plan, small, pool, running.pid, figures)
        await _seed(client, plan, pool, figures)
        await _resolve(client, plan, figures)
        await _search(client, plan, figures)
        await _upload(client, big, figures)
    return figures


async def _registrations(
    client: Client, plan: Plan, small: SmallModels, pool: list[Model], pid: int, out: RunFigures
) -> None:
    async def metadata_only(n: int) -> None:
        await client.register(MODELS[n % len(MODELS)], pool[n % len(pool)])

    async def full_path(n: int) -> None:
        model = small.make(FULL_PATH_IDS + n)
        await client.upload(model)
        await client.register(MODELS[n % len(MODELS)], model)

    # warm up threads, connections and caches; these versions count towards the corpus
    warm = await closed_loop(plan.clients, UNBOUNDED, plan.clients * 2, metadata_only)
    cap = int(plan.corpus * 0.6)
    with CpuMeter(pid) as meter:
        out.metadata = await closed_loop(plan.clients, plan.seconds, cap, metadata_only)
    out.metadata_cpu = meter.share
    cap = int(plan.corpus * 0.2)
    with CpuMeter(pid) as meter:
        out.full = await closed_loop(plan.clients, plan.seconds, cap, full_path)
    out.full_cpu = meter.share
    out.versions = sum(len(loop.latencies) for loop in (warm, out.metadata, out.full))


async def _seed(client: Client, plan: Plan, pool: list[Model], out: RunFigures) -> None:
    async def register(n: int) -> None:
        await client.register(MODELS[n % len(MODELS)], pool[n % len(pool)])

    missing = max(0, plan.corpus - out.versions)
    out.seed = await closed_loop(plan.clients, UNBOUNDED, missing, register)
    out.versions += len(out.seed.latencies)


async def _resolve(client: Client, plan: Plan, out: RunFigures) -> None:
    await client.set_alias("m3", "production", 1)

    async def resolve(n: int) -> None:
        await client.resolve("m3@production")

    await closed_loop(1, UNBOUNDED, 20, resolve)  # warm-up
    out.resolve = await closed_loop(1, UNBOUNDED, plan.resolves, resolve)


async def _search(client: Client, plan: Plan, out: RunFigures) -> None:
    out.search_hits = await client.search(SEARCH.format(model="m3"), PAGE_SIZE)

    async def search(n: int) -> None:
        await client.search(SEARCH.format(model=MODELS[n % len(MODELS)]), PAGE_SIZE)

    out.search = await closed_loop(1, UNBOUNDED, plan.searches, search)


async def _upload(client: Client, big: Model, out: RunFigures) -> None:
    """The large model end to end; then as many bytes that are refused after being
    received, hashed, written and read back (the format check fails at once)."""
    out.upload_bytes = len(big.data)
    messages = upload_messages(big.data, big.sha256)
    started = time.perf_counter()
    await client.upload_stream(iter(messages))
    out.upload_s = time.perf_counter() - started
    junk = bytes(len(big.data))
    messages = upload_messages(junk, hashlib.sha256(junk).hexdigest())
    started = time.perf_counter()
    try:
        await client.upload_stream(iter(messages))
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise
    out.refused_upload_s = time.perf_counter() - started
