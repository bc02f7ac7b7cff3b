"""What every registry use case shares: the database, the artifact store, the change
hub, name checks, paging and the unit-of-work runner that wakes watchers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection

from services.common.db import Database
from services.common.errors import FieldViolation, InvalidArgument, NotFound
from services.common.events import SequenceHub
from services.registry.artifacts import ArtifactStore
from services.registry.records import NAME_PATTERN, ModelRecord
from services.registry.store import ChangeEncoder, Store

T = TypeVar("T")


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
    if not version.isdigit() or int(version) < 1:
        raise invalid(field, f"expected a version number >= 1, got {version!r}")
    return model, int(version)


def alias_ref(field: str, name: str) -> tuple[str, str]:
    model, alias = parse_name(field, name, "models", "aliases")
    check_id(field, model)
    check_id(field, alias)
    return model, alias


class Core:
    """The registry's shared dependencies."""

    def __init__(
        self, db: Database, artifacts: ArtifactStore, encode: ChangeEncoder, hub: SequenceHub
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.encode = encode
        self.hub = hub

    async def write(self, work: Callable[[Store], T]) -> T:
        """Run ``work`` in one write transaction, then wake event subscribers."""

        def unit(connection: Connection) -> tuple[T, int]:
            store = Store(connection, self.encode)
            return work(store), store.last_sequence

        result, latest = await self.db.write(unit)
        if latest:
            await self.hub.committed(latest)
        return result

    async def read(self, work: Callable[[Store], T]) -> T:
        return await self.db.read(lambda connection: work(Store(connection)))


def require_model(store: Store, name: str, *, lock: bool = False) -> ModelRecord:
    model = store.get_model(name, lock=lock)
    if model is None:
        raise NotFound(f"model 'models/{name}' not found", metadata={"model": name})
    return model
