"""The filter language: parsing, precedence, escapes, and every error with its position."""

from __future__ import annotations

import json

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


def literal(value: str | int | float) -> str:
    return json.dumps(value)


def show(node: Node | None) -> str:
    """The AST fully parenthesized, so precedence tests read like the expression."""
    match node:
        case Compare():
            return f"{node.field} {node.op} {literal(node.value.value)}"
        case In():
            op = "NOT IN" if node.negated else "IN"
            return f"{node.field} {op} ({', '.join(literal(v.value) for v in node.values)})"
        case Not(operand):
            return f"(NOT {show(operand)})"
        case And(operands):
            return "(" + " AND ".join(show(o) for o in operands) + ")"
        case Or(operands):
            return "(" + " OR ".join(show(o) for o in operands) + ")"
    return "<empty>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a = "x" OR b = "y" AND c = "z"', '(a = "x" OR (b = "y" AND c = "z"))'),
        ('a = "x" AND b = "y" OR c = "z"', '((a = "x" AND b = "y") OR c = "z")'),
        ('NOT a = "x" AND b = "y"', '((NOT a = "x") AND b = "y")'),
        ('NOT a = "x" OR b = "y"', '((NOT a = "x") OR b = "y")'),
        ('NOT (a = "x" OR b = "y")', '(NOT (a = "x" OR b = "y"))'),
        ('(a = "x" OR b = "y") AND c = "z"', '((a = "x" OR b = "y") AND c = "z")'),
        ("NOT NOT a = 1", "(NOT (NOT a = 1))"),
        ("a = 1 AND b = 2 AND c = 3", "(a = 1 AND b = 2 AND c = 3)"),
        ("a = 1 OR b = 2 OR c = 3", "(a = 1 OR b = 2 OR c = 3)"),
        ("a = 1 OR b = 2 AND c = 3 OR d = 4", "(a = 1 OR (b = 2 AND c = 3) OR d = 4)"),
        ("((a = 1))", "a = 1"),
        ('a = 1 and not b = 2 Or c LiKe "x%"', '((a = 1 AND (NOT b = 2)) OR c LIKE "x%")'),
    ],
)
def test_precedence_is_not_then_and_then_or(text: str, expected: str) -> None:
    assert show(parse(text)) == expected


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">=", "LIKE", "like"])
def test_every_operator(op: str) -> None:
    assert show(parse(f'a {op} "v"')) == f'a {op.upper()} "v"'


def test_operators_need_no_spaces() -> None:
    assert show(parse("a>=1 AND(b!=2)")) == "(a >= 1 AND b != 2)"


def test_in_and_not_in() -> None:
    assert show(parse('a IN ("x", 2, -3.5)')) == 'a IN ("x", 2, -3.5)'
    assert show(parse('a not in ("x")')) == 'a NOT IN ("x")'
    assert show(parse('NOT a NOT IN ("x")')) == '(NOT a NOT IN ("x"))'


@pytest.mark.parametrize(
    ("written", "value"),
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
def test_string_escapes(written: str, value: str) -> None:
    node = parse(f"a = {written}")
    assert isinstance(node, Compare)
    assert node.value.value == value


@pytest.mark.parametrize(
    ("written", "value"),
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
def test_numbers(written: str, value: float) -> None:
    node = parse(f"a = {written}")
    assert isinstance(node, Compare)
    assert node.value.value == value
    assert type(node.value.value) is type(value)


@pytest.mark.parametrize(
    "field",
    ["metrics.f1", "tags.team", "lineage.training_dataset.sha256", "tags.cost-center", "_x.y_2"],
)
def test_dotted_fields(field: str) -> None:
    assert show(parse(f'{field} = "v"')) == f'{field} = "v"'


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


ANY = "a field, a value, an operator or a parenthesis"
OPERATOR = "an operator (=, !=, <, <=, >, >=, LIKE, IN)"
ESCAPES = "'\\\"' or '\\\\' after a backslash"

SYNTAX_ERRORS = [
    ("metrics.f1 >= 0.8 AND x >=", "position 26: expected a value after '>=', got end of input"),
    ("a >= AND b = 1", "position 5: expected a value after '>=', got 'AND'"),
    (
        'model = "churn',
        "position 8: expected a closing '\"' for the string that starts here, got end of input",
    ),
    ('model = "a\\n"', f"position 10: expected {ESCAPES}, got 'n'"),
    ('model = "a\\', f"position 10: expected {ESCAPES}, got end of input"),
    ("model = 'x'", f'position 8: expected {ANY}, got "\'"'),
    ("version = .5", f"position 10: expected {ANY}, got '.'"),
    ("model ~ 1", f"position 6: expected {ANY}, got '~'"),
    ('model ! "x"', "position 6: expected '=' after '!', got ' '"),
    ("version = -x", "position 10: expected a digit after '-', got 'x'"),
    ("version = 1.", "position 10: expected a digit after '.', got end of input"),
    ("version = 1e+", "position 10: expected a digit in the exponent, got end of input"),
    ("version = 1e999", "position 10: expected a finite number, got number 1e999"),
    ('model "x"', f"position 6: expected {OPERATOR} after 'model', got string \"x\""),
    ("model", f"position 5: expected {OPERATOR} after 'model', got end of input"),
    ('model NOT = "x"', "position 10: expected IN after 'model NOT', got '='"),
    ('model IN "x"', "position 9: expected '(' after IN, got string \"x\""),
    ("model IN ()", "position 10: expected at least one value in the IN list, got ')'"),
    ('model IN ("a",)', "position 14: expected a value in the IN list, got ')'"),
    ('model IN ("a" "b")', "position 14: expected ',' or ')' in the IN list, got string \"b\""),
    ('model IN ("a"', "position 13: expected ',' or ')' in the IN list, got end of input"),
    ('(model = "a"', "position 12: expected ')' to close the '(' at position 0, got end of input"),
    (
        'model = "a" version = 1',
        "position 12: expected AND, OR or the end of the filter, got 'version'",
    ),
    ('model = "a")', "position 11: expected AND, OR or the end of the filter, got ')'"),
    ('AND model = "a"', "position 0: expected a field, NOT or '(', got 'AND'"),
    ("()", "position 1: expected a field, NOT or '(', got ')'"),
    ('a = "x" OR', "position 10: expected a field, NOT or '(', got end of input"),
    ("1 = 1", "position 0: expected a field, NOT or '(', got number 1"),
    ("model = model", "position 8: expected a value after '=', got 'model'"),
    (
        "(" * 65 + "a = 1" + ")" * 65,
        "position 64: expected at most 64 nested NOTs and parentheses, got '('",
    ),
]


@pytest.mark.parametrize(("text", "detail"), SYNTAX_ERRORS)
def test_syntax_errors_name_the_position(text: str, detail: str) -> None:
    error = error_of(parse, text)
    assert error.message == f"filter: {detail}"
    assert error.violations == (FieldViolation("filter", detail),)


def test_deepest_allowed_nesting_parses() -> None:
    node = parse("(" * 63 + "NOT a = 1" + ")" * 63)
    assert show(node) == "(NOT a = 1)"


VERSION_NAMES = (
    "model, version, status, flavor, author, alias, create_time, lineage.code_revision, "
    "lineage.training_dataset.sha256, tags.<key>, metrics.<name>, training_metrics.<name>, "
    "cv_metrics.<name>"
)
MODEL_NAMES = "name, task, owner_team, state, create_time, tags.<key>"
CHANGE_NAMES = "model, resource, actor, action, time, sequence"
TIME = 'an RFC 3339 timestamp string (e.g. "2025-06-01T00:00:00Z")'
NOT_LIKE = "expected =, !=, <, <=, >, >= or IN after"
V, M, C = version_filter, model_filter, change_filter

FIELD_ERRORS = [
    (
        V,
        'model = "a" AND colour = "red"',
        f"16: expected a field of versions ({VERSION_NAMES}), got 'colour'",
    ),
    (V, 'tags. = "x"', f"0: expected a field of versions ({VERSION_NAMES}), got 'tags.'"),
    (V, "metrics = 1", "0: expected a field of versions"),
    (V, 'metrics.f1 >= "high"', "14: expected a number for 'metrics.f1', got string \"high\""),
    (V, 'version IN (1, "2")', "15: expected a number for 'version', got string \"2\""),
    (V, "model = 3", "8: expected a string for 'model', got number 3"),
    (V, 'tags.team IN ("a", 1.5)', "19: expected a string for 'tags.team', got number 1.5"),
    (V, 'version LIKE "1%"', f"8: {NOT_LIKE} number field 'version', got LIKE"),
    (V, 'cv_metrics.f1 LIKE "0.%"', f"14: {NOT_LIKE} number field 'cv_metrics.f1', got LIKE"),
    (V, 'create_time LIKE "2025%"', f"12: {NOT_LIKE} time field 'create_time', got LIKE"),
    (V, "model LIKE 5", "11: expected a string for 'model', got number 5"),
    (V, 'model LIKE "a\\\\"', "11: expected a character after the last '\\' of the LIKE pattern"),
    (
        V,
        'create_time >= "yesterday"',
        f"15: expected {TIME} for 'create_time', got string \"yesterday\"",
    ),
    (V, 'create_time >= "2025-06-01"', f"15: expected {TIME} for 'create_time'"),
    (V, 'create_time >= "2025-06-01T00:00:00"', f"15: expected {TIME} for 'create_time'"),
    (V, 'create_time >= "2025-02-30T00:00:00Z"', f"15: expected {TIME} for 'create_time'"),
    (
        V,
        "create_time >= 1748736000",
        f"15: expected {TIME} for 'create_time', got number 1748736000",
    ),
    (M, "version = 1", f"0: expected a field of models ({MODEL_NAMES}), got 'version'"),
    (M, "tags.team = 1", "12: expected a string for 'tags.team', got number 1"),
    (C, 'type = "ALIAS_SET"', f"0: expected a field of audit entries ({CHANGE_NAMES}), got 'type'"),
    (C, 'sequence > "5"', "11: expected a number for 'sequence', got string \"5\""),
    (C, 'time < "soon"', f"7: expected {TIME} for 'time', got string \"soon\""),
]


@pytest.mark.parametrize(("call", "text", "detail"), FIELD_ERRORS)
def test_field_errors_name_the_position(call: object, text: str, detail: str) -> None:
    error = error_of(call, text)
    assert error.message.startswith(f"filter: position {detail}")
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


SORTABLE = (
    "model, version, status, flavor, author, create_time, lineage.code_revision, "
    "lineage.training_dataset.sha256, tags.<key>, metrics.<name>, training_metrics.<name>, "
    "cv_metrics.<name>"
)

ORDER_ERRORS = [
    ("model sideways", "6: expected asc, desc, ',' or the end after 'model', got 'sideways'"),
    ("model,", "6: expected a field to order by, got end of input"),
    (", model", "0: expected a field to order by, got ','"),
    ("model desc desc", "11: expected ',' or the end of the order, got 'desc'"),
    ('"model"', '0: expected a field to order by, got string "model"'),
    ("version, alias", f"9: expected a field ({SORTABLE}), got 'alias'"),
    ("colour desc", f"0: expected a field ({SORTABLE}), got 'colour'"),
    ("version, model, version desc", "16: expected each field once, got 'version' again"),
]


@pytest.mark.parametrize(("text", "detail"), ORDER_ERRORS)
def test_order_errors_name_the_position(text: str, detail: str) -> None:
    error = error_of(version_order, text)
    assert error.message.startswith(f"order_by: position {detail}")
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
