"""The filter language: parsing, precedence, escapes, and every error with its position."""

from __future__ import annotations

import pytest

from services.common.errors import FieldViolation, InvalidArgument
from services.registry.filter_sql import (
    CHANGE_FIELDS,
    MODEL_FIELDS,
    VERSION_FIELDS,
    FieldTable,
    change_filter,
    compile_filter,
    model_filter,
    rfc3339_micros,
    version_filter,
    version_order,
)
from services.registry.filters import (
    And,
    Compare,
    Constant,
    In,
    Node,
    Not,
    Or,
    OrderItem,
    parse,
    parse_order_by,
)


def cmp(field: str, op: str, value: str | int | float) -> tuple[str, str, str | int | float]:
    return (field, op, value)


def shape(node: Node | None) -> object:
    """The AST without positions, so precedence tests read like the expression."""
    match node:
        case Compare():
            return cmp(node.field, node.op, node.value.value)
        case In():
            op = "NOT IN" if node.negated else "IN"
            return (node.field, op, tuple(v.value for v in node.values))
        case Not(operand):
            return ("NOT", shape(operand))
        case And(operands):
            return ("AND", *(shape(o) for o in operands))
        case Or(operands):
            return ("OR", *(shape(o) for o in operands))
    return None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a = "x" OR b = "y" AND c = "z"', ("OR", cmp("a", "=", "x"), ("AND", cmp("b", "=", "y"), cmp("c", "=", "z")))),
        ('a = "x" AND b = "y" OR c = "z"', ("OR", ("AND", cmp("a", "=", "x"), cmp("b", "=", "y")), cmp("c", "=", "z"))),
        ('NOT a = "x" AND b = "y"', ("AND", ("NOT", cmp("a", "=", "x")), cmp("b", "=", "y"))),
        ('NOT (a = "x" OR b = "y")', ("NOT", ("OR", cmp("a", "=", "x"), cmp("b", "=", "y")))),
        ('(a = "x" OR b = "y") AND c = "z"', ("AND", ("OR", cmp("a", "=", "x"), cmp("b", "=", "y")), cmp("c", "=", "z"))),
        ("NOT NOT a = 1", ("NOT", ("NOT", cmp("a", "=", 1)))),
        ("a = 1 AND b = 2 AND c = 3", ("AND", cmp("a", "=", 1), cmp("b", "=", 2), cmp("c", "=", 3))),
        ("a = 1 OR b = 2 OR c = 3", ("OR", cmp("a", "=", 1), cmp("b", "=", 2), cmp("c", "=", 3))),
        ("((a = 1))", cmp("a", "=", 1)),
        ('a = 1 and not b = 2 Or c LiKe "x%"', ("OR", ("AND", cmp("a", "=", 1), ("NOT", cmp("b", "=", 2))), cmp("c", "LIKE", "x%"))),
    ],
)  # fmt: skip
def test_precedence_is_not_then_and_then_or(text: str, expected: object) -> None:
    assert shape(parse(text)) == expected


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">=", "LIKE", "like"])
def test_every_operator(op: str) -> None:
    assert shape(parse(f'a {op} "v"')) == cmp("a", op.upper(), "v")


def test_operators_need_no_spaces() -> None:
    assert shape(parse("a>=1 AND(b!=2)")) == ("AND", cmp("a", ">=", 1), cmp("b", "!=", 2))


def test_in_and_not_in() -> None:
    assert shape(parse('a IN ("x", 2, -3.5)')) == ("a", "IN", ("x", 2, -3.5))
    assert shape(parse('a not in ("x")')) == ("a", "NOT IN", ("x",))
    assert shape(parse('NOT a NOT IN ("x")')) == ("NOT", ("a", "NOT IN", ("x",)))


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r'"plain"', "plain"),
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\\\""', '\\"'),
        ('""', ""),
        ('"AND OR ( ) ,"', "AND OR ( ) ,"),
        ('"ünïcödé ✓"', "ünïcödé ✓"),
    ],
)
def test_string_escapes(literal: str, value: str) -> None:
    assert shape(parse(f"a = {literal}")) == cmp("a", "=", value)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("0.25", 0.25),
        ("-0.5", -0.5),
        ("1e3", 1000.0),
        ("2.5E-3", 0.0025),
        ("-1e+2", -100.0),
        ("99999999999999999999", 1e20),
    ],
)
def test_numbers(literal: str, value: float) -> None:
    node = parse(f"a = {literal}")
    assert isinstance(node, Compare)
    assert node.value.value == value
    assert type(node.value.value) is type(value)


@pytest.mark.parametrize(
    "field",
    ["metrics.f1", "tags.team", "lineage.training_dataset.sha256", "tags.cost-center", "_x.y_2"],
)
def test_dotted_fields(field: str) -> None:
    assert shape(parse(f'{field} = "v"')) == cmp(field, "=", "v")


def test_positions_are_recorded() -> None:
    node = parse('  metrics.f1 >= 0.8 AND tags.team IN ("a", "b")')
    assert node == And(
        (
            Compare("metrics.f1", 2, ">=", 13, Constant(0.8, 16)),
            In("tags.team", 24, 34, (Constant("a", 38), Constant("b", 43))),
        )
    )
    assert node == parse('  metrics.f1 >= 0.8 and tags.team in ("a", "b")')


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_filter_is_none(text: str) -> None:
    assert parse(text) is None
    assert version_filter(text) is None
    assert model_filter(text) is None
    assert change_filter(text) is None


def test_nodes_are_frozen() -> None:
    node = parse("a = 1")
    with pytest.raises(AttributeError):
        node.field = "b"  # type: ignore[union-attr, misc]


def error_of(call: object, text: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        call(text)  # type: ignore[operator]
    return caught.value


SYNTAX_ERRORS = [
    ('metrics.f1 >= 0.8 AND x >=', "position 26: expected a value after '>=', got end of input"),
    ('a >= AND b = 1', "position 5: expected a value after '>=', got 'AND'"),
    ('model = "churn', "position 8: expected a closing '\"' for the string that starts here, got end of input"),
    ('model = "a\\n"', "position 10: expected '\\\"' or '\\\\' after a backslash, got 'n'"),
    ('model = "a\\', "position 10: expected '\\\"' or '\\\\' after a backslash, got end of input"),
    ("model = 'x'", "position 8: expected a field, a value, an operator or a parenthesis, got \"'\""),
    ('model ! "x"', "position 6: expected '=' after '!', got ' '"),
    ("version = -x", "position 10: expected a digit after '-', got 'x'"),
    ("version = 1.", "position 10: expected a digit after '.', got end of input"),
    ("version = 1e+", "position 10: expected a digit in the exponent, got end of input"),
    ("version = 1e999", "position 10: expected a finite number, got number 1e999"),
    ("version = .5", "position 10: expected a field, a value, an operator or a parenthesis, got '.'"),
    ('model "x"', "position 6: expected an operator (=, !=, <, <=, >, >=, LIKE, IN) after 'model', got string \"x\""),
    ("model", "position 5: expected an operator (=, !=, <, <=, >, >=, LIKE, IN) after 'model', got end of input"),
    ('model NOT = "x"', "position 10: expected IN after 'model NOT', got '='"),
    ('model IN "x"', "position 9: expected '(' after IN, got string \"x\""),
    ("model IN ()", "position 10: expected at least one value in the IN list, got ')'"),
    ('model IN ("a",)', "position 14: expected a value in the IN list, got ')'"),
    ('model IN ("a" "b")', "position 14: expected ',' or ')' in the IN list, got string \"b\""),
    ('model IN ("a"', "position 13: expected ',' or ')' in the IN list, got end of input"),
    ('(model = "a"', "position 12: expected ')' to close the '(' at position 0, got end of input"),
    ('model = "a" version = 1', "position 12: expected AND, OR or the end of the filter, got 'version'"),
    ('model = "a")', "position 11: expected AND, OR or the end of the filter, got ')'"),
    ('AND model = "a"', "position 0: expected a field, NOT or '(', got 'AND'"),
    ("()", "position 1: expected a field, NOT or '(', got ')'"),
    ('a = "x" OR', "position 10: expected a field, NOT or '(', got end of input"),
    ("1 = 1", "position 0: expected a field, NOT or '(', got number 1"),
    ("model = model", "position 8: expected a value after '=', got 'model'"),
    ("(" * 65 + "a = 1" + ")" * 65, "position 64: expected at most 64 nested NOTs and parentheses, got '('"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "detail"), SYNTAX_ERRORS)
def test_syntax_errors_name_the_position(text: str, detail: str) -> None:
    error = error_of(parse, text)
    assert error.message == f"filter: {detail}"
    assert error.violations == (FieldViolation("filter", detail),)


def test_deepest_allowed_nesting_parses() -> None:
    node = parse("(" * 63 + "NOT a = 1" + ")" * 63)
    assert shape(node) == ("NOT", cmp("a", "=", 1))


VERSION_NAMES = (
    "model, version, status, flavor, author, alias, create_time, lineage.code_revision, "
    "lineage.training_dataset.sha256, tags.<key>, metrics.<name>, training_metrics.<name>, "
    "cv_metrics.<name>"
)
TIME = 'an RFC 3339 timestamp string (e.g. "2025-06-01T00:00:00Z")'

FIELD_ERRORS = [
    (version_filter, 'model = "a" AND colour = "red"', f"position 16: expected a field of versions ({VERSION_NAMES}), got 'colour'"),
    (version_filter, 'tags. = "x"', "position 0: expected a field of versions"),
    (version_filter, "metrics = 1", "position 0: expected a field of versions"),
    (version_filter, 'metrics.f1 >= "high"', "position 14: expected a number for 'metrics.f1', got string \"high\""),
    (version_filter, "version IN (1, \"2\")", "position 15: expected a number for 'version', got string \"2\""),
    (version_filter, "model = 3", "position 8: expected a string for 'model', got number 3"),
    (version_filter, "tags.team IN (\"a\", 1.5)", "position 19: expected a string for 'tags.team', got number 1.5"),
    (version_filter, 'version LIKE "1%"', "position 8: expected =, !=, <, <=, >, >= or IN after number field 'version', got LIKE"),
    (version_filter, 'cv_metrics.f1 LIKE "0.%"', "position 14: expected =, !=, <, <=, >, >= or IN after number field 'cv_metrics.f1', got LIKE"),
    (version_filter, 'create_time LIKE "2025%"', "position 12: expected =, !=, <, <=, >, >= or IN after time field 'create_time', got LIKE"),
    (version_filter, 'model LIKE 5', "position 11: expected a string for 'model', got number 5"),
    (version_filter, 'model LIKE "a\\\\"', "position 11: expected a character after the last '\\' of the LIKE pattern, got end of pattern"),
    (version_filter, 'create_time >= "yesterday"', f"position 15: expected {TIME} for 'create_time', got string \"yesterday\""),
    (version_filter, 'create_time >= "2025-06-01"', f"position 15: expected {TIME} for 'create_time'"),
    (version_filter, 'create_time >= "2025-06-01T00:00:00"', f"position 15: expected {TIME} for 'create_time'"),
    (version_filter, 'create_time >= "2025-02-30T00:00:00Z"', f"position 15: expected {TIME} for 'create_time'"),
    (version_filter, "create_time >= 1748736000", f"position 15: expected {TIME} for 'create_time', got number 1748736000"),
    (model_filter, 'version = 1', "position 0: expected a field of models (name, task, owner_team, state, create_time, tags.<key>), got 'version'"),
    (model_filter, 'tags.team = 1', "position 12: expected a string for 'tags.team', got number 1"),
    (change_filter, 'type = "ALIAS_SET"', "position 0: expected a field of audit entries (model, resource, actor, action, time, sequence), got 'type'"),
    (change_filter, 'sequence > "5"', "position 11: expected a number for 'sequence', got string \"5\""),
    (change_filter, 'time < "soon"', f"position 7: expected {TIME} for 'time'"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "text", "detail"), FIELD_ERRORS)
def test_field_errors_name_the_position(call: object, text: str, detail: str) -> None:
    error = error_of(call, text)
    assert error.message.startswith(f"filter: {detail}")
    assert error.violations[0].field == "filter"
    assert error.message == f"filter: {error.violations[0].description}"


def test_the_same_ast_compiles_against_each_table() -> None:
    node = parse('model = "churn"')
    assert node is not None
    tables: list[FieldTable] = [VERSION_FIELDS, CHANGE_FIELDS]
    for fields in tables:
        assert "model = " in str(compile_filter(node, fields))
    with pytest.raises(InvalidArgument, match="expected a field of models"):
        compile_filter(node, MODEL_FIELDS)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01.5Z", 1_500_000),
        ("1970-01-01t00:00:00.0000019z", 1),
        ("1970-01-01T02:00:00+02:00", 0),
        ("1969-12-31T23:00:00-01:00", 0),
        ("2025-06-01T00:00:00Z", 1_748_736_000_000_000),
        ("2025-06-01 00:00:00Z", None),
        ("2025-06-01T00:00:00", None),
        ("2025-06-01T24:00:00Z", None),
        ("2016-12-31T23:59:60Z", None),
        ("２025-06-01T00:00:00Z", None),
    ],
)
def test_rfc3339_micros(text: str, micros: int | None) -> None:
    assert rfc3339_micros(text) == micros


def test_order_by_parses_fields_and_directions() -> None:
    assert parse_order_by("") == ()
    assert parse_order_by(" metrics.f1 DESC,create_time , model asc") == (
        OrderItem("metrics.f1", 1, descending=True),
        OrderItem("create_time", 17, descending=False),
        OrderItem("model", 31, descending=False),
    )


ORDER_ERRORS = [
    ("model sideways", "position 6: expected asc, desc, ',' or the end after 'model', got 'sideways'"),
    ("model,", "position 6: expected a field to order by, got end of input"),
    (", model", "position 0: expected a field to order by, got ','"),
    ("model desc desc", "position 11: expected ',' or the end of the order, got 'desc'"),
    ('"model"', "position 0: expected a field to order by, got string \"model\""),
    ("version, alias", "position 9: expected a field (model, version, status, flavor, author, create_time, "),
    ("colour desc", "position 0: expected a field (model, version"),
    ("version, model, version desc", "position 16: expected each field once, got 'version' again"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "detail"), ORDER_ERRORS)
def test_order_errors_name_the_position(text: str, detail: str) -> None:
    error = error_of(version_order, text)
    assert error.message.startswith(f"order_by: {detail}")
    assert error.violations[0].field == "order_by"


def test_default_order_is_newest_first_then_model_and_version() -> None:
    assert [str(c) for c in version_order("")] == [
        "registry_versions.create_time DESC",
        "registry_versions.model ASC",
        "registry_versions.version ASC",
    ]
    assert [str(c) for c in version_order("version desc")] == [
        "registry_versions.version DESC",
        "registry_versions.model ASC",
    ]
