"""What this replica serves: loaded versions, aliases and deployments, and how a request's
(name, version) resolves to one loaded version (plus shadows).

Versions are loaded (download or local cache → verify → safe load → warm-up) before any
route points at them; routing changes are then applied in one assignment, so a request
either sees the old routing or the new one, and in-flight calls finish on the version
they started with.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

from opentelemetry.trace import NoOpTracer, Tracer
from opentelemetry.util.types import AttributeValue

from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.inference.batching import Batcher, Predict
from services.inference.cache import LocalCache
from services.inference.records import Features, Outputs
from services.inference.runtime import LoadedModel, load_model
from services.inference.upstream import (
    DeploymentInfo,
    Notice,
    RegistryUpstream,
    RouteInfo,
    Snapshot,
    VersionInfo,
)

log = logging.getLogger(__name__)
DEFAULT_ALIAS = "production"
RETRY_LOAD_S = 2.0  # first pause before loading a version that failed again
MAX_RETRY_LOAD_S = 60.0


@dataclass
class LoadedVersion:
    info: VersionInfo
    model: LoadedModel
    batcher: Batcher
    load_time: float
    source: str  # registry | cache
    predict: Predict  # the model call, as the batcher makes it (with any injected fault)


@dataclass(frozen=True)
class Target:
    """Where one request goes: the version answering it, its variant, and shadows."""

    version: LoadedVersion
    variant: str
    shadows: tuple[tuple[str, LoadedVersion], ...] = ()


@dataclass
class Routing:
    """An immutable-by-convention view of aliases and deployments; replaced whole."""

    snapshot: Snapshot = field(default_factory=lambda: Snapshot(0))


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` alone also takes "²", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _int64(text: str) -> int | None:
    """``text`` (ASCII digits) as a number, None past 2^63-1 (``int`` also refuses more
    than 4300 digits)."""
    return int(text) if len(text) <= 19 and int(text) < 2**63 else None


def _pick(routes: list[RouteInfo], sticky: str | None) -> RouteInfo:
    live = [r for r in routes if not r.shadow and r.weight > 0]
    if not live:
        raise Unavailable("the deployment has no route with weight")
    total = sum(r.weight for r in live)
    if sticky is None:
        point = random.random() * total  # noqa: S311 - traffic split, not security
    else:
        digest = hashlib.sha256(sticky.encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * total
    for route in live:
        point -= route.weight
        if point < 0:
            return route
    return live[-1]


class Server:
    """The serving table and its loader."""

    def __init__(
        self,
        upstream: RegistryUpstream,
        cache: LocalCache,
        executor: Executor,
        batcher_factory: Callable[[Predict, int], Batcher],
        *,
        model_threads: int = 1,
        inline_budget_s: float = 0.0,
        fault_delays_s: Mapping[str, float] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.upstream = upstream
        self.inline_budget_s = inline_budget_s
        self.tracer = tracer or NoOpTracer()
        self.model_threads = model_threads
        self.cache = cache
        self.executor = executor
        self._batcher = batcher_factory
        self._fault_delays_s = dict(fault_delays_s or {})
        self.routing = Routing()
        self.intended = Snapshot(0)  # the registry's state as last heard, before any fallback
        self.pending: Snapshot | None = None  # what it routes to, while some of it cannot load
        self._retrying: asyncio.Task[None] | None = None
        self._retry_attempts = 0
        self.loaded: dict[tuple[str, int], LoadedVersion] = {}
        self.known: dict[tuple[str, int], VersionInfo] = {}
        self.failures: dict[tuple[str, int], str] = {}
        self._loading: dict[tuple[str, int], asyncio.Task[LoadedVersion]] = {}
        self.registry_connected = False
        self.ready = False
        self._closing: set[asyncio.Task[None]] = set()

    # loading ------------------------------------------------------------------------
    async def ensure(self, model: str, version: int) -> LoadedVersion:
        """The loaded version, loading it first (once, however many callers wait)."""
        key = (model, version)
        if key in self.loaded:
            return self.loaded[key]
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load(model, version))
            self._loading[key] = task
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(task)

    async def _load(self, model: str, version: int) -> LoadedVersion:
        """Load in a ``keel.inference.load`` span: a child of the request that asked for
        the version (the task runs in a copy of its context), with the registry calls
        (version, artifact download) inside it; a root span for a routing change."""
        attributes: dict[str, AttributeValue] = {"keel.model": model, "keel.version": version}
        with self.tracer.start_as_current_span(
            "keel.inference.load", attributes=attributes
        ) as span:
            loaded = await self._fetch_and_load(model, version)
            span.set_attribute("keel.source", loaded.source)
            return loaded

    async def _fetch_and_load(self, model: str, version: int) -> LoadedVersion:
        key = (model, version)
        try:
            info = self.known.get(key)
            if info is None:
                task = self.routing.snapshot.tasks.get(model) or None
                info = await self.upstream.version(model, version, task)
                self.known[key] = info
            data = self.cache.get(info.sha256)
            source = "cache"
            if data is None:
                data = await self.upstream.download(info.sha256)
                await asyncio.to_thread(self.cache.put, info.sha256, data)
                source = "registry"
            delay_s = self._fault_delays_s.get(f"{model}:{version}", 0.0)
            # A version slowed on purpose (chaos) never predicts on the loop.
            budget_s = 0.0 if delay_s > 0 else self.inline_budget_s
            loaded_model, inline_rows = await asyncio.get_running_loop().run_in_executor(
                self.executor, _load_and_warm, data, info, self.model_threads, budget_s
            )
        except Exception as error:
            self.failures[key] = str(error)
            raise
        self.failures.pop(key, None)
        predict = _with_fault(loaded_model.predict, delay_s)
        loaded = LoadedVersion(
            info, loaded_model, self._batcher(predict, inline_rows), time.time(), source, predict
        )
        self.loaded[key] = loaded
        log.info(
            "loaded %s version %d from %s, predicting through %s (batches of up to %d rows "
            "predict on the event loop)",
            model,
            version,
            source,
            loaded_model.engine,
            inline_rows,
        )
        return loaded

    def _wanted(self, snapshot: Snapshot) -> set[tuple[str, int]]:
        wanted = {(m, a[DEFAULT_ALIAS]) for m, a in snapshot.aliases.items() if DEFAULT_ALIAS in a}
        for deployment in snapshot.deployments.values():
            wanted |= {(r.model, r.version) for r in deployment.routes if r.version}
        return wanted

    async def apply(self, snapshot: Snapshot) -> None:
        """Load what ``snapshot`` routes to, then switch to it in one assignment. A route
        whose version cannot be loaded keeps serving what it served before (the load is
        tried again later), so a move to a broken version fails no call."""
        self.intended = snapshot
        followed = _follow_aliases(snapshot)
        wanted = sorted(self._wanted(followed))
        results = await asyncio.gather(
            *(self.ensure(m, v) for m, v in wanted), return_exceptions=True
        )
        failed = set()
        for key, result in zip(wanted, results, strict=True):
            if isinstance(result, BaseException):
                failed.add(key)
                log.warning("could not load version %d of '%s': %s", key[1], key[0], result)
        self.pending = followed if failed else None
        if failed:
            followed = _keep_serving(followed, self.routing.snapshot, failed)
            self._retry_later(snapshot)
        else:
            self._retry_attempts = 0
        self.routing = Routing(followed)
        self.ready = True
        await asyncio.to_thread(self.cache.save_state, followed, list(self.known.values()))

    def _retry_later(self, snapshot: Snapshot) -> None:
        """Apply ``snapshot`` again after a pause growing to a minute, unless a newer
        state arrives first."""
        if self._retrying is not None and not self._retrying.done():
            return
        pause = min(RETRY_LOAD_S * 2**self._retry_attempts, MAX_RETRY_LOAD_S)
        self._retry_attempts += 1

        async def retry() -> None:
            await asyncio.sleep(pause)
            if self.intended is snapshot:
                await self.apply(snapshot)

        self._retrying = asyncio.create_task(retry())

    # resolving ----------------------------------------------------------------------
    async def target(self, name: str, version_text: str, sticky: str | None) -> Target:
        snapshot = self.routing.snapshot
        deployment = snapshot.deployments.get(name)
        if deployment is not None and not version_text:
            route = _pick(deployment.routes, sticky)
            shadows = []
            for shadow in (r for r in deployment.routes if r.shadow and r.version):
                loaded = self.loaded.get((shadow.model, shadow.version))
                if loaded is not None:
                    shadows.append((shadow.variant, loaded))
            return Target(
                await self._loaded(route.model, route.version), route.variant, tuple(shadows)
            )
        model = deployment.model if deployment is not None else name
        if model not in snapshot.tasks:
            raise NotFound(f"model '{name}' is not served here (no such model or deployment)")
        number = self.version_of(model, version_text or DEFAULT_ALIAS)
        variant = version_text or DEFAULT_ALIAS
        return Target(
            await self._loaded(model, number),
            variant if not _is_number(version_text) else f"v{number}",
        )

    def version_of(self, model: str, version_text: str) -> int:
        if _is_number(version_text):
            number = _int64(version_text)
            if number is None or number < 1:
                raise InvalidArgument(
                    f"model_version: expected a version from 1 to 2^63-1, got {version_text!r}"
                )
            return number
        held = self.routing.snapshot.aliases.get(model, {}).get(version_text)
        if held is None:
            raise NotFound(f"model '{model}' has no alias '{version_text}'")
        return held

    async def _loaded(self, model: str, version: int) -> LoadedVersion:
        loaded = self.loaded.get((model, version))
        if loaded is not None:
            return loaded
        try:
            return await self.ensure(model, version)
        except NotFound:
            raise
        except Exception as error:  # noqa: BLE001 - a failed load is unavailability
            raise Unavailable(
                f"version {version} of '{model}' could not be loaded: {error}"
            ) from None

    def is_ready(self, name: str, version_text: str) -> bool:
        """Whether ``name`` (model or deployment) can answer now without loading;
        NOT_FOUND for a name this replica does not know."""
        snapshot = self.routing.snapshot
        deployment = snapshot.deployments.get(name)
        if deployment is not None and not version_text:
            live = [r for r in deployment.routes if not r.shadow and r.weight > 0]
            return bool(live) and all((r.model, r.version) in self.loaded for r in live)
        model = deployment.model if deployment is not None else name
        if model not in snapshot.tasks:
            raise NotFound(f"model '{name}' is not served here (no such model or deployment)")
        try:
            number = self.version_of(model, version_text or DEFAULT_ALIAS)
        except NotFound:
            return False
        return (model, number) in self.loaded

    async def unload(self, model: str, grace_s: float = 5.0) -> None:
        """Drop the model's loaded versions (reloaded on the next request for them);
        calls already running on them finish first."""
        gone = [self.loaded.pop(key) for key in [k for k in self.loaded if k[0] == model]]
        if not gone:
            raise NotFound(f"model '{model}' has no loaded version")

        async def close_later() -> None:
            await asyncio.sleep(grace_s)
            for version in gone:
                await version.batcher.close()

        self._closing.add(asyncio.create_task(close_later()))

    # keeping up ---------------------------------------------------------------------
    async def start(self) -> None:
        """Serve the registry's state, or the cached one when the registry is down."""
        try:
            snapshot = await self.upstream.snapshot()
            self.registry_connected = True
        except Exception as error:  # noqa: BLE001 - fall back to the cache
            cached = self.cache.load_state()
            if cached is None:
                log.warning("registry unreachable (%s) and nothing cached: not ready yet", error)
                return
            snapshot, versions = cached
            self.known.update({(v.model, v.version): v for v in versions})
            log.warning("registry unreachable (%s); serving the cached state", error)
        await self.apply(snapshot)

    async def follow(self, stop: asyncio.Event, retry_s: float = 1.0) -> None:
        """Apply registry changes as they come; reconnect (resuming) when the stream breaks."""
        while not stop.is_set():
            try:
                if not self.registry_connected:
                    await self.apply(await self.upstream.snapshot())
                    self.registry_connected = True
                async for item in self.upstream.watch(self.intended.sequence):
                    if isinstance(item, int):
                        continue
                    await self.apply(_changed(self.intended, item))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - keep serving, retry later
                self.registry_connected = False
                log.warning("registry stream lost (%s); serving the current state", error)
            try:
                await asyncio.wait_for(stop.wait(), retry_s)
            except TimeoutError:
                continue


def _with_fault(predict: Predict, delay_s: float) -> Predict:
    """``predict``, blocking ``delay_s`` first in the thread that runs it (chaos testing:
    ``KEEL_INFERENCE_FAULT_DELAYS_S``)."""
    if delay_s <= 0:
        return predict

    def delayed(features: Features) -> Outputs:
        time.sleep(delay_s)
        return predict(features)

    return delayed


def _load_and_warm(
    data: bytes, info: VersionInfo, threads: int, inline_budget_s: float
) -> tuple[LoadedModel, int]:
    """The loaded model, and how many rows it predicts on the event loop at most."""
    loaded = load_model(data, info.signature, sha256=info.sha256, nthread=threads)
    return loaded, loaded.warm_up(inline_budget_s)


def _changed(snapshot: Snapshot, notice: Notice) -> Snapshot:
    aliases = {m: dict(a) for m, a in snapshot.aliases.items()}
    deployments = dict(snapshot.deployments)
    tasks = dict(snapshot.tasks)
    if notice.model and notice.model not in tasks:
        tasks[notice.model] = 0
    if notice.alias:
        held = aliases.setdefault(notice.model, {})
        if notice.version:
            held[notice.alias] = notice.version
        else:
            held.pop(notice.alias, None)
    if notice.deployment is not None:
        if notice.deleted:
            deployments.pop(notice.deployment.name, None)
        else:
            deployments[notice.deployment.name] = notice.deployment
    return Snapshot(notice.sequence, tasks, aliases, deployments)


def _keep_serving(new: Snapshot, old: Snapshot, failed: set[tuple[str, int]]) -> Snapshot:
    """``new``, except where it routes to a version that failed to load: there the
    ``production`` alias or the deployment stays as ``old`` had it."""
    aliases = {model: dict(held) for model, held in new.aliases.items()}
    for model, held in aliases.items():
        version = held.get(DEFAULT_ALIAS)
        previous = old.aliases.get(model, {}).get(DEFAULT_ALIAS)
        if version is not None and (model, version) in failed and previous is not None:
            held[DEFAULT_ALIAS] = previous
    deployments = dict(new.deployments)
    for name, deployment in new.deployments.items():
        live = [(r.model, r.version) for r in deployment.routes if not r.shadow]
        if any(key in failed for key in live) and name in old.deployments:
            deployments[name] = old.deployments[name]
    return replace(new, aliases=aliases, deployments=deployments)


def _follow_aliases(snapshot: Snapshot) -> Snapshot:
    """Routes that target an alias serve the alias's current version."""
    deployments = {}
    for name, d in snapshot.deployments.items():
        routes = [
            replace(r, version=snapshot.aliases.get(r.model, {}).get(r.alias, r.version))
            if r.alias
            else r
            for r in d.routes
        ]
        deployments[name] = DeploymentInfo(d.name, d.model, routes, d.sticky_key_parameter)
    return replace(snapshot, deployments=deployments)
