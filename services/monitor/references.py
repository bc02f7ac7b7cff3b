"""Model versions as the monitor knows them: fetched once from the registry, kept in the
monitor's own database (so a restart with the registry down still has them) and in
memory."""

from __future__ import annotations

import hashlib
import time

import grpc
from sqlalchemy import Connection, insert, select

from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc
from services.common.db import Database
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.monitor.convert import reference_from_registry
from services.monitor.reference import ModelReference
from services.monitor.tables import REFERENCES

TIMEOUT_S = 10.0


class References:
    def __init__(self, db: Database, registry: pb_grpc.RegistryServiceAsyncStub) -> None:
        self._db = db
        self._registry = registry
        self._cache: dict[tuple[str, int], ModelReference] = {}
        self._models: set[str] = set()

    async def get(self, model: str, version: int) -> ModelReference:
        """The version ``model``/``version``; NotFound when the registry has no such
        version, Unavailable when it cannot be asked and the version is not known yet."""
        key = (model, version)
        found = self._cache.get(key)
        if found is not None:
            return found
        row = await self._db.read(lambda c: _load(c, model, version))
        if row is None:
            model_doc, version_doc = await self._fetch(model, version)
            digest = hashlib.sha256(version_doc).hexdigest()
            await self._db.write(
                lambda c: _store(c, model, version, digest, model_doc, version_doc)
            )
        else:
            model_doc, version_doc = row
        reference = reference_from_registry(
            model_pb2.Model.FromString(model_doc), model_pb2.ModelVersion.FromString(version_doc)
        )
        self._cache[key] = reference
        self._models.add(model)
        return reference

    async def known_model(self, model: str) -> bool:
        """Whether the monitor has heard of ``model`` (a version of it was logged)."""
        if model in self._models:
            return True
        found = await self._db.read(lambda c: _has_model(c, model))
        if found:
            self._models.add(model)
        return found

    async def latest_version(self, model: str) -> int:
        """The newest version the registry has of ``model`` (NotFound when none)."""
        try:
            got = await self._registry.GetModel(
                pb.GetModelRequest(name=f"models/{model}"), timeout=TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"model '{model}' is not in the registry") from None
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:  # a malformed name
                raise InvalidArgument(f"model: {error.details()}") from None
            raise Unavailable(f"the registry cannot be reached: {error.details()}") from None
        if got.model.latest_version < 1:
            raise NotFound(f"model '{model}' has no version yet")
        return int(got.model.latest_version)

    async def versions(self, model: str) -> list[int]:
        return await self._db.read(lambda c: _versions(c, model))

    async def _fetch(self, model: str, version: int) -> tuple[bytes, bytes]:
        try:
            got_model = await self._registry.GetModel(
                pb.GetModelRequest(name=f"models/{model}"), timeout=TIMEOUT_S
            )
            got_version = await self._registry.GetModelVersion(
                pb.GetModelVersionRequest(
                    name=f"models/{model}/versions/{version}",
                    view=model_pb2.MODEL_VERSION_VIEW_FULL,
                ),
                timeout=TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    f"model version '{model}/{version}' is not in the registry"
                ) from None
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:  # a malformed name
                raise InvalidArgument(f"model: {error.details()}") from None
            raise Unavailable(
                f"the registry cannot be reached to look up '{model}/{version}': {error.details()}"
            ) from None
        return (
            got_model.model.SerializeToString(),
            got_version.model_version.SerializeToString(),
        )


def _load(connection: Connection, model: str, version: int) -> tuple[bytes, bytes] | None:
    row = connection.execute(
        select(REFERENCES.c.model_doc, REFERENCES.c.version_doc).where(
            REFERENCES.c.model == model, REFERENCES.c.version == version
        )
    ).first()
    return None if row is None else (bytes(row[0]), bytes(row[1]))


def _store(
    connection: Connection, model: str, version: int, digest: str, model_doc: bytes, doc: bytes
) -> None:
    if _load(connection, model, version) is None:
        connection.execute(
            insert(REFERENCES).values(
                model=model,
                version=version,
                digest=digest,
                model_doc=model_doc,
                version_doc=doc,
                fetch_time=time.time_ns(),
            )
        )


def _has_model(connection: Connection, model: str) -> bool:
    return (
        connection.execute(select(REFERENCES.c.model).where(REFERENCES.c.model == model)).first()
        is not None
    )


def _versions(connection: Connection, model: str) -> list[int]:
    rows = connection.execute(
        select(REFERENCES.c.version)
        .where(REFERENCES.c.model == model)
        .order_by(REFERENCES.c.version)
    )
    return [int(row[0]) for row in rows]
