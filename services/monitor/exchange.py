"""Aggregates exchanged between monitors that do not share a store: ``ExportAggregates``
streams this monitor's own base buckets, ``MergeAggregates`` keeps one contribution per
(source, key), the newest revision, so merging an export twice changes nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, insert, select, update

from keel.monitor.v1 import aggregates_pb2 as ag
from keel.monitor.v1 import monitor_pb2 as pb
from services.common.db import Database
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.monitor.aggregates import FORMAT, State, StateFormatError
from services.monitor.references import References
from services.monitor.scope import bucket_end, end_seconds
from services.monitor.tables import BUCKETS, MERGED

PAGE = 1000
_LIMIT_S = 2**62  # seconds: beyond any bucket, within int64 after rounding


@dataclass(frozen=True)
class _Incoming:
    bucket: ag.AggregateBucket
    model: str
    start_s: int
    width_s: int


class Exchange:
    def __init__(self, db: Database, references: References, source_id: str, base_s: int) -> None:
        self._db = db
        self._references = references
        self.source_id = source_id
        self._base_s = base_s

    async def export(
        self, request: pb.ExportAggregatesRequest
    ) -> AsyncIterator[list[ag.AggregateBucket]]:
        model = request.model.removeprefix("models/")
        if not request.model.startswith("models/") or not model:
            raise InvalidArgument(f"model: expected 'models/{{model}}', got '{request.model}'")
        if not await self._references.known_model(model):
            raise NotFound(f"model '{request.model}' has no aggregates in this monitor")
        start = (
            request.start_time.seconds // self._base_s * self._base_s
            if request.HasField("start_time")
            else 0
        )
        end = (
            bucket_end(end_seconds(request.end_time.seconds, request.end_time.nanos), self._base_s)
            if request.HasField("end_time")
            else int(time.time()) + self._base_s
        )
        # Rounded to buckets, int64 seconds may leave int64, which SQLite's parameters are.
        start, end = max(start, -_LIMIT_S), min(end, _LIMIT_S)
        rows = await self._db.read(
            lambda c: _local(c, model, request.version, start, end, self._base_s)
        )
        digests = {}
        for version in {r.version for r in rows}:
            digests[version] = (await self._references.get(model, version)).digest
        page: list[ag.AggregateBucket] = []
        for row in rows:
            page.append(self._bucket(row, digests[row.version]))
            if len(page) == PAGE:
                yield page
                page = []
        if request.include_merged:
            merged = await self._db.read(lambda c: _merged(c, model, request.version, start, end))
            for row, source, digest in merged:
                page.append(self._bucket(row, digest, source))
                if len(page) == PAGE:
                    yield page
                    page = []
        if page:
            yield page

    def _bucket(self, row: Row[Any], digest: str, source: str | None = None) -> ag.AggregateBucket:
        bucket = ag.AggregateBucket(
            source_id=source or self.source_id,
            source_revision=row.revision,
            reference_digest=digest,
            row_count=row.row_count,
            labeled_count=row.labeled_count,
            state_format=FORMAT,
            state=bytes(row.state),
        )
        key = bucket.key
        key.model, key.version = f"models/{row.model}", row.version
        key.deployment = f"deployments/{row.deployment}" if row.deployment else ""
        key.variant = row.variant
        key.start_time.FromSeconds(row.start_s)
        key.width.FromSeconds(row.width_s)
        return bucket

    async def merge(self, request: pb.MergeAggregatesRequest) -> pb.MergeAggregatesResponse:
        if len(request.buckets) > PAGE:
            raise InvalidArgument(f"buckets: at most {PAGE} per call, got {len(request.buckets)}")
        incoming = []
        for i, bucket in enumerate(request.buckets):
            field = f"buckets[{i}]"
            if bucket.state_format != FORMAT:
                raise InvalidArgument(
                    f"{field}.state_format: expected '{FORMAT}', got '{bucket.state_format}'"
                )
            if not bucket.source_id or bucket.source_id == self.source_id:
                raise InvalidArgument(
                    f"{field}.source_id: expected another monitor's id, got '{bucket.source_id}'"
                )
            model = bucket.key.model.removeprefix("models/")
            reference = await self._references.get(model, bucket.key.version)
            if bucket.reference_digest != reference.digest:
                raise FailedPrecondition(
                    f"{field}.reference_digest: differs from this monitor's reference of "
                    f"{model}/{bucket.key.version}"
                )
            if (
                bucket.key.width.seconds != self._base_s
                or bucket.key.start_time.seconds % self._base_s
            ):
                raise InvalidArgument(f"{field}.key: expected a base bucket of {self._base_s} s")
            try:
                State.from_bytes(bucket.state, reference.layout)
            except StateFormatError as error:
                raise InvalidArgument(f"{field}.state: {error}") from None
            incoming.append(
                _Incoming(bucket, model, bucket.key.start_time.seconds, bucket.key.width.seconds)
            )
        counts = await self._db.write(lambda c: _merge(c, incoming))
        return pb.MergeAggregatesResponse(
            merged_count=counts[0], replaced_count=counts[1], ignored_count=counts[2]
        )


def _local(
    connection: Connection, model: str, version: int, start: int, end: int, base: int
) -> Sequence[Row[Any]]:
    query = select(BUCKETS).where(
        BUCKETS.c.model == model,
        BUCKETS.c.width_s == base,
        BUCKETS.c.start_s >= start,
        BUCKETS.c.start_s < end,
    )
    if version:
        query = query.where(BUCKETS.c.version == version)
    order = (
        BUCKETS.c.model,
        BUCKETS.c.version,
        BUCKETS.c.deployment,
        BUCKETS.c.variant,
        BUCKETS.c.start_s,
    )
    return connection.execute(query.order_by(*order)).all()


def _merged(
    connection: Connection, model: str, version: int, start: int, end: int
) -> list[tuple[Row[Any], str, str]]:
    query = select(MERGED).where(
        MERGED.c.model == model, MERGED.c.start_s >= start, MERGED.c.start_s < end
    )
    if version:
        query = query.where(MERGED.c.version == version)
    return [(row, row.source_id, row.reference_digest) for row in connection.execute(query)]


def _merge(connection: Connection, incoming: list[_Incoming]) -> tuple[int, int, int]:
    merged = replaced = ignored = 0
    for item in incoming:
        b = item.bucket
        key = and_(
            MERGED.c.source_id == b.source_id,
            MERGED.c.model == item.model,
            MERGED.c.version == b.key.version,
            MERGED.c.deployment == b.key.deployment.removeprefix("deployments/"),
            MERGED.c.variant == b.key.variant,
            MERGED.c.width_s == item.width_s,
            MERGED.c.start_s == item.start_s,
        )
        held = connection.execute(select(MERGED.c.revision).where(key)).first()
        values = {
            "revision": b.source_revision,
            "reference_digest": b.reference_digest,
            "row_count": b.row_count,
            "labeled_count": b.labeled_count,
            "state": b.state,
        }
        if held is None:
            connection.execute(
                insert(MERGED).values(
                    source_id=b.source_id,
                    model=item.model,
                    version=b.key.version,
                    deployment=b.key.deployment.removeprefix("deployments/"),
                    variant=b.key.variant,
                    width_s=item.width_s,
                    start_s=item.start_s,
                    **values,
                )
            )
            merged += 1
        elif held[0] < b.source_revision:
            connection.execute(update(MERGED).where(key).values(**values))
            replaced += 1
        else:
            ignored += 1
    return merged, replaced, ignored
