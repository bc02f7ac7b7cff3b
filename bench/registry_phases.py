"""The phases of one benchmark run against one fresh registry, on one channel.

Measured phases run one backend at a time, the machine otherwise idle. Topping the
registry up to the search corpus is not measured against a goal, so ``registry.py``
runs it on every backend at once to keep the whole benchmark short.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import grpc

from bench.artifacts import Model, SmallModels
from bench.registry_load import MODELS, Client, Loop, closed_loop, upload_messages
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
    seed_alongside: int = 1  # registries seeded at the same time
    versions: int = 0
    resolve: Loop = field(default_factory=Loop)
    search: Loop = field(default_factory=Loop)
    search_hits: int = 0
    upload_bytes: int = 0
    upload_s: float = float("nan")
    ubj_bytes: int = 0
    ubj_upload_s: float = float("nan")
    refused_upload_s: float = float("nan")

    def failures(self) -> tuple[int, str]:
        """Failed calls over every measured phase, and the first failure's status."""
        loops = (self.metadata, self.full, self.seed, self.resolve, self.search)
        first = next((loop.first_error for loop in loops if loop.first_error), "")
        return sum(loop.errors for loop in loops), first


class Session:
    """One registry under test: its client, its server's pid, what was measured."""

    def __init__(self, channel: grpc.aio.Channel, pid: int, plan: Plan) -> None:
        self.client = Client(channel)
        self.pid = pid
        self.plan = plan
        self.pool: list[Model] = []
        self.figures = RunFigures()

    async def _metadata_only(self, n: int) -> None:
        await self.client.register(MODELS[n % len(MODELS)], self.pool[n % len(self.pool)])

    async def registrations(self, small: SmallModels) -> None:
        """Models, the artifact pool, then registrations/s: metadata only, then full path."""
        plan, out = self.plan, self.figures
        await self.client.create_models()
        self.pool = [small.make(n) for n in range(POOL)]
        for model in self.pool:
            await self.client.upload(model)

        async def full_path(n: int) -> None:
            model = small.make(FULL_PATH_IDS + n)
            await self.client.upload(model)
            await self.client.register(MODELS[n % len(MODELS)], model)

        # warm up threads, connections and caches; these versions count towards the corpus
        warm = await closed_loop(plan.clients, UNBOUNDED, plan.clients * 2, self._metadata_only)
        with CpuMeter(self.pid) as meter:
            cap = int(plan.corpus * 0.6)
            out.metadata = await closed_loop(plan.clients, plan.seconds, cap, self._metadata_only)
        out.metadata_cpu = meter.share
        with CpuMeter(self.pid) as meter:
            cap = int(plan.corpus * 0.2)
            out.full = await closed_loop(plan.clients, plan.seconds, cap, full_path)
        out.full_cpu = meter.share
        out.versions = sum(len(loop.latencies) for loop in (warm, out.metadata, out.full))

    async def seed(self, alongside: int) -> None:
        """Register versions until the registry holds the search corpus."""
        out = self.figures
        missing = max(0, self.plan.corpus - out.versions)
        out.seed = await closed_loop(self.plan.clients, UNBOUNDED, missing, self._metadata_only)
        out.seed_alongside = alongside
        out.versions += len(out.seed.latencies)

    async def reads(self) -> None:
        """Alias resolve, then filtered search, each from one client."""
        out = self.figures
        await self.client.set_alias("m3", "production", 1)

        async def resolve(n: int) -> None:
            await self.client.resolve("m3@production")

        async def search(n: int) -> None:
            await self.client.search(SEARCH.format(model=MODELS[n % len(MODELS)]), PAGE_SIZE)

        await closed_loop(1, UNBOUNDED, 20, resolve)  # warm-up
        out.resolve = await closed_loop(1, UNBOUNDED, self.plan.resolves, resolve)
        out.search_hits = await self.client.search(SEARCH.format(model="m3"), PAGE_SIZE)
        out.search = await closed_loop(1, UNBOUNDED, self.plan.searches, search)

    async def uploads(self, big: Model, big_ubj: Model) -> None:
        """The large model end to end, as JSON and as UBJSON; then as many bytes as the
        JSON that are refused after being received, hashed, written and read back (the
        format check fails at once on them)."""
        out = self.figures
        out.upload_bytes, out.ubj_bytes = len(big.data), len(big_ubj.data)
        out.upload_s = await self._timed_upload(big.data, big.sha256)
        out.ubj_upload_s = await self._timed_upload(big_ubj.data, big_ubj.sha256)
        junk = bytes(len(big.data))
        out.refused_upload_s = await self._timed_upload(junk, hashlib.sha256(junk).hexdigest())

    async def _timed_upload(self, data: bytes, sha256: str) -> float:
        """Seconds until the server answered, whether it accepted or refused the bytes."""
        messages = upload_messages(data, sha256)
        started = time.perf_counter()
        try:
            await self.client.upload_stream(iter(messages))
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
        return time.perf_counter() - started
