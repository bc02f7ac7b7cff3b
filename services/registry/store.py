"""Persistence of the registry behind one small repository class over a connection.

One ``Store`` lives for one unit of work (one transaction). Rows that serialise writers
are locked with ``FOR UPDATE`` (a no-op on SQLite, whose writers hold the database lock
from ``BEGIN IMMEDIATE``). The change sequence comes from a counter row bumped inside the
writing transaction, so sequences commit in order and never leave a gap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Row

from services.registry import tables as t
from services.registry.records import (
    AliasMove,
    AliasRecord,
    ApprovalRecord,
    ArtifactRecord,
    Caller,
    Change,
    DeploymentRecord,
    FeatureSpec,
    ModelRecord,
    Objective,
    Policy,
    Route,
    Shadow,
    VersionRecord,
    now_us,
)

ChangeEncoder = Callable[[Change], tuple[bytes, bytes | None]]

MODELS = t.ModelRow.__table__  # type: ignore[attr-defined]
VERSIONS = t.VersionRow.__table__  # type: ignore[attr-defined]
METRICS = t.VersionMetricRow.__table__  # type: ignore[attr-defined]
TAGS = t.VersionTagRow.__table__  # type: ignore[attr-defined]
ALIASES = t.AliasRow.__table__  # type: ignore[attr-defined]
MOVES = t.AliasMoveRow.__table__  # type: ignore[attr-defined]
APPROVALS = t.ApprovalRow.__table__  # type: ignore[attr-defined]
DEPLOYMENTS = t.DeploymentRow.__table__  # type: ignore[attr-defined]
REVISIONS = t.DeploymentRevisionRow.__table__  # type: ignore[attr-defined]
ARTIFACTS = t.ArtifactRow.__table__  # type: ignore[attr-defined]
CHANGES = t.ChangeRow.__table__  # type: ignore[attr-defined]
COUNTERS = t.CounterRow.__table__  # type: ignore[attr-defined]
METRIC_KINDS = ("metrics", "training_metrics", "cv_metrics")
# Statements built once: building them per call is a large share of a write's CPU.
_BUMP = (
    update(COUNTERS)
    .where(COUNTERS.c.name == "changes")
    .values(value=COUNTERS.c.value + bindparam("step"))
    .returning(COUNTERS.c.value)
)
_INSERT_CHANGE = insert(CHANGES)
_SELECT_MODEL = select(MODELS).where(MODELS.c.name == bindparam("model_name"))
_LOCK_MODEL = _SELECT_MODEL.with_for_update()
_INSERT_VERSION = insert(VERSIONS).returning(VERSIONS.c.id)
_TAKE_NUMBER = (
    update(MODELS)
    .where(MODELS.c.name == bindparam("model_name"))
    .values(latest_version=MODELS.c.latest_version + 1)
    .returning(*MODELS.c)
)
_SELECT_ARTIFACT = select(ARTIFACTS).where(ARTIFACTS.c.sha256 == bindparam("sha"))
_SELECT_VERSION = select(VERSIONS).where(
    VERSIONS.c.model == bindparam("model_name"), VERSIONS.c.version == bindparam("number")
)
_LOCK_VERSION = _SELECT_VERSION.with_for_update()
_SELECT_ALIAS = select(ALIASES).where(
    ALIASES.c.model == bindparam("model_name"), ALIASES.c.alias == bindparam("alias_name")
)
_ALIASES_OF_VERSION = (
    select(ALIASES.c.alias)
    .where(ALIASES.c.model == bindparam("model_name"), ALIASES.c.version == bindparam("number"))
    .order_by(ALIASES.c.alias)
)
_INSERT_METRIC = insert(METRICS)
_INSERT_TAG = insert(TAGS)


def _model(row: Row[Any]) -> ModelRecord:
    doc = row.doc or {}
    return ModelRecord(
        name=row.name,
        task=row.task,
        owner_team=row.owner_team,
        description=doc.get("description", ""),
        objectives=tuple(Objective(**o) for o in doc.get("objectives", [])),
        tags=dict(doc.get("tags", {})),
        policy=Policy(
            **{
                **doc.get("policy", {}),
                "protected_aliases": tuple(
                    doc.get("policy", {}).get("protected_aliases", ("production",))
                ),
            }
        ),
        state=row.state,
        latest_version=row.latest_version,
        revision=row.revision,
        created_by=row.created_by,
        create_time=row.create_time,
        update_time=row.update_time,
    )


def _model_doc(model: ModelRecord) -> dict[str, Any]:
    return {
        "description": model.description,
        "objectives": [dataclasses.asdict(o) for o in model.objectives],
        "tags": model.tags,
        "policy": {
            **dataclasses.asdict(model.policy),
            "protected_aliases": list(model.policy.protected_aliases),
        },
    }


def _version(row: Row[Any], profile: bool) -> VersionRecord:
    doc = row.doc or {}
    return VersionRecord(
        id=row.id,
        model=row.model,
        version=row.version,
        flavor=row.flavor,
        sha256=row.artifact_sha256,
        status=row.status,
        status_message=row.status_message,
        author=row.author,
        description=doc.get("keel", {}).get("description", ""),
        tags=dict(doc.get("keel", {}).get("tags", {})),
        metrics=dict(doc.get("keel", {}).get("metrics", {})),
        training_metrics=dict(doc.get("keel", {}).get("training_metrics", {})),
        cv_metrics=dict(doc.get("keel", {}).get("cv_metrics", {})),
        inputs=tuple(FeatureSpec(**f) for f in doc.get("keel", {}).get("inputs", [])),
        class_labels=tuple(doc.get("keel", {}).get("class_labels", [])),
        artifact_size=doc.get("keel", {}).get("artifact_size", 0),
        artifact_format=doc.get("keel", {}).get("artifact_format", ""),
        artifact_time=doc.get("keel", {}).get("artifact_time", 0),
        code_revision=row.code_revision,
        dataset_sha256=row.dataset_sha256,
        model_card=doc.get("keel", {}).get("model_card", ""),
        message=bytes(row.message or b""),
        profile=bytes(row.profile or b"") if profile else b"",
        revision=row.revision,
        request_id=row.request_id,
        create_time=row.create_time,
        update_time=row.update_time,
    )


def _version_doc(v: VersionRecord) -> dict[str, Any]:
    keel = {
        "description": v.description,
        "tags": v.tags,
        "metrics": v.metrics,
        "training_metrics": v.training_metrics,
        "cv_metrics": v.cv_metrics,
        "inputs": [dataclasses.asdict(f) for f in v.inputs],
        "class_labels": list(v.class_labels),
        "artifact_size": v.artifact_size,
        "artifact_format": v.artifact_format,
        "artifact_time": v.artifact_time,
    }
    return {"keel": {**keel, "model_card": v.model_card}}


def _deployment(row: Row[Any]) -> DeploymentRecord:
    doc = row.doc or {}
    return DeploymentRecord(
        name=row.name,
        model=row.model,
        description=doc.get("description", ""),
        routes=tuple(Route(**r) for r in doc.get("routes", [])),
        shadows=tuple(Shadow(**s) for s in doc.get("shadows", [])),
        sticky_key_parameter=doc.get("sticky_key_parameter", ""),
        guard_alert_rules=tuple(doc.get("guard_alert_rules", [])),
        revision=row.revision,
        updated_by=row.updated_by,
        create_time=row._mapping.get("create_time", 0),  # revisions keep only update_time
        update_time=row.update_time,
    )


def _deployment_doc(d: DeploymentRecord) -> dict[str, Any]:
    return {
        "description": d.description,
        "routes": [dataclasses.asdict(r) for r in d.routes],
        "shadows": [dataclasses.asdict(s) for s in d.shadows],
        "sticky_key_parameter": d.sticky_key_parameter,
        "guard_alert_rules": list(d.guard_alert_rules),
    }


class Store:
    """The registry's rows, for one transaction on ``connection``."""

    def __init__(self, connection: Connection, encode: ChangeEncoder | None = None) -> None:
        self.c = connection
        self._encode = encode
        self.last_sequence = 0  # the highest sequence this unit of work recorded

    # models -------------------------------------------------------------------------
    def get_model(self, name: str, *, lock: bool = False) -> ModelRecord | None:
        row = self.c.execute(_LOCK_MODEL if lock else _SELECT_MODEL, {"model_name": name}).first()
        return _model(row) if row else None

    def insert_model(self, model: ModelRecord) -> None:
        self.c.execute(
            insert(MODELS).values(
                name=model.name,
                task=model.task,
                owner_team=model.owner_team,
                state=model.state,
                latest_version=model.latest_version,
                revision=model.revision,
                doc=_model_doc(model),
                created_by=model.created_by,
                create_time=model.create_time,
                update_time=model.update_time,
            )
        )

    def save_model(self, model: ModelRecord) -> None:
        self.c.execute(
            update(MODELS)
            .where(MODELS.c.name == model.name)
            .values(
                owner_team=model.owner_team,
                state=model.state,
                revision=model.revision,
                doc=_model_doc(model),
                update_time=model.update_time,
            )
        )

    def take_version_number(self, model: str) -> tuple[ModelRecord, int] | None:
        """Lock ``model``'s row and take its next version number, in one statement;
        None when the model does not exist."""
        row = self.c.execute(_TAKE_NUMBER, {"model_name": model}).first()
        return (_model(row), int(row.latest_version)) if row else None

    def list_models(
        self, where: ColumnElement[bool] | None, after: str, limit: int
    ) -> list[ModelRecord]:
        query = select(MODELS).where(MODELS.c.name > after).order_by(MODELS.c.name).limit(limit)
        if where is not None:
            query = query.where(where)
        return [_model(row) for row in self.c.execute(query)]

    def delete_model(self, name: str) -> int:
        ids = select(VERSIONS.c.id).where(VERSIONS.c.model == name)
        self.c.execute(delete(METRICS).where(METRICS.c.version_id.in_(ids)))
        self.c.execute(delete(TAGS).where(TAGS.c.version_id.in_(ids)))
        self.c.execute(delete(APPROVALS).where(APPROVALS.c.model == name))
        deleted = self.c.execute(delete(VERSIONS).where(VERSIONS.c.model == name)).rowcount
        self.c.execute(delete(MODELS).where(MODELS.c.name == name))
        return int(deleted)

    # versions -----------------------------------------------------------------------
    def insert_version(self, v: VersionRecord) -> int:
        values = {
            "model": v.model,
            "version": v.version,
            "status": v.status,
            "status_message": v.status_message,
            "flavor": v.flavor,
            "artifact_sha256": v.sha256,
            "author": v.author,
            "code_revision": v.code_revision,
            "dataset_sha256": v.dataset_sha256,
            "revision": v.revision,
            "request_id": v.request_id,
            "doc": _version_doc(v),
            "message": v.message,
            "profile": v.profile,
            "create_time": v.create_time,
            "update_time": v.update_time,
        }
        row = self.c.execute(_INSERT_VERSION, values).one()
        version_id = int(row[0])
        self._index_version(version_id, v, fresh=True)
        return version_id

    def _index_version(self, version_id: int, v: VersionRecord, *, fresh: bool = False) -> None:
        if not fresh:
            self.c.execute(delete(METRICS).where(METRICS.c.version_id == version_id))
            self.c.execute(delete(TAGS).where(TAGS.c.version_id == version_id))
        metric_rows = [
            {"version_id": version_id, "kind": kind, "name": name, "value": value}
            for kind, values in zip(
                METRIC_KINDS, (v.metrics, v.training_metrics, v.cv_metrics), strict=True
            )
            for name, value in values.items()
        ]
        if metric_rows:
            self.c.execute(_INSERT_METRIC, metric_rows)
        tag_rows = [{"version_id": version_id, "key": k, "value": val} for k, val in v.tags.items()]
        if tag_rows:
            self.c.execute(_INSERT_TAG, tag_rows)

    def save_version(self, v: VersionRecord) -> None:
        assert v.id is not None
        self.c.execute(
            update(VERSIONS)
            .where(VERSIONS.c.id == v.id)
            .values(
                status=v.status,
                status_message=v.status_message,
                revision=v.revision,
                doc=_version_doc(v),
                update_time=v.update_time,
            )
        )
        self._index_version(v.id, v)

    def get_version(
        self, model: str, version: int, *, profile: bool = True, lock: bool = False
    ) -> VersionRecord | None:
        statement = _LOCK_VERSION if lock else _SELECT_VERSION
        row = self.c.execute(statement, {"model_name": model, "number": version}).first()
        if row is None:
            return None
        record = _version(row, profile)
        record.aliases = tuple(self.aliases_of(model, version))
        return record

    def version_by_request(self, model: str, request_id: str) -> VersionRecord | None:
        row = self.c.execute(
            select(VERSIONS.c.version).where(
                VERSIONS.c.model == model, VERSIONS.c.request_id == request_id
            )
        ).first()
        return self.get_version(model, int(row[0])) if row else None

    def latest_ready(self, model: str) -> int | None:
        row = self.c.execute(
            select(func.max(VERSIONS.c.version)).where(
                VERSIONS.c.model == model, VERSIONS.c.status == "READY"
            )
        ).one()
        return int(row[0]) if row[0] is not None else None

    def select_versions(
        self,
        where: Sequence[ColumnElement[bool]],
        order: Sequence[Any],
        limit: int,
        offset: int,
        *,
        profile: bool,
    ) -> list[VersionRecord]:
        query = select(VERSIONS).where(*where).order_by(*order).limit(limit).offset(offset)
        records = [_version(row, profile) for row in self.c.execute(query)]
        self._attach_aliases(records)
        return records

    def _attach_aliases(self, records: Iterable[VersionRecord]) -> None:
        records = list(records)
        if not records:
            return
        models = {r.model for r in records}
        found: dict[tuple[str, int], list[str]] = {}
        for row in self.c.execute(
            select(ALIASES.c.model, ALIASES.c.version, ALIASES.c.alias)
            .where(ALIASES.c.model.in_(models))
            .order_by(ALIASES.c.alias)
        ):
            found.setdefault((row.model, row.version), []).append(row.alias)
        for record in records:
            record.aliases = tuple(found.get((record.model, record.version), ()))

    # artifacts ----------------------------------------------------------------------
    def get_artifact(self, sha256: str) -> ArtifactRecord | None:
        row = self.c.execute(_SELECT_ARTIFACT, {"sha": sha256}).first()
        if row is None:
            return None
        return ArtifactRecord(
            row.sha256, row.size_bytes, row.format, row.inspection or {}, row.create_time
        )

    def insert_artifact(self, artifact: ArtifactRecord) -> ArtifactRecord | None:
        """Insert ``artifact``, or answer the row already there (the same bytes uploaded
        by another caller, committed since this transaction last looked)."""
        existing = self.get_artifact(artifact.sha256)
        if existing is None:
            self.c.execute(insert(ARTIFACTS).values(**dataclasses.asdict(artifact)))
        return existing

    def set_inspection(self, sha256: str, inspection: dict[str, Any]) -> None:
        self.c.execute(
            update(ARTIFACTS).where(ARTIFACTS.c.sha256 == sha256).values(inspection=inspection)
        )

    def unreferenced_artifacts(self) -> list[str]:
        used = select(VERSIONS.c.artifact_sha256)
        rows = self.c.execute(select(ARTIFACTS.c.sha256).where(ARTIFACTS.c.sha256.not_in(used)))
        return [row[0] for row in rows]

    def delete_artifact(self, sha256: str) -> None:
        self.c.execute(delete(ARTIFACTS).where(ARTIFACTS.c.sha256 == sha256))

    # aliases ------------------------------------------------------------------------
    def get_alias(self, model: str, alias: str) -> AliasRecord | None:
        row = self.c.execute(_SELECT_ALIAS, {"model_name": model, "alias_name": alias}).first()
        if row is None:
            return None
        return AliasRecord(
            row.model,
            row.alias,
            row.version,
            row.previous_version,
            False,
            row.updated_by,
            row.reason,
            row.update_time,
        )

    def aliases_of(self, model: str, version: int | None = None) -> list[str]:
        if version is not None:
            rows = self.c.execute(_ALIASES_OF_VERSION, {"model_name": model, "number": version})
        else:
            query = select(ALIASES.c.alias).where(ALIASES.c.model == model)
            rows = self.c.execute(query.order_by(ALIASES.c.alias))
        return [row[0] for row in rows]

    def list_aliases(self, model: str, after: str, limit: int) -> list[AliasRecord]:
        rows = self.c.execute(
            select(ALIASES.c.alias)
            .where(ALIASES.c.model == model, ALIASES.c.alias > after)
            .order_by(ALIASES.c.alias)
            .limit(limit)
        )
        return [a for row in rows if (a := self.get_alias(model, row[0])) is not None]

    def put_alias(self, alias: AliasRecord, *, exists: bool) -> None:
        values = {
            "version": alias.version,
            "previous_version": alias.previous_version,
            "updated_by": alias.updated_by,
            "reason": alias.reason,
            "update_time": alias.update_time,
        }
        if exists:
            self.c.execute(
                update(ALIASES)
                .where(ALIASES.c.model == alias.model, ALIASES.c.alias == alias.alias)
                .values(**values)
            )
        else:
            self.c.execute(insert(ALIASES).values(model=alias.model, alias=alias.alias, **values))

    def delete_alias(self, model: str, alias: str) -> None:
        self.c.execute(delete(ALIASES).where(ALIASES.c.model == model, ALIASES.c.alias == alias))

    def add_move(self, move: AliasMove) -> None:
        self.c.execute(insert(MOVES).values(**dataclasses.asdict(move)))

    def moves(
        self,
        model: str,
        alias: str = "",
        *,
        start: int | None = None,
        end: int | None = None,
        before_id: int | None = None,
        limit: int = 1000,
    ) -> list[tuple[int, AliasMove]]:
        query = select(MOVES).where(MOVES.c.model == model)
        if alias:
            query = query.where(MOVES.c.alias == alias)
        if start is not None:
            query = query.where(MOVES.c.move_time >= start)
        if end is not None:
            query = query.where(MOVES.c.move_time < end)
        if before_id is not None:
            query = query.where(MOVES.c.id < before_id)
        query = query.order_by(MOVES.c.id.desc()).limit(limit)
        return [
            (
                row.id,
                AliasMove(
                    row.model,
                    row.alias,
                    row.kind,
                    row.from_version,
                    row.to_version,
                    row.move_time,
                    row.actor,
                    row.reason,
                    row.sequence,
                ),
            )
            for row in self.c.execute(query)
        ]

    def models_referenced(self, model: str) -> tuple[list[str], list[str]]:
        """Aliases of ``model`` and deployments serving it."""
        deployments = [
            row[0]
            for row in self.c.execute(
                select(DEPLOYMENTS.c.name).where(DEPLOYMENTS.c.model == model)
            )
        ]
        return self.aliases_of(model), deployments

    # approvals ----------------------------------------------------------------------
    def add_approval(self, approval: ApprovalRecord) -> ApprovalRecord:
        values = dataclasses.asdict(approval)
        values.pop("id")
        row = self.c.execute(insert(APPROVALS).values(**values).returning(APPROVALS.c.id)).one()
        return dataclasses.replace(approval, id=int(row[0]))

    def approvals(self, model: str, version: int, alias: str = "") -> list[ApprovalRecord]:
        query = select(APPROVALS).where(APPROVALS.c.model == model, APPROVALS.c.version == version)
        if alias:
            query = query.where(APPROVALS.c.alias == alias)
        rows = self.c.execute(query.order_by(APPROVALS.c.id.desc()))
        return [
            ApprovalRecord(
                row.id,
                row.model,
                row.version,
                row.alias,
                row.decision,
                row.comment,
                row.approver,
                row.create_time,
            )
            for row in rows
        ]

    # deployments --------------------------------------------------------------------
    def get_deployment(self, name: str, *, lock: bool = False) -> DeploymentRecord | None:
        query = select(DEPLOYMENTS).where(DEPLOYMENTS.c.name == name)
        if lock:
            query = query.with_for_update()
        row = self.c.execute(query).first()
        return _deployment(row) if row else None

    def put_deployment(self, d: DeploymentRecord, *, exists: bool) -> None:
        values = {
            "model": d.model,
            "revision": d.revision,
            "doc": _deployment_doc(d),
            "updated_by": d.updated_by,
            "update_time": d.update_time,
        }
        if exists:
            self.c.execute(update(DEPLOYMENTS).where(DEPLOYMENTS.c.name == d.name).values(**values))
        else:
            self.c.execute(
                insert(DEPLOYMENTS).values(name=d.name, create_time=d.create_time, **values)
            )
        self.c.execute(
            insert(REVISIONS).values(
                name=d.name,
                revision=d.revision,
                model=d.model,
                doc=_deployment_doc(d),
                updated_by=d.updated_by,
                update_time=d.update_time,
            )
        )

    def delete_deployment(self, name: str) -> None:
        self.c.execute(delete(DEPLOYMENTS).where(DEPLOYMENTS.c.name == name))

    def list_deployments(self, model: str, after: str, limit: int) -> list[DeploymentRecord]:
        query = select(DEPLOYMENTS).where(DEPLOYMENTS.c.name > after)
        if model:
            query = query.where(DEPLOYMENTS.c.model == model)
        rows = self.c.execute(query.order_by(DEPLOYMENTS.c.name).limit(limit))
        return [_deployment(row) for row in rows]

    def deployment_revisions(
        self, name: str, below: int, limit: int, create_time: int
    ) -> list[DeploymentRecord]:
        rows = self.c.execute(
            select(REVISIONS)
            .where(REVISIONS.c.name == name, REVISIONS.c.revision < below)
            .order_by(REVISIONS.c.revision.desc())
            .limit(limit)
        )
        return [dataclasses.replace(_deployment(row), create_time=create_time) for row in rows]

    # changes ------------------------------------------------------------------------
    def record(self, change: Change, caller: Caller) -> int:
        """Append ``change`` with the next sequence number; returns the sequence."""
        return self.record_all([change], caller)[-1]

    def record_all(self, changes: Sequence[Change], caller: Caller) -> list[int]:
        """Append ``changes`` with consecutive sequence numbers (one counter update)."""
        assert self._encode is not None, "a writing Store needs a change encoder"
        last = int(self.c.execute(_BUMP, {"step": len(changes)}).one()[0])
        first = last - len(changes) + 1
        now = now_us()
        rows = []
        for sequence, change in enumerate(changes, start=first):
            payload, before = self._encode(change)
            rows.append(
                {
                    "sequence": sequence,
                    "type": change.type,
                    "resource": change.resource,
                    "model": change.model,
                    "time": now,
                    "actor": caller.identity,
                    "reason": change.reason,
                    "trace_id": caller.trace_id,
                    "payload": payload,
                    "before": before,
                    "changed_fields": ",".join(change.changed_fields),
                }
            )
        self.c.execute(_INSERT_CHANGE, rows)
        self.last_sequence = last
        return list(range(first, last + 1))

    def latest_sequence(self) -> int:
        row = self.c.execute(select(func.max(CHANGES.c.sequence))).one()
        return int(row[0] or 0)

    def changes_after(
        self, after: int, limit: int, where: Sequence[ColumnElement[bool]] = ()
    ) -> list[Row[Any]]:
        query = (
            select(CHANGES)
            .where(and_(CHANGES.c.sequence > after, *where))
            .order_by(CHANGES.c.sequence)
            .limit(limit)
        )
        return list(self.c.execute(query))

    def changes_page(
        self, where: ColumnElement[bool] | None, descending: bool, cursor: int | None, limit: int
    ) -> list[Row[Any]]:
        query = select(CHANGES)
        if where is not None:
            query = query.where(where)
        if cursor is not None:
            query = query.where(
                CHANGES.c.sequence < cursor if descending else CHANGES.c.sequence > cursor
            )
        order = CHANGES.c.sequence.desc() if descending else CHANGES.c.sequence
        return list(self.c.execute(query.order_by(order).limit(limit)))
