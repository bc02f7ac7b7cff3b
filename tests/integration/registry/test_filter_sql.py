"""Filters and orders run against real tables, on SQLite and on PostgreSQL.

Each test gets the registry's tables with a handful of rows, then checks exactly which
rows a filter selects (or in which order), on both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, Table, create_engine, insert, select
from sqlalchemy.pool import StaticPool

from services.common.errors import InvalidArgument
from services.registry.filter_sql import change_filter, model_filter, version_filter, version_order
from services.registry.tables import (
    METADATA,
    AliasRow,
    ChangeRow,
    ModelRow,
    VersionMetricRow,
    VersionRow,
    VersionTagRow,
)


def table(row: type[Any]) -> Table:
    result: Table = row.__table__
    return result


VERSIONS, TAGS, METRICS = table(VersionRow), table(VersionTagRow), table(VersionMetricRow)
ALIASES, MODELS, CHANGES = table(AliasRow), table(ModelRow), table(ChangeRow)

DAY = 86_400_000_000
JAN_1_2025 = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z in microseconds

#  id  model    v  status    flavor   author  code_revision  created
VERSION_ROWS = [
    (1, "churn", 1, "READY", "XGBOOST", "alice", "abc123", JAN_1_2025),  # 2025-01-01
    (2, "churn", 2, "READY", "SKLEARN", "bob", "abc124", JAN_1_2025 + 59 * DAY),  # 03-01
    (3, "churn", 3, "FAILED", "XGBOOST", "Alice", "def001", JAN_1_2025 + 151 * DAY),  # 06-01
    (4, "fraud", 1, "READY", "XGBOOST", "carol", "abc999", JAN_1_2025 + 31 * DAY),  # 02-01
    (5, "fraud", 2, "PENDING", "SKLEARN", "bob", "ABC555", JAN_1_2025 + 151 * DAY),  # 06-01
    (6, "price", 1, "ARCHIVED", "XGBOOST", "ALICE", "", JAN_1_2025 + 90 * DAY),  # 04-01
]
TAG_ROWS = [
    (1, "team", "risk"),
    (2, "team", "risk"),
    (3, "team", "Risk"),
    (4, "team", "ml"),
    (6, "team", "risk-pricing"),
    (2, "note", "50%_off"),
    (4, "note", "50%Xoff"),
    (1, "note", "500_off"),
    (5, "note", "a*[b]?"),
    (6, "note", "axyb!"),
    (1, "rank", "b"),
    (2, "rank", "a"),
    (4, "rank", "c"),
]
METRIC_ROWS = [
    (1, "metrics", "f1", 0.70),
    (2, "metrics", "f1", 0.85),
    (4, "metrics", "f1", 0.90),
    (5, "metrics", "f1", 0.85),
    (6, "metrics", "rmse", 3.2),
    (1, "training_metrics", "f1", 0.95),
    (2, "training_metrics", "f1", 0.80),
    (2, "cv_metrics", "f1", 0.82),
]
ALIAS_ROWS = [("churn", "production", 2), ("churn", "staging", 1), ("fraud", "production", 1)]
MODEL_ROWS = [
    ("churn", "BINARY_CLASSIFICATION", "risk", "ACTIVE", {"tags": {"team": "risk", "tier": "G"}}),
    ("fraud", "MULTICLASS", "ml", "ACTIVE", {"tags": {"team": "ml"}}),
    ("price", "REGRESSION", "", "ARCHIVED", {}),
]
#  sequence  type  resource  model  actor  day
CHANGE_ROWS = [
    (1, "MODEL_CREATED", "models/churn", "churn", "alice@example.com", 0),
    (2, "VERSION_CREATED", "models/churn/versions/1", "churn", "alice@example.com", 0),
    (3, "ALIAS_SET", "models/churn/aliases/production", "churn", "bob@example.com", 10),
    (4, "ALIAS_ROLLED_BACK", "models/churn/aliases/production", "churn", "ops@Example.com", 20),
    (5, "ALIAS_SET", "models/fraud/aliases/production", "fraud", "carol@example.org", 30),
]


def fill(engine: Engine) -> None:
    METADATA.create_all(engine)
    with engine.begin() as db:
        db.execute(
            insert(VERSIONS),
            [
                dict(id=i, model=m, version=v, status=s, flavor=f, author=a, code_revision=c)
                | dict(
                    artifact_sha256="0" * 64,
                    dataset_sha256=f"d{i}",
                    doc={},
                    message=b"",
                    profile=b"",
                )
                | dict(create_time=t, update_time=t)
                for i, m, v, s, f, a, c, t in VERSION_ROWS
            ],
        )
        db.execute(insert(TAGS), [dict(version_id=i, key=k, value=v) for i, k, v in TAG_ROWS])
        db.execute(
            insert(METRICS),
            [dict(version_id=i, kind=k, name=n, value=v) for i, k, n, v in METRIC_ROWS],
        )
        db.execute(
            insert(ALIASES),
            [dict(model=m, alias=a, version=v, update_time=0) for m, a, v in ALIAS_ROWS],
        )
        db.execute(
            insert(MODELS),
            [
                dict(name=n, task=t, owner_team=o, state=s, doc=d)
                | dict(create_time=JAN_1_2025 + k * DAY, update_time=0)
                for k, (n, t, o, s, d) in enumerate(MODEL_ROWS)
            ],
        )
        db.execute(
            insert(CHANGES),
            [
                dict(sequence=q, type=t, resource=r, model=m, actor=a, payload=b"")
                | dict(time=JAN_1_2025 + d * DAY)
                for q, t, r, m, a, d in CHANGE_ROWS
            ],
        )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "sqlite":
        made = create_engine("sqlite://", poolclass=StaticPool)
    else:
        made = create_engine(request.getfixturevalue("postgres_url"))
    fill(made)
    yield made
    made.dispose()


def versions(engine: Engine, text: str, order_by: str = "") -> list[str]:
    """``model/version`` of the matching versions, in the requested order."""
    query = select(VERSIONS.c.model, VERSIONS.c.version).order_by(*version_order(order_by))
    condition = version_filter(text)
    if condition is not None:
        query = query.where(condition)
    with engine.connect() as db:
        return [f"{model}/{version}" for model, version in db.execute(query)]


def matching(engine: Engine, text: str) -> set[str]:
    return set(versions(engine, text))


VERSION_CASES = [
    ("", {"churn/1", "churn/2", "churn/3", "fraud/1", "fraud/2", "price/1"}),
    ('model = "churn"', {"churn/1", "churn/2", "churn/3"}),
    ('model != "churn"', {"fraud/1", "fraud/2", "price/1"}),
    ("version > 1.5", {"churn/2", "churn/3", "fraud/2"}),
    ("version = 2.0", {"churn/2", "fraud/2"}),
    ("version IN (1, 3)", {"churn/1", "churn/3", "fraud/1", "price/1"}),
    ("version NOT IN (1)", {"churn/2", "churn/3", "fraud/2"}),
    ('status = "READY" AND flavor = "XGBOOST"', {"churn/1", "fraud/1"}),
    ('status = "ready"', set()),
    ('status IN ("PENDING", "FAILED")', {"churn/3", "fraud/2"}),
    ('author = "bob" OR author = "carol" AND status = "READY"', {"churn/2", "fraud/2", "fraud/1"}),
    ('(author = "bob" OR author = "carol") AND status = "READY"', {"churn/2", "fraud/1"}),
    ('model = "churn" AND NOT (version = 1 OR version = 3)', {"churn/2"}),
    ('author = "alice"', {"churn/1"}),
    ('author LIKE "a%"', {"churn/1"}),
    ('author LIKE "A%"', {"churn/3", "price/1"}),
    ('author like "_LICE"', {"price/1"}),
    ('NOT author LIKE "a%"', {"churn/2", "churn/3", "fraud/1", "fraud/2", "price/1"}),
    ('lineage.code_revision LIKE "abc%"', {"churn/1", "churn/2", "fraud/1"}),
    ('lineage.training_dataset.sha256 = "d2"', {"churn/2"}),
    ('tags.team = "risk"', {"churn/1", "churn/2"}),
    ('NOT tags.team = "risk"', {"churn/3", "fraud/1", "fraud/2", "price/1"}),
    ('tags.team != "risk"', {"churn/3", "fraud/1", "price/1"}),
    ('tags.team NOT IN ("risk", "ml")', {"churn/3", "price/1"}),
    ('tags.team IN ("ml", "Risk")', {"churn/3", "fraud/1"}),
    ('tags.team LIKE "risk%"', {"churn/1", "churn/2", "price/1"}),
    ('tags.missing = "x"', set()),
    ('NOT tags.missing = "x"', {"churn/1", "churn/2", "churn/3", "fraud/1", "fraud/2", "price/1"}),
    ('tags.note LIKE "50%_off"', {"churn/1", "churn/2", "fraud/1"}),
    (r'tags.note LIKE "50\\%\\_off"', {"churn/2"}),
    ('tags.note LIKE "a*[b]?"', {"fraud/2"}),
    ('tags.note LIKE "a%"', {"fraud/2", "price/1"}),
    ("metrics.f1 >= 0.85", {"churn/2", "fraud/1", "fraud/2"}),
    ("metrics.f1 = 0.85", {"churn/2", "fraud/2"}),
    ("NOT metrics.f1 > 0.8", {"churn/1", "churn/3", "price/1"}),
    ("metrics.f1 < 8.5e-1", {"churn/1"}),
    ("metrics.f1 IN (0.7, 0.9)", {"churn/1", "fraud/1"}),
    ("metrics.rmse < 5", {"price/1"}),
    ("metrics.rmse > -1", {"price/1"}),
    ("training_metrics.f1 > 0.9", {"churn/1"}),
    ("training_metrics.f1 > 0.5 AND cv_metrics.f1 = 0.82", {"churn/2"}),
    ("cv_metrics.f1 > 0", {"churn/2"}),
    ('alias = "production"', {"churn/2", "fraud/1"}),
    ('alias IN ("staging", "production")', {"churn/1", "churn/2", "fraud/1"}),
    ('alias != "production"', {"churn/1"}),
    ('NOT alias = "production"', {"churn/1", "churn/3", "fraud/2", "price/1"}),
    ('alias LIKE "prod%" AND model = "fraud"', {"fraud/1"}),
    ('create_time >= "2025-06-01T00:00:00Z"', {"churn/3", "fraud/2"}),
    ('create_time = "2025-06-01T00:00:00.000000Z"', {"churn/3", "fraud/2"}),
    ('create_time < "2025-03-01T02:00:00+02:00"', {"churn/1", "fraud/1"}),
    (
        'create_time IN ("2025-01-01T00:00:00Z", "2025-06-01T01:00:00+01:00")',
        {"churn/1", "churn/3", "fraud/2"},
    ),
    (
        'create_time <= "2025-03-01T00:00:00Z" AND create_time > "2025-01-01T00:00:00Z"',
        {"churn/2", "fraud/1"},
    ),
    ('model = "churn" AND metrics.f1 >= 0.8 AND tags.team = "risk"', {"churn/2"}),
]


@pytest.mark.parametrize(("text", "expected"), VERSION_CASES)
def test_version_filter(engine: Engine, text: str, expected: set[str]) -> None:
    assert matching(engine, text) == expected


def test_compiled_statements_are_cached_per_shape_not_per_value(engine: Engine) -> None:
    # The same statement shape with other values must not reuse the first values.
    assert matching(engine, 'author LIKE "a%"') == {"churn/1"}
    assert matching(engine, 'author LIKE "b%"') == {"churn/2", "fraud/2"}
    assert matching(engine, 'tags.team = "ml"') == {"fraud/1"}
    assert matching(engine, 'tags.team = "risk-pricing"') == {"price/1"}
    assert matching(engine, "metrics.f1 > 0.8") == {"churn/2", "fraud/1", "fraud/2"}
    assert matching(engine, "cv_metrics.f1 > 0.8") == {"churn/2"}


def test_a_filter_with_a_bad_value_never_reaches_the_database(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="position 14: expected a number"):
        matching(engine, 'metrics.f1 >= "0.8"')


ORDER_CASES = [
    ("", "churn/3 fraud/2 price/1 churn/2 fraud/1 churn/1"),
    ("create_time", "churn/1 fraud/1 churn/2 price/1 churn/3 fraud/2"),
    ("create_time DESC, model desc", "fraud/2 churn/3 price/1 churn/2 fraud/1 churn/1"),
    ("metrics.f1 desc", "fraud/1 churn/2 fraud/2 churn/1 churn/3 price/1"),
    ("metrics.f1", "churn/1 churn/2 fraud/2 fraud/1 churn/3 price/1"),
    ("metrics.f1 desc, model desc", "fraud/1 fraud/2 churn/2 churn/1 price/1 churn/3"),
    ("training_metrics.f1 desc", "churn/1 churn/2 churn/3 fraud/1 fraud/2 price/1"),
    ("tags.rank", "churn/2 churn/1 fraud/1 churn/3 fraud/2 price/1"),
    ("tags.rank desc", "fraud/1 churn/1 churn/2 churn/3 fraud/2 price/1"),
    ("model desc, version desc", "price/1 fraud/2 fraud/1 churn/3 churn/2 churn/1"),
    ("version", "churn/1 fraud/1 price/1 churn/2 fraud/2 churn/3"),
    ("status, version desc", "price/1 churn/3 fraud/2 churn/2 churn/1 fraud/1"),
]


@pytest.mark.parametrize(("order_by", "expected"), ORDER_CASES)
def test_version_order(engine: Engine, order_by: str, expected: str) -> None:
    assert versions(engine, "", order_by) == expected.split()


def test_filter_and_order_together(engine: Engine) -> None:
    found = versions(engine, 'status != "ARCHIVED" AND NOT tags.team = "ml"', "metrics.f1 desc")
    assert found == ["churn/2", "fraud/2", "churn/1", "churn/3"]


def models(engine: Engine, text: str) -> list[str]:
    query = select(MODELS.c.name).order_by(MODELS.c.name)
    condition = model_filter(text)
    if condition is not None:
        query = query.where(condition)
    with engine.connect() as db:
        return list(db.scalars(query))


MODEL_CASES = [
    ("", ["churn", "fraud", "price"]),
    ('tags.team = "risk"', ["churn"]),
    ('NOT tags.team = "risk"', ["fraud", "price"]),
    ('tags.team != "risk"', ["fraud"]),
    ('tags.team IN ("risk", "ml")', ["churn", "fraud"]),
    ('tags.team NOT IN ("risk")', ["fraud"]),
    ('tags.tier LIKE "G%"', ["churn"]),
    ('tags.tier LIKE "g%"', []),
    ('NOT tags.tier LIKE "G%"', ["fraud", "price"]),
    ('tags.absent = ""', []),
    ('name LIKE "%r%"', ["churn", "fraud", "price"]),
    ('name LIKE "_r%" AND state = "ACTIVE"', ["fraud"]),
    ('owner_team = ""', ["price"]),
    ('task = "REGRESSION" OR owner_team = "ml"', ["fraud", "price"]),
    ('state = "ARCHIVED"', ["price"]),
    ('create_time > "2025-01-01T00:00:00Z"', ["fraud", "price"]),
]


@pytest.mark.parametrize(("text", "expected"), MODEL_CASES)
def test_model_filter(engine: Engine, text: str, expected: list[str]) -> None:
    assert models(engine, text) == expected


def changes(engine: Engine, text: str) -> list[int]:
    query = select(CHANGES.c.sequence).order_by(CHANGES.c.sequence)
    condition = change_filter(text)
    if condition is not None:
        query = query.where(condition)
    with engine.connect() as db:
        return list(db.scalars(query))


CHANGE_CASES = [
    ("", [1, 2, 3, 4, 5]),
    ('model = "churn" AND action IN ("ALIAS_SET", "ALIAS_ROLLED_BACK")', [3, 4]),
    ('action = "ALIAS_SET"', [3, 5]),
    ('resource = "models/churn/aliases/production"', [3, 4]),
    ('resource LIKE "models/churn/%"', [2, 3, 4]),
    ('actor LIKE "%@example.com"', [1, 2, 3]),
    ("sequence > 2 AND sequence <= 4", [3, 4]),
    ("sequence NOT IN (1, 5)", [2, 3, 4]),
    ('time >= "2025-01-11T00:00:00Z"', [3, 4, 5]),
    ('time < "2025-01-11T00:00:00.000001Z" AND NOT model = "fraud"', [1, 2, 3]),
]


@pytest.mark.parametrize(("text", "expected"), CHANGE_CASES)
def test_change_filter(engine: Engine, text: str, expected: list[int]) -> None:
    assert changes(engine, text) == expected
