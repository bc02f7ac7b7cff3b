"""What every registry use case shares: the database, the artifact store, the change
hub, name checks, paging and the unit-of-work runner that wakes watchers.

Each unit of work of a traced call is one ``keel.registry.db`` span (``db.system``,
``db.operation`` = the use case whose work it is, e.g. ``Models.create_model``): one per
transaction, not per statement."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, Tracer
from sqlalchemy import Connection

from services.common.db import Database
from services.common.errors import FieldViolation, InvalidArgument, NotFound
from services.common.events import SequenceHub
from services.common.tracing import NO_SPAN
from services.registry.artifacts import ArtifactStore
from services.registry.records import NAME_PATTERN, ModelRecord
from services.registry.store import ChangeEncoder, Store

T = TypeVar("T")


MAX_VERSION = 2**63 - 1  # versions are BIGINT columns


def is_number(text: str) -> bool:
    """Whether ``text`` is a whole number of ASCII digits that a BIGINT column holds
    (``str.isdigit`` alone also takes "²", and ``int`` refuses more than 4300 digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_VERSION


def invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", violations=[FieldViolation(field, message)])


def check_id(field: str, value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise invalid(field, f"expected 1-63 characters of [a-z0-9-], got {value!r}")
    return value


def parse_name(field: str, name: str, *kinds: str) -> list[str]:
    """Split a resource name such as ``models/churn/versions/3`` by its collection
    segments ``kinds`` (``"models", "versions"``) and return the ids."""
    parts = name.split("/")
    expected = "/".join(f"{kind}/{{{kind[:-1]}}}" for kind in kinds)
    if len(parts) != 2 * len(kinds) or any(parts[2 * i] != k for i, k in enumerate(kinds)):
        raise invalid(field, f"expected a name like '{expected}', got {name!r}")
    return [parts[2 * i + 1] for i in range(len(kinds))]


def model_id(field: str, name: str) -> str:
    return check_id(field, parse_name(field, name, "models")[0])


def version_ref(field: str, name: str) -> tuple[str, int]:
    model, version = parse_name(field, name, "models", "versions")
    check_id(field, model)
    if not is_number(version) or int(version) < 1:
        raise invalid(field, f"expected a version number from 1 to {MAX_VERSION}, got {version!r}")
    return model, int(version)


def alias_ref(field: str, name: str) -> tuple[str, str]:
    model, alias = parse_name(field, name, "models", "aliases")
    check_id(field, model)
    check_id(field, alias)
    return model, alias


class Core:
    """The registry's shared dependencies."""

    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        encode: ChangeEncoder,
        hub: SequenceHub,
        tracer: Tracer | None = None,
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.encode = encode
        self.hub = hub
        self.tracer = tracer or NoOpTracer()

    async def write(self, work: Callable[[Store], T]) -> T:
        """Run ``work`` in one write transaction, then wake event subscribers."""

        def unit(connection: Connection) -> tuple[T, int]:
            store = Store(connection, self.encode)
            return work(store), store.last_sequence

        with self._span(work):
            result, latest = await self.db.write(unit)
        if latest:
            await self.hub.committed(latest)
        return result

    async def read(self, work: Callable[[Store], T], *, traced: bool = True) -> T:
        """Run ``work`` in one read; ``traced=False`` for a stream's polling reads, which
        would add a span every poll to a stream's span that lasts for hours."""
        if not traced:
            return await self.db.read(lambda connection: work(Store(connection)))
        with self._span(work):
            return await self.db.read(lambda connection: work(Store(connection)))

    def _span(self, work: Callable[..., Any]) -> AbstractContextManager[object]:
        if not trace.get_current_span().is_recording():
            return NO_SPAN
        attributes = {"db.system": self.db.dialect, "db.operation": operation_name(work)}
        return self.tracer.start_as_current_span("keel.registry.db", attributes=attributes)


def operation_name(work: Callable[..., Any]) -> str:
    """The use case a unit of work belongs to: ``Models.create_model`` for a function
    defined in that method (``Models.create_model.<locals>.work``), or a partial's
    function."""
    function = getattr(work, "func", work)
    name = getattr(function, "__qualname__", type(function).__name__)
    return str(name).split(".<locals>", 1)[0]


def require_model(store: Store, name: str, *, lock: bool = False) -> ModelRecord:
    model = store.get_model(name, lock=lock)
    if model is None:
        raise NotFound(f"model 'models/{name}' not found", metadata={"model": name})
    return model
