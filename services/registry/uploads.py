"""Use cases on artifacts: verified upload, resumable download, metadata."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from services.common.errors import DataLoss, InvalidArgument, NotFound
from services.common.safe_load import ModelInspection, inspect_artifact
from services.registry.artifacts import check_sha256
from services.registry.core import Core
from services.registry.records import ArtifactRecord, now_us
from services.registry.store import Store

INSPECTED_MEMORY = 100_000  # digests remembered as inspected (cleared when full)


class Uploads:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._inspected: set[str] = set()

    async def upload(
        self, sha256: str, size: int, chunks: AsyncIterator[bytes]
    ) -> tuple[ArtifactRecord, bool]:
        """Store the bytes after checking digest, size and format; True when they were new."""
        check_sha256(sha256, "header.sha256")
        stored = await self.core.artifacts.put(sha256, size, chunks)
        inspection = inspection_to_dict(stored.inspection) if stored.inspection else {}
        record = ArtifactRecord(
            stored.sha256, stored.size_bytes, str(stored.format), inspection, now_us()
        )

        def work(store: Store) -> tuple[ArtifactRecord, bool]:
            existing = store.insert_artifact(record)
            return (record, True) if existing is None else (existing, False)

        # The row decides: of callers racing with the same bytes, one inserts it (the
        # file may be renamed into place by another, or left by an upload that failed).
        return await self.core.write(work)

    async def inspected(self, sha256: str) -> ArtifactRecord | None:
        """Make sure the artifact was loaded safely once (XGBoost files are loaded at their
        first registration); returns it when this call read it, None when it is not
        uploaded or known inspected. An artifact that fails the load is refused and
        removed, since no version can use it."""
        if sha256 in self._inspected:  # inspections never change once made
            return None
        found = await self.core.read(lambda store: store.get_artifact(sha256))
        if found is None:
            return None
        if found.inspection:
            self._remember(sha256)
            return found
        data = await self.core.artifacts.read_all(sha256)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise DataLoss(f"artifact 'artifacts/{sha256}': stored bytes no longer match")
        try:
            inspection = inspection_to_dict(await asyncio.to_thread(inspect_artifact, data))
        except InvalidArgument:
            await self.core.write(lambda store: store.delete_artifact(sha256))
            self.core.artifacts.delete(sha256)
            raise
        await self.core.write(lambda store: store.set_inspection(sha256, inspection))
        self._remember(sha256)
        return dataclasses.replace(found, inspection=inspection)

    def _remember(self, sha256: str) -> None:
        if len(self._inspected) >= INSPECTED_MEMORY:
            self._inspected.clear()
        self._inspected.add(sha256)

    async def get(self, sha256: str) -> ArtifactRecord:
        check_sha256(sha256, "name")
        found = await self.core.read(lambda store: store.get_artifact(sha256))
        if found is None:
            raise NotFound(f"artifact 'artifacts/{sha256}' not found")
        return found

    async def download(
        self, sha256: str, offset: int
    ) -> tuple[ArtifactRecord, AsyncIterator[bytes]]:
        record = await self.get(sha256)
        return record, self.core.artifacts.read(sha256, offset)


def inspection_to_dict(inspection: ModelInspection) -> dict[str, Any]:
    """An inspection as stored with the artifact (JSON)."""
    return {
        key: (list(value) if isinstance(value, tuple) else value)
        for key, value in dataclasses.asdict(inspection).items()
    }


def inspection_from_dict(data: dict[str, Any]) -> ModelInspection:
    """The stored inspection of an artifact, as the safe loader's dataclass."""
    fields = {f.name for f in dataclasses.fields(ModelInspection)}
    values = {k: v for k, v in data.items() if k in fields}
    if values.get("feature_names") is not None:
        values["feature_names"] = tuple(values["feature_names"])
    return ModelInspection(**values)
