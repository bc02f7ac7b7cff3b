"""The monitor's tables (sqlmodel, on a metadata of their own so the registry and the
monitor can share one database without seeing each other's schema). Times are integer
nanoseconds since the epoch (UTC) unless a name says otherwise."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, Table
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

# A 64-bit id that SQLite still auto-increments (its rowid alias must be INTEGER).
AUTO_ID = BigInteger().with_variant(Integer(), "sqlite")


class MonitorTable(SQLModel, registry=registry()):
    """Base of every monitor table."""


METADATA = MonitorTable.metadata


class ProducerRow(MonitorTable, table=True):
    """The highest applied batch sequence of each prediction-log producer."""

    __tablename__ = "monitor_producers"

    producer_id: str = Field(primary_key=True, max_length=128)
    applied_through: int = Field(default=0, sa_type=BigInteger)
    update_time: int = Field(default=0, sa_type=BigInteger)


class ReferenceRow(MonitorTable, table=True):
    """A model version as fetched once from the registry (serialised messages)."""

    __tablename__ = "monitor_references"

    model: str = Field(primary_key=True, max_length=63)
    version: int = Field(primary_key=True, sa_type=BigInteger)
    digest: str
    model_doc: bytes = Field(sa_type=LargeBinary)
    version_doc: bytes = Field(sa_type=LargeBinary)
    fetch_time: int = Field(sa_type=BigInteger)


class BucketRow(MonitorTable, table=True):
    """Aggregates this monitor counted, per key and bucket (base width and roll-ups)."""

    __tablename__ = "monitor_buckets"

    model: str = Field(primary_key=True, max_length=63)
    version: int = Field(primary_key=True, sa_type=BigInteger)
    deployment: str = Field(primary_key=True, max_length=63)
    variant: str = Field(primary_key=True, max_length=63)
    width_s: int = Field(primary_key=True, sa_type=BigInteger)
    start_s: int = Field(primary_key=True, sa_type=BigInteger)
    revision: int = Field(default=1, sa_type=BigInteger)
    row_count: int = Field(default=0, sa_type=BigInteger)
    labeled_count: int = Field(default=0, sa_type=BigInteger)
    state: bytes = Field(sa_type=LargeBinary)


class MergedBucketRow(MonitorTable, table=True):
    """Base buckets merged from other monitors: one contribution per source and key."""

    __tablename__ = "monitor_merged_buckets"

    source_id: str = Field(primary_key=True, max_length=200)
    model: str = Field(primary_key=True, max_length=63)
    version: int = Field(primary_key=True, sa_type=BigInteger)
    deployment: str = Field(primary_key=True, max_length=63)
    variant: str = Field(primary_key=True, max_length=63)
    width_s: int = Field(primary_key=True, sa_type=BigInteger)
    start_s: int = Field(primary_key=True, sa_type=BigInteger)
    revision: int = Field(sa_type=BigInteger)
    reference_digest: str
    row_count: int = Field(default=0, sa_type=BigInteger)
    labeled_count: int = Field(default=0, sa_type=BigInteger)
    state: bytes = Field(sa_type=LargeBinary)


class SegmentRow(MonitorTable, table=True):
    """A logged batch kept for the join window: feedback and GetPrediction read it."""

    __tablename__ = "monitor_segments"
    __table_args__ = (Index("ix_monitor_segments_expire", "expire_time"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=AUTO_ID)
    model: str = Field(max_length=63)
    version: int = Field(sa_type=BigInteger)
    deployment: str = ""
    variant: str = ""
    expire_time: int = Field(sa_type=BigInteger)
    payload: bytes = Field(sa_type=LargeBinary)


class PredictionIdRow(MonitorTable, table=True):
    """Where each prediction id of the join window was logged, and whether it has a label."""

    __tablename__ = "monitor_prediction_ids"
    # Clustered on the key: one b-tree insert per id, and no other index (expiry finds a
    # segment's ids in the segment's payload; an index on segment cost a third of the insert).
    __table_args__ = ({"sqlite_with_rowid": False},)

    model: str = Field(primary_key=True, max_length=63)
    prediction_id: str = Field(primary_key=True, max_length=128)
    segment: int = Field(sa_type=BigInteger)
    row: int
    labeled: bool = False
    label: str | None = None  # the joined label (class label, or a regressor's value)
    label_time: int | None = Field(default=None, sa_type=BigInteger)


class PendingLabelRow(MonitorTable, table=True):
    """A label whose prediction is not known yet, held for the join window."""

    __tablename__ = "monitor_pending_labels"
    __table_args__ = (Index("ix_monitor_pending_labels_expire", "expire_time"),)

    model: str = Field(primary_key=True, max_length=63)
    prediction_id: str = Field(primary_key=True, max_length=128)
    label: str
    label_time: int = Field(sa_type=BigInteger)
    expire_time: int = Field(sa_type=BigInteger)


# The tables as SQLAlchemy Core sees them, for the statements of the store modules.
PRODUCERS: Table = ProducerRow.__table__  # type: ignore[attr-defined]
REFERENCES: Table = ReferenceRow.__table__  # type: ignore[attr-defined]
BUCKETS: Table = BucketRow.__table__  # type: ignore[attr-defined]
MERGED: Table = MergedBucketRow.__table__  # type: ignore[attr-defined]
SEGMENTS: Table = SegmentRow.__table__  # type: ignore[attr-defined]
IDS: Table = PredictionIdRow.__table__  # type: ignore[attr-defined]
PENDING: Table = PendingLabelRow.__table__  # type: ignore[attr-defined]
