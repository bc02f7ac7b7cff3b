"""Compile filter ASTs (``filters``) to SQLAlchemy Core, driven by one field table per resource.

Semantics shared by every resource:

* A field in a child table (version tags, metrics, aliases) is compared inside
  ``EXISTS (SELECT … WHERE <belongs to the row> AND <comparison>)``, so a comparison on a
  missing tag or metric is false and ``NOT tags.team = "risk"`` matches versions without
  the tag. ``tags.team != "risk"`` and ``tags.team NOT IN (…)`` need the tag to exist.
* Model tags live in ``registry_models.doc`` (``{"tags": {key: value}}``) and are read
  with SQLAlchemy's JSON path (``json_extract`` on SQLite, ``#>>`` on PostgreSQL); a
  missing tag is NULL and is guarded with ``IS NOT NULL`` to keep the same semantics.
* Times are RFC 3339 strings in the filter and integer microseconds in the tables.
* ``LIKE`` is case-sensitive on every backend (see ``CaseSensitiveLike``); ``\\`` in a
  pattern makes the next character literal (``"50\\\\%"`` matches ``50%``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn

from sqlalchemy import Boolean, and_, exists, not_, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.visitors import InternalTraversal

from services.registry import filters, tables
from services.registry.filters import Constant, Node, Value, fail

Kind = Literal["string", "number", "time"]
_COMPARE: Mapping[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Target:
    """What a field name stands for in SQL."""

    kind: Kind
    value: ColumnElement[Any]
    # Non-empty: ``value`` is a column of a child table, compared inside EXISTS(… WHERE scope).
    scope: tuple[ColumnElement[bool], ...] = ()
    # ``value`` is NULL when the field is missing (JSON paths).
    optional: bool = False
    sortable: bool = True


@dataclass(frozen=True)
class FieldTable:
    """The fields of one resource: exact names, and families such as ``tags.<key>``."""

    resource: str
    fields: Mapping[str, Target]
    # prefix (``"tags."``) -> (placeholder shown in errors, builder from the rest of the name)
    families: Mapping[str, tuple[str, Callable[[str], Target]]] = field(default_factory=dict)

    def resolve(self, name: str) -> Target | None:
        if name in self.fields:
            return self.fields[name]
        for prefix, (_, build) in self.families.items():
            rest = name.removeprefix(prefix)
            if rest != name and rest:
                return build(rest)
        return None

    def describe(self, *, sortable: bool = False) -> str:
        names = [n for n, target in self.fields.items() if target.sortable or not sortable]
        names += [prefix + hole for prefix, (hole, _) in self.families.items()]
        return ", ".join(names)


# --- case-sensitive LIKE ---------------------------------------------------------------


class CaseSensitiveLike(ColumnElement[bool]):
    """``value LIKE pattern`` that is case-sensitive everywhere.

    SQLite's LIKE ignores ASCII case and its ``case_sensitive_like`` pragma is per
    connection, so on SQLite the pattern is translated to ``GLOB`` (always
    case-sensitive); every other backend gets ``LIKE … ESCAPE '\\'``. Both forms are
    built up front; the dialect's compiler picks one.
    """

    __visit_name__ = "keel_case_sensitive_like"
    inherit_cache = True
    _traverse_internals = [
        ("like_form", InternalTraversal.dp_clauseelement),
        ("glob_form", InternalTraversal.dp_clauseelement),
    ]
    type = Boolean()
    _is_implicitly_boolean = True

    def __init__(self, value: ColumnElement[Any], pattern: Constant) -> None:
        like, glob = _like_forms(pattern)
        self.like_form = value.like(like, escape="\\")
        self.glob_form = value.op("GLOB", is_comparison=True)(glob)

    def _negate(self) -> ColumnElement[Any]:
        return UnaryExpression(self, operator=operators.inv)  # NOT (…), never "= 0"


def _like_forms(pattern: Constant) -> tuple[str, str]:
    """The filter's LIKE pattern as (LIKE with ``\\`` escapes, GLOB) patterns."""
    like: list[str] = []
    glob: list[str] = []
    text, i = str(pattern.value), 0
    while i < len(text):
        char = text[i]
        if char in "%_":
            like.append(char)
            glob.append("*" if char == "%" else "?")
        else:
            if char == "\\":
                if i + 1 == len(text):
                    expected = "expected a character after the last '\\' of the LIKE pattern"
                    fail("filter", pattern.position, f"{expected}, got end of pattern")
                i += 1
                char = text[i]
            like.append("\\" + char if char in "%_\\" else char)
            glob.append(f"[{char}]" if char in "*?[" else char)
        i += 1
    return "".join(like), "".join(glob)


@compiles(CaseSensitiveLike)
def _compile_like(element: CaseSensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.like_form, **kw)})"


@compiles(CaseSensitiveLike, "sqlite")
def _compile_glob(element: CaseSensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.glob_form, **kw)})"


# --- compiler --------------------------------------------------------------------------

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339_micros(text: str) -> int | None:
    """Microseconds since the epoch of an RFC 3339 timestamp; None when it is not one."""
    if not _RFC3339.fullmatch(text.upper()):
        return None
    try:
        moment = datetime.fromisoformat(text.upper())  # digits past microseconds are dropped
    except ValueError:  # 2025-02-30, 23:59:60, …
        return None
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _fail(position: int, message: str) -> NoReturn:
    fail("filter", position, message)


_EXPECTED = {
    "string": "a string",
    "number": "a number",
    "time": 'an RFC 3339 timestamp string (e.g. "2025-06-01T00:00:00Z")',
}


def _operand(target: Target, name: str, constant: Constant) -> Value:
    """``constant`` as the column compares it, or the error of a value of the wrong type."""
    value = constant.value
    if target.kind == ("string" if isinstance(value, str) else "number"):
        return value
    if target.kind == "time" and isinstance(value, str):
        micros = rfc3339_micros(value)
        if micros is not None:
            return micros
    _fail(
        constant.position,
        f"expected {_EXPECTED[target.kind]} for '{name}', got {constant.describe()}",
    )


def _target(name: str, position: int, fields: FieldTable) -> Target:
    target = fields.resolve(name)
    if target is None:
        _fail(
            position, f"expected a field of {fields.resource} ({fields.describe()}), got '{name}'"
        )
    return target


def _applied(target: Target, test: ColumnElement[bool]) -> ColumnElement[bool]:
    if target.scope:
        return exists().where(*target.scope, test)
    if target.optional:
        return and_(target.value.is_not(None), test)
    return test


def _comparison(node: filters.Compare, fields: FieldTable) -> ColumnElement[bool]:
    target = _target(node.field, node.field_position, fields)
    if node.op == "LIKE":
        if target.kind != "string":
            expected = f"expected =, !=, <, <=, >, >= or IN after {target.kind} field"
            _fail(node.op_position, f"{expected} '{node.field}', got LIKE")
        _operand(target, node.field, node.value)
        return _applied(target, CaseSensitiveLike(target.value, node.value))
    operand = _operand(target, node.field, node.value)
    test: ColumnElement[bool] = _COMPARE[node.op](target.value, operand)
    return _applied(target, test)


def _membership(node: filters.In, fields: FieldTable) -> ColumnElement[bool]:
    target = _target(node.field, node.field_position, fields)
    operands = [_operand(target, node.field, value) for value in node.values]
    test = target.value.not_in(operands) if node.negated else target.value.in_(operands)
    return _applied(target, test)


def compile_filter(node: Node, fields: FieldTable) -> ColumnElement[bool]:
    """The SQL condition of ``node`` over the resource described by ``fields``."""
    match node:
        case filters.Compare():
            return _comparison(node, fields)
        case filters.In():
            return _membership(node, fields)
        case filters.Not(operand):
            return not_(compile_filter(operand, fields))
        case filters.And(operands):
            return and_(*(compile_filter(o, fields) for o in operands))
        case filters.Or(operands):
            return or_(*(compile_filter(o, fields) for o in operands))


# --- the three resources ---------------------------------------------------------------

_V = tables.VersionRow.__table__.c  # type: ignore[attr-defined]
_TAG = tables.VersionTagRow.__table__.c  # type: ignore[attr-defined]
_METRIC = tables.VersionMetricRow.__table__.c  # type: ignore[attr-defined]
_ALIAS = tables.AliasRow.__table__.c  # type: ignore[attr-defined]
_M = tables.ModelRow.__table__.c  # type: ignore[attr-defined]
_C = tables.ChangeRow.__table__.c  # type: ignore[attr-defined]


def _version_tag(key: str) -> Target:
    return Target("string", _TAG.value, (_TAG.version_id == _V.id, _TAG.key == key))


def _version_metric(kind: str) -> Callable[[str], Target]:
    def build(name: str) -> Target:
        scope = (_METRIC.version_id == _V.id, _METRIC.kind == kind, _METRIC.name == name)
        return Target("number", _METRIC.value, scope)

    return build


def _model_tag(key: str) -> Target:
    return Target("string", _M.doc[("tags", key)].as_string(), optional=True)


VERSION_FIELDS = FieldTable(
    "versions",
    {
        "model": Target("string", _V.model),
        "version": Target("number", _V.version),
        "status": Target("string", _V.status),
        "flavor": Target("string", _V.flavor),
        "author": Target("string", _V.author),
        "alias": Target(
            "string",
            _ALIAS.alias,
            (_ALIAS.model == _V.model, _ALIAS.version == _V.version),
            sortable=False,
        ),
        "create_time": Target("time", _V.create_time),
        "lineage.code_revision": Target("string", _V.code_revision),
        "lineage.training_dataset.sha256": Target("string", _V.dataset_sha256),
    },
    {
        "tags.": ("<key>", _version_tag),
        "metrics.": ("<name>", _version_metric("metrics")),
        "training_metrics.": ("<name>", _version_metric("training_metrics")),
        "cv_metrics.": ("<name>", _version_metric("cv_metrics")),
    },
)

MODEL_FIELDS = FieldTable(
    "models",
    {
        "name": Target("string", _M.name),
        "task": Target("string", _M.task),
        "owner_team": Target("string", _M.owner_team),
        "state": Target("string", _M.state),
        "create_time": Target("time", _M.create_time),
    },
    {"tags.": ("<key>", _model_tag)},
)

CHANGE_FIELDS = FieldTable(
    "audit entries",
    {
        "model": Target("string", _C.model),
        "resource": Target("string", _C.resource),
        "actor": Target("string", _C.actor),
        "action": Target("string", _C.type),
        "time": Target("time", _C.time),
        "sequence": Target("number", _C.sequence),
    },
)


def _compiled(text: str, fields: FieldTable) -> ColumnElement[bool] | None:
    node = filters.parse(text)
    return None if node is None else compile_filter(node, fields)


def version_filter(text: str) -> ColumnElement[bool] | None:
    """WHERE condition over ``registry_versions`` for a SearchModelVersions filter."""
    return _compiled(text, VERSION_FIELDS)


def model_filter(text: str) -> ColumnElement[bool] | None:
    """WHERE condition over ``registry_models`` for a ListModels filter."""
    return _compiled(text, MODEL_FIELDS)


def change_filter(text: str) -> ColumnElement[bool] | None:
    """WHERE condition over ``registry_changes`` for a ListAuditEntries filter."""
    return _compiled(text, CHANGE_FIELDS)


def version_order(text: str) -> list[UnaryExpression[Any]]:
    """ORDER BY clauses for a SearchModelVersions ``order_by``, ties broken by model, version."""
    items = filters.parse_order_by(text)
    clauses: list[UnaryExpression[Any]] = []
    seen: set[str] = set()
    for item in items:
        target = VERSION_FIELDS.resolve(item.field)
        if target is None or not target.sortable:
            names = VERSION_FIELDS.describe(sortable=True)
            fail("order_by", item.position, f"expected a field ({names}), got '{item.field}'")
        if item.field in seen:
            fail("order_by", item.position, f"expected each field once, got '{item.field}' again")
        seen.add(item.field)
        value = target.value
        if target.scope:
            value = select(value).where(*target.scope).scalar_subquery()
        clause = value.desc() if item.descending else value.asc()
        clauses.append(clause.nulls_last() if target.scope or target.optional else clause)
    if not items:
        clauses.append(_V.create_time.desc())
    clauses += [_V[name].asc() for name in ("model", "version") if name not in seen]
    return clauses
