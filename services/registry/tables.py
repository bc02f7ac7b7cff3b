"""The registry's tables (sqlmodel). Times are integer microseconds since the epoch (UTC),
so they sort and compare the same on SQLite and PostgreSQL. Parts of a resource that
the registry stores but never queries travel as JSON documents (``doc``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

METADATA = SQLModel.metadata


class ModelRow(SQLModel, table=True):
    __tablename__ = "registry_models"

    name: str = Field(primary_key=True, max_length=63)
    task: str
    owner_team: str = Field(default="", index=True)
    state: str = Field(default="ACTIVE")
    latest_version: int = Field(default=0, sa_type=BigInteger)
    revision: int = Field(default=1, sa_type=BigInteger)
    doc: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_by: str = ""
    create_time: int = Field(sa_type=BigInteger)
    update_time: int = Field(sa_type=BigInteger)


class VersionRow(SQLModel, table=True):
    __tablename__ = "registry_versions"
    __table_args__ = (
        UniqueConstraint("model", "version", name="uq_registry_versions_model_version"),
        Index("ix_registry_versions_create_time", "create_time"),
    )

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    version: int = Field(sa_type=BigInteger)
    status: str
    status_message: str = ""
    flavor: str
    artifact_sha256: str = Field(index=True)
    author: str = ""
    code_revision: str = ""
    dataset_sha256: str = ""
    revision: int = Field(default=1, sa_type=BigInteger)
    request_id: str = Field(default="", index=True)
    doc: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    message: bytes = Field(default=b"", sa_type=LargeBinary)
    profile: bytes = Field(default=b"", sa_type=LargeBinary)
    create_time: int = Field(sa_type=BigInteger)
    update_time: int = Field(sa_type=BigInteger)


class VersionMetricRow(SQLModel, table=True):
    """Whole-population metrics by kind (`metrics`, `training_metrics`, `cv_metrics`)."""

    __tablename__ = "registry_version_metrics"
    __table_args__ = (Index("ix_registry_version_metrics_lookup", "kind", "name", "value"),)

    version_id: int = Field(primary_key=True, foreign_key="registry_versions.id")
    kind: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    value: float


class VersionTagRow(SQLModel, table=True):
    __tablename__ = "registry_version_tags"
    __table_args__ = (Index("ix_registry_version_tags_lookup", "key", "value"),)

    version_id: int = Field(primary_key=True, foreign_key="registry_versions.id")
    key: str = Field(primary_key=True)
    value: str


class AliasRow(SQLModel, table=True):
    __tablename__ = "registry_aliases"

    model: str = Field(primary_key=True)
    alias: str = Field(primary_key=True)
    version: int = Field(sa_type=BigInteger)
    previous_version: int = Field(default=0, sa_type=BigInteger)
    updated_by: str = ""
    reason: str = ""
    update_time: int = Field(sa_type=BigInteger)


class AliasMoveRow(SQLModel, table=True):
    __tablename__ = "registry_alias_moves"
    __table_args__ = (Index("ix_registry_alias_moves_lookup", "model", "alias", "move_time"),)

    id: int | None = Field(default=None, primary_key=True)
    model: str
    alias: str
    kind: str
    from_version: int = Field(sa_type=BigInteger)
    to_version: int = Field(sa_type=BigInteger)
    move_time: int = Field(sa_type=BigInteger)
    actor: str = ""
    reason: str = ""
    sequence: int = Field(sa_type=BigInteger)


class ApprovalRow(SQLModel, table=True):
    __tablename__ = "registry_approvals"
    __table_args__ = (Index("ix_registry_approvals_lookup", "model", "version", "alias"),)

    id: int | None = Field(default=None, primary_key=True)
    model: str
    version: int = Field(sa_type=BigInteger)
    alias: str
    decision: str
    comment: str = ""
    approver: str
    create_time: int = Field(sa_type=BigInteger)


class DeploymentRow(SQLModel, table=True):
    __tablename__ = "registry_deployments"

    name: str = Field(primary_key=True, max_length=63)
    model: str = Field(index=True)
    revision: int = Field(sa_type=BigInteger)
    doc: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    updated_by: str = ""
    create_time: int = Field(sa_type=BigInteger)
    update_time: int = Field(sa_type=BigInteger)


class DeploymentRevisionRow(SQLModel, table=True):
    __tablename__ = "registry_deployment_revisions"

    name: str = Field(primary_key=True)
    revision: int = Field(primary_key=True, sa_type=BigInteger)
    model: str
    doc: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    updated_by: str = ""
    update_time: int = Field(sa_type=BigInteger)


class ArtifactRow(SQLModel, table=True):
    __tablename__ = "registry_artifacts"

    sha256: str = Field(primary_key=True, max_length=64)
    size_bytes: int = Field(sa_type=BigInteger)
    format: str
    inspection: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    create_time: int = Field(sa_type=BigInteger)


class ChangeRow(SQLModel, table=True):
    """One change: the event streamed by WatchEvents and the audit entry, in one row."""

    __tablename__ = "registry_changes"
    __table_args__ = (Index("ix_registry_changes_model", "model", "sequence"),)

    sequence: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    type: str
    resource: str
    model: str = ""
    time: int = Field(sa_type=BigInteger)
    actor: str = ""
    reason: str = ""
    trace_id: str = ""
    payload: bytes = Field(sa_type=LargeBinary)
    before: bytes | None = Field(default=None, sa_type=LargeBinary)
    changed_fields: str = ""


class CounterRow(SQLModel, table=True):
    """Gapless counters; the `changes` row is locked by every writing transaction."""

    __tablename__ = "registry_counters"

    name: str = Field(primary_key=True)
    value: int = Field(default=0, sa_type=BigInteger)
