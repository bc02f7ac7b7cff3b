"""Columns of ingest messages to numpy arrays: every encoding, every malformed case."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keel.common.v1 import schema_pb2
from keel.monitor.v1 import ingest_pb2
from services.common.errors import DomainError, InvalidArgument, ResourceExhausted
from services.monitor.columns import (
    Categorical,
    category_codes,
    check_row_count,
    fixed_bytes,
    identifiers,
    numbers,
    strings,
    timestamps,
    validity,
)
from tests.support.monitor_batches import (
    column_bools,
    column_dictionary,
    column_doubles,
    column_int64s,
    column_length_prefixed,
    column_raw,
    column_strings,
    length_prefixed,
    validity_bitmap,
)

pytestmark = pytest.mark.unit

Builder = Callable[..., ingest_pb2.Column]
STRING_BUILDERS: list[Builder] = [column_strings, column_dictionary, column_length_prefixed]
FEATURE = "batch.features['age']"


def raises(
    message: str, error: type[DomainError] = InvalidArgument
) -> pytest.RaisesExc[DomainError]:
    """An error whose whole message is ``message``."""
    return pytest.raises(error, match=f"^{re.escape(message)}$")


def masks(size: int) -> st.SearchStrategy[npt.NDArray[np.bool_]]:
    return hnp.arrays(np.bool_, size)


# Validity bitmap ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 1000])
def test_validity_round_trips_for_any_row_count(n: int) -> None:
    present = np.random.default_rng(n).random(n) < 0.7
    column = ingest_pb2.Column(validity=validity_bitmap(present))
    assert len(column.validity) == (n + 7) // 8
    decoded = validity(column, n, "age")
    if n == 0:
        assert decoded is None  # an empty bitmap: nothing to say
    else:
        assert decoded is not None
        np.testing.assert_array_equal(decoded, present)


def test_validity_is_lsb_first_and_ignores_padding_bits() -> None:
    column = ingest_pb2.Column(validity=bytes([0b1111_0101, 0b1111_1110]))
    decoded = validity(column, 10, "age")
    assert decoded is not None
    assert decoded.tolist() == [True, False, True, False, True, True, True, True, False, True]


def test_empty_validity_means_every_row_has_a_value() -> None:
    assert validity(ingest_pb2.Column(), 1000, "age") is None


@pytest.mark.parametrize(("n", "size"), [(9, 1), (9, 3), (8, 2), (0, 1)])
def test_validity_of_the_wrong_length_names_the_column(n: int, size: int) -> None:
    column = ingest_pb2.Column(validity=b"\xff" * size)
    expected = (n + 7) // 8
    with raises(
        f"column 'age': expected a validity bitmap of {expected} bytes for {n} rows, got {size}"
    ) as info:
        validity(column, n, "age")
    assert info.value.violations[0].field == f"{FEATURE}.validity"


# Numbers --------------------------------------------------------------------------------

FLOAT64, STRING, BOOL = (
    schema_pb2.DATA_TYPE_FLOAT64,
    schema_pb2.DATA_TYPE_STRING,
    schema_pb2.DATA_TYPE_BOOL,
)
UNKNOWN = schema_pb2.DataType.ValueType(42)

NUMERIC_ENCODINGS: dict[str, Callable[[npt.NDArray[np.float64]], npt.NDArray[np.generic]]] = {
    "raw float32": lambda v: v.astype(np.float32),
    "raw float64": lambda v: v,
    "raw int32": lambda v: np.nan_to_num(v).astype(np.int32),
    "raw int64": lambda v: np.nan_to_num(v).astype(np.int64),
    "raw bool": lambda v: np.nan_to_num(v) > 0,
}


@pytest.mark.parametrize("encoding", sorted(NUMERIC_ENCODINGS))
@given(data=st.data())
def test_raw_numbers_round_trip(encoding: str, data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 40))
    floats = st.floats(-1e6, 1e6, width=32) | st.just(float("nan"))
    values = NUMERIC_ENCODINGS[encoding](data.draw(hnp.arrays(np.float64, n, elements=floats)))
    missing = data.draw(st.none() | masks(n))
    decoded, decoded_missing = numbers(column_raw("age", values, missing), n, "age")
    assert decoded.dtype == np.float64
    expected = values.astype(np.float64)
    np.testing.assert_array_equal(decoded, expected)  # NaN == NaN here
    should_miss = np.isnan(expected) | (False if missing is None else missing)
    np.testing.assert_array_equal(decoded_missing, should_miss)


@pytest.mark.parametrize("build", [column_doubles, column_int64s, column_bools])
def test_packed_numbers_round_trip(build: Builder) -> None:
    rng = np.random.default_rng(7)
    normal = rng.normal(0, 100, 1000)
    normal[rng.random(1000) < 0.1] = np.nan
    missing = rng.random(1000) < 0.2
    values: npt.NDArray[np.generic] = normal
    if build is column_int64s:
        values = np.nan_to_num(normal).astype(np.int64)
    elif build is column_bools:
        values = np.nan_to_num(normal) > 0
    decoded, decoded_missing = numbers(build("age", values, missing), 1000, "age")
    np.testing.assert_array_equal(decoded, values.astype(np.float64))
    np.testing.assert_array_equal(decoded_missing, missing | np.isnan(decoded))


def test_nan_counts_as_missing_without_a_bitmap() -> None:
    column = column_raw("age", np.array([1.0, np.nan, 3.0, np.nan], np.float32))
    _, missing = numbers(column, 4, "age")
    assert missing.tolist() == [False, True, False, True]


def test_raw_float64_is_a_view_of_the_message_bytes() -> None:
    column = column_raw("age", np.random.default_rng(1).random(1000))
    values, _ = numbers(column, 1000, "age")
    assert isinstance(values.base, bytes)  # np.frombuffer, astype(copy=False): no copy
    assert not values.flags.writeable


def test_raw_float32_is_converted_with_exactly_one_copy() -> None:
    data = np.random.default_rng(2).random(1000).astype(np.float32)
    column = column_raw("age", data)
    values, _ = numbers(column, 1000, "age")
    assert values.dtype == np.float64 and values.shape == (1000,)
    assert values.flags.owndata and values.base is None  # one astype, no intermediate
    source = np.frombuffer(column.raw.data, np.float32)
    assert not np.shares_memory(values, source)
    np.testing.assert_array_equal(values, data.astype(np.float64))


def test_zero_rows_need_no_encoding() -> None:
    values, missing = numbers(ingest_pb2.Column(), 0, "age")
    assert values.shape == (0,) and missing.shape == (0,)


MALFORMED_NUMBERS: list[tuple[ingest_pb2.Column, str, str]] = [
    (column_doubles("age", np.zeros(999)), "expected 1000 values, got 999", ""),
    (column_int64s("age", np.zeros(1001)), "expected 1000 values, got 1001", ""),
    (column_bools("age", np.zeros(3, bool)), "expected 1000 values, got 3", ""),
    (
        column_raw("age", np.zeros(999, np.float32)),
        "expected 4000 bytes (1000 FLOAT32 values), got 3996",
        ".raw.data",
    ),
    (
        ingest_pb2.Column(raw=ingest_pb2.RawArray(data=b"\0" * 8001, dtype=FLOAT64)),
        "expected 8000 bytes (1000 FLOAT64 values), got 8001",
        ".raw.data",
    ),
    (
        ingest_pb2.Column(raw=ingest_pb2.RawArray(data=b"\0" * 1000, dtype=STRING)),
        "expected raw FLOAT32, FLOAT64, INT32, INT64 or BOOL, got raw STRING",
        ".raw.dtype",
    ),
    (
        ingest_pb2.Column(raw=ingest_pb2.RawArray(data=b"\0" * 1000)),
        "expected raw FLOAT32, FLOAT64, INT32, INT64 or BOOL, got raw UNSPECIFIED",
        ".raw.dtype",
    ),
    (
        ingest_pb2.Column(raw=ingest_pb2.RawArray(data=b"\0" * 1000, dtype=UNKNOWN)),
        "expected raw FLOAT32, FLOAT64, INT32, INT64 or BOOL, got raw 42",
        ".raw.dtype",
    ),
    (
        ingest_pb2.Column(
            raw=ingest_pb2.RawArray(data=b"\1" * 7 + b"\2" + b"\0" * 992, dtype=BOOL)
        ),
        "expected BOOL bytes 0 or 1, got 2 at row 7",
        "",
    ),
    (column_strings("age", ["1"] * 1000), "expected numbers, got strings", ""),
    (column_dictionary("age", ["1"] * 1000), "expected numbers, got dictionary", ""),
    (column_length_prefixed("age", ["1"] * 1000), "expected numbers, got length_prefixed", ""),
    (ingest_pb2.Column(), "expected 1000 values as numbers, got no values", ""),
    (
        ingest_pb2.Column(
            doubles=ingest_pb2.DoubleArray(values=[0.0] * 1000), validity=b"\1" * 124
        ),
        "expected a validity bitmap of 125 bytes for 1000 rows, got 124",
        ".validity",
    ),
]


@pytest.mark.parametrize(("column", "detail", "part"), MALFORMED_NUMBERS)
def test_malformed_numbers_are_invalid(column: ingest_pb2.Column, detail: str, part: str) -> None:
    with raises(f"column 'age': {detail}") as info:
        numbers(column, 1000, "age")
    assert info.value.violations[0].field == FEATURE + part


def test_the_caller_names_the_field() -> None:
    with raises("column 'score': expected 2 values, got 1") as info:
        numbers(column_doubles("", [0.5]), 2, "score", field="batch.outputs.score")
    assert info.value.violations[0].field == "batch.outputs.score"


# Strings --------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.sampled_from(["a", "b", "é", "\0", "日", "🙂"]), max_size=4)


def rows_of(categorical: Categorical) -> list[str | None]:
    return [
        None if m else categorical.dictionary[c]
        for c, m in zip(categorical.codes.tolist(), categorical.missing.tolist(), strict=True)
    ]


def expected_rows(values: Sequence[str], missing: npt.NDArray[np.bool_] | None) -> list[str | None]:
    gone = [False] * len(values) if missing is None else missing.tolist()
    return [None if m or v == "" else v for v, m in zip(values, gone, strict=True)]


@pytest.mark.parametrize("build", STRING_BUILDERS)
@given(data=st.data())
def test_strings_round_trip(build: Builder, data: st.DataObject) -> None:
    values = data.draw(st.lists(TEXT, max_size=30))
    missing = data.draw(st.none() | masks(len(values)))
    decoded = strings(build("city", values, missing), len(values), "city")
    assert rows_of(decoded) == expected_rows(values, missing)
    assert decoded.dictionary == sorted(set(decoded.dictionary))
    assert "" not in decoded.dictionary
    assert decoded.codes.dtype == np.int32
    assert (decoded.codes[decoded.missing] == -1).all()


# Two UTF-8 bytes each: values made of k of them all have 2k bytes, ASCII or not.
TWO_BYTES = st.sampled_from(["ab", "zz", "é", "\0a", "a\0", "ß"])


@given(tokens=st.integers(0, 3), data=st.data())
def test_length_prefixed_values_of_one_width_round_trip(tokens: int, data: st.DataObject) -> None:
    text = st.lists(TWO_BYTES, min_size=tokens, max_size=tokens).map("".join)
    values = data.draw(st.lists(text, min_size=1, max_size=30))
    decoded = strings(column_length_prefixed("city", values), len(values), "city")
    assert rows_of(decoded) == expected_rows(values, None)


def test_every_string_encoding_decodes_alike() -> None:
    rng = np.random.default_rng(3)
    pool = ["", "paris", "lyon", "saint-étienne", "nîmes", "brest"]
    for values in (
        [pool[i] for i in rng.integers(0, len(pool), 1000)],  # values of many widths
        [uuid.UUID(int=int(i)).hex for i in rng.integers(0, 50, 1000)],  # all one width
    ):
        missing = rng.random(1000) < 0.1
        decoded = [strings(b("city", values, missing), 1000, "city") for b in STRING_BUILDERS]
        for other in decoded[1:]:
            assert other.dictionary == decoded[0].dictionary
            np.testing.assert_array_equal(other.codes, decoded[0].codes)
            np.testing.assert_array_equal(other.missing, decoded[0].missing)
        assert rows_of(decoded[0]) == expected_rows(values, missing)


def test_a_dictionary_may_repeat_values_and_hold_the_empty_string() -> None:
    codes = np.array([0, 1, 2, 3, 2], "<i4").tobytes()
    sent = ingest_pb2.DictionaryArray(dictionary=["b", "a", "b", ""], codes=codes)
    decoded = strings(ingest_pb2.Column(dictionary=sent), 5, "city")
    assert decoded.dictionary == ["a", "b"]
    assert rows_of(decoded) == ["b", "a", "b", None, "b"]


def test_codes_of_missing_rows_are_ignored() -> None:
    codes = np.array([0, 99, -5], "<i4").tobytes()
    column = ingest_pb2.Column(
        dictionary=ingest_pb2.DictionaryArray(dictionary=["x"], codes=codes),
        validity=validity_bitmap([True, False, False]),
    )
    assert rows_of(strings(column, 3, "city")) == ["x", None, None]


def lp(data: bytes) -> ingest_pb2.Column:
    return ingest_pb2.Column(length_prefixed=ingest_pb2.LengthPrefixedArray(data=data))


def dictionary_codes(codes: list[int], dictionary: Sequence[str] = ("a", "b")) -> ingest_pb2.Column:
    sent = ingest_pb2.DictionaryArray(dictionary=dictionary, codes=np.array(codes, "<i4").tobytes())
    return ingest_pb2.Column(dictionary=sent)


MALFORMED_STRINGS: list[tuple[ingest_pb2.Column, int, str, str]] = [
    (column_strings("c", ["a", "b"]), 3, "expected 3 values, got 2", ""),
    (
        lp(length_prefixed(["ab", "c"]) + b"!"),
        2,
        "expected 2 length-prefixed values in 11 bytes, got 12 bytes",
        ".length_prefixed.data",
    ),
    (
        lp(length_prefixed(["ab"]) + b"\1\0"),
        2,
        "expected 2 length-prefixed values, got 1 (2 bytes left)",
        ".length_prefixed.data",
    ),
    (
        lp(length_prefixed(["ab", "cde"])[:-1]),
        2,
        "expected 3 bytes for the value at row 1, got 2",
        ".length_prefixed.data",
    ),
    (
        lp(b""),
        1,
        "expected 1 length-prefixed values, got 0 (0 bytes left)",
        ".length_prefixed.data",
    ),
    (
        lp(length_prefixed([b"ok", b"\xff\xfe", b"\xc3("])),  # one width: vectorised first
        3,
        "expected UTF-8, got invalid byte 0xff at row 1",
        ".length_prefixed.data",
    ),
    (
        lp(length_prefixed([b"o", b"k", b"ab\xc3"])),  # widths differ: the loop
        3,
        "expected UTF-8, got invalid byte 0xc3 at row 2",
        ".length_prefixed.data",
    ),
    (
        dictionary_codes([0, 2, 1]),
        3,
        "expected codes in [0, 2), got 2 at row 1",
        ".dictionary.codes",
    ),
    (
        dictionary_codes([0, -1]),
        2,
        "expected codes in [0, 2), got -1 at row 1",
        ".dictionary.codes",
    ),
    (
        dictionary_codes([0, 1]),
        3,
        "expected 12 bytes of codes (3 int32 values), got 8",
        ".dictionary.codes",
    ),
    (column_doubles("c", [1.0]), 1, "expected strings, got doubles", ""),
    (column_raw("c", np.zeros(1, np.float32)), 1, "expected strings, got raw FLOAT32", ""),
    (column_int64s("c", [1]), 1, "expected strings, got int64s", ""),
    (ingest_pb2.Column(), 4, "expected 4 values as strings, got no values", ""),
]


@pytest.mark.parametrize(("column", "n", "detail", "part"), MALFORMED_STRINGS)
def test_malformed_strings_are_invalid(
    column: ingest_pb2.Column, n: int, detail: str, part: str
) -> None:
    with raises(f"column 'city': {detail}") as info:
        strings(column, n, "city")
    assert info.value.violations[0].field == "batch.features['city']" + part


# Category codes -------------------------------------------------------------------------

CATEGORIES = ["red", "green", "blue"]


@pytest.mark.parametrize("build", STRING_BUILDERS)
@given(data=st.data())
def test_category_codes_round_trip(build: Builder, data: st.DataObject) -> None:
    pool = st.sampled_from(["red", "green", "blue", "mauve", "", "teal", "🙂"])
    values = data.draw(st.lists(pool, max_size=40))
    missing = data.draw(st.none() | masks(len(values)))
    codes, got_missing, unseen = category_codes(
        build("colour", values, missing), len(values), "colour", CATEGORIES
    )
    rows = expected_rows(values, missing)
    assert got_missing.tolist() == [v is None for v in rows]
    index = {c: i for i, c in enumerate(CATEGORIES)}
    assert codes.tolist() == [-1 if v is None else index.get(v, 3) for v in rows]
    assert unseen == Counter(v for v in rows if v is not None and v not in index)


def test_unseen_values_are_counted_through_a_repeating_dictionary() -> None:
    codes = np.array([0, 1, 2, 3, 0, 2, 4], "<i4").tobytes()
    sent = ingest_pb2.DictionaryArray(dictionary=["mauve", "red", "mauve", "", "teal"], codes=codes)
    got, missing, unseen = category_codes(
        ingest_pb2.Column(dictionary=sent), 7, "colour", CATEGORIES
    )
    assert got.tolist() == [3, 0, 3, -1, 3, 3, 3]
    assert missing.tolist() == [False, False, False, True, False, False, False]
    assert unseen == {"mauve": 4, "teal": 1}


def test_a_dictionary_in_category_order_maps_as_is() -> None:
    column = column_dictionary("colour", ["blue", "red", "blue"], dictionary=CATEGORIES)
    codes, _, unseen = category_codes(column, 3, "colour", CATEGORIES)
    assert codes.tolist() == [2, 0, 2] and unseen == {}


def test_without_categories_every_value_is_unseen() -> None:
    codes, _, unseen = category_codes(column_strings("c", ["a", "b", "a", ""]), 4, "c", [])
    assert codes.tolist() == [0, 0, 0, -1] and unseen == {"a": 2, "b": 1}


@pytest.mark.parametrize(
    "build",
    [
        column_int64s,
        lambda name, v, missing=None: column_raw(name, np.asarray(v, np.int32), missing),
        lambda name, v, missing=None: column_raw(name, np.asarray(v, np.int64), missing),
    ],
)
def test_integer_category_codes(build: Builder) -> None:
    missing = np.array([False, True, False, False, True])
    column = build("colour", [2, 7, 0, 1, -3], missing)  # out-of-range codes on missing rows
    codes, got_missing, unseen = category_codes(column, 5, "colour", CATEGORIES)
    assert codes.dtype == np.int32
    assert codes.tolist() == [2, -1, 0, 1, -1]
    assert got_missing.tolist() == missing.tolist() and unseen == {}


@pytest.mark.parametrize(
    ("column", "categories", "detail"),
    [
        (
            column_int64s("c", [0, 3]),
            CATEGORIES,
            "expected category codes in [0, 3), got 3 at row 1",
        ),
        (
            column_raw("c", np.array([0, -1], np.int32)),
            CATEGORIES,
            "expected category codes in [0, 3), got -1 at row 1",
        ),
        (
            column_int64s("c", [-1, 0]),
            [],
            "expected category codes none (the feature lists no categories), got -1 at row 0",
        ),
        (column_int64s("c", [0]), CATEGORIES, "expected 2 values, got 1"),
        (
            column_doubles("c", [0.0, 1.0]),
            CATEGORIES,
            "expected strings or integer category codes, got doubles",
        ),
        (
            column_raw("c", np.zeros(2, np.float64)),
            CATEGORIES,
            "expected strings or integer category codes, got raw FLOAT64",
        ),
        (
            column_bools("c", [True, False]),
            CATEGORIES,
            "expected strings or integer category codes, got bools",
        ),
    ],
)
def test_malformed_category_codes_are_invalid(
    column: ingest_pb2.Column, categories: list[str], detail: str
) -> None:
    with raises(f"column 'colour': {detail}"):
        category_codes(column, 2, "colour", categories)


# Identifiers ----------------------------------------------------------------------------


@pytest.mark.parametrize("build", STRING_BUILDERS)
@pytest.mark.parametrize(
    "ids",
    [
        [str(uuid.uuid4()) for _ in range(1000)] + ["é" * 64, "x" * 128, "1"],
        [str(uuid.uuid4()) for _ in range(1000)],  # one width, ASCII: decoded in one pass
        [f"é{i:03d}" for i in range(200)],  # one width, not ASCII
        ["b", "a", "b"],  # one width, repeated (a batch refuses that later, not here)
    ],
    ids=["mixed", "one-width", "one-width-utf8", "repeated"],
)
def test_identifiers_round_trip(build: Builder, ids: list[str]) -> None:
    assert identifiers(build("", ids), len(ids), "prediction_ids") == ids


@pytest.mark.parametrize("build", STRING_BUILDERS)
@pytest.mark.parametrize(("size", "got"), [(129, "129 bytes at row 0"), (1, None)])
def test_identifiers_of_one_width_are_checked_for_size(
    build: Builder, size: int, got: str | None
) -> None:
    ids = [chr(ord("a") + i) * size for i in range(3)]
    if got is None:
        assert identifiers(build("", ids), 3, "prediction_ids") == ids
        return
    with raises(f"column 'prediction_ids': expected an id of 1 to 128 bytes, got {got}"):
        identifiers(build("", ids), 3, "prediction_ids")


@pytest.mark.parametrize("build", STRING_BUILDERS)
@pytest.mark.parametrize(
    ("ids", "missing", "got"),
    [
        (["a", "b", "", "d"], None, "none at row 2"),
        (["a", "b", "c", "d"], [False, False, False, True], "none at row 3"),
        (["a", "x" * 129, "c", "y" * 200], None, "129 bytes at row 1"),
        (["a", "b", "é" * 65, "d"], None, "130 bytes at row 2"),
    ],
)
def test_bad_identifiers_name_the_first_offending_row(
    build: Builder, ids: list[str], missing: list[bool] | None, got: str
) -> None:
    expected = f"column 'prediction_ids': expected an id of 1 to 128 bytes, got {got}"
    with raises(expected) as info:
        identifiers(build("", ids, missing), 4, "prediction_ids", field="batch.prediction_ids")
    assert info.value.violations[0].field == "batch.prediction_ids"


@pytest.mark.parametrize(
    ("column", "got"),
    [
        (column_int64s("", [1, 2]), "int64s"),
        (column_raw("", np.array([1, 2], np.int64)), "raw INT64"),
        (column_doubles("", [1, 2]), "doubles"),
    ],
)
def test_numeric_identifiers_are_invalid(column: ingest_pb2.Column, got: str) -> None:
    with raises(f"column 'prediction_ids': expected strings, got {got}"):
        identifiers(column, 2, "prediction_ids")


def test_no_rows_no_identifiers() -> None:
    assert identifiers(ingest_pb2.Column(), 0, "prediction_ids") == []


# Per-row buffers and row counts --------------------------------------------------------


@pytest.mark.parametrize(("name", "width"), [("trace_ids", 16), ("span_ids", 8)])
def test_fixed_bytes(name: str, width: int) -> None:
    data = np.random.default_rng(width).integers(0, 256, (1000, width), dtype=np.uint8)
    view = fixed_bytes(data.tobytes(), 1000, width, name)
    assert view is not None and view.shape == (1000, width)
    np.testing.assert_array_equal(view, data)
    assert fixed_bytes(b"", 1000, width, name) is None
    with raises(f"{name}: expected {1000 * width} bytes ({width} per row for 1000 rows), got 1"):
        fixed_bytes(b"\0", 1000, width, name)


def test_timestamps_from_a_batch() -> None:
    times = np.arange(1000, dtype=np.int64) + 1_760_000_000_000_000_000
    batch = ingest_pb2.PredictionBatch(time_unix_nanos=times.tolist())
    batch = ingest_pb2.PredictionBatch.FromString(batch.SerializeToString())
    decoded = timestamps(batch.time_unix_nanos, 1000)
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, times)
    with raises("time_unix_nanos: expected 1001 values, got 1000") as info:
        timestamps(batch.time_unix_nanos, 1001)
    assert info.value.violations[0].field == "batch.time_unix_nanos"


def test_row_count_limits() -> None:
    check_row_count(0, 5000)
    check_row_count(5000, 5000)
    with raises("row_count: expected 0 or more rows, got -1"):
        check_row_count(-1, 5000)
    with raises("row_count: expected at most 5000 rows, got 5001", ResourceExhausted) as info:
        check_row_count(5001, 5000)
    assert not isinstance(info.value, InvalidArgument)


# Speed (printed, not asserted) ---------------------------------------------------------


def test_decoding_speed_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(5)
    columns = [column_raw(f"f{i}", rng.random(1000).astype(np.float32)) for i in range(13)]
    rounds = 1000
    start = time.perf_counter()
    for _ in range(rounds):
        decoded = [numbers(column, 1000, column.name)[0] for column in columns]
    per_batch = (time.perf_counter() - start) / rounds * 1e6
    with capsys.disabled():
        print(
            f"\n13 raw FLOAT32 columns x 1000 rows: {per_batch:.1f} us per batch, "
            f"{per_batch / 13:.2f} us per column"
        )
    sent = np.frombuffer(columns[-1].raw.data, np.float32)
    np.testing.assert_array_equal(decoded[-1], sent.astype(np.float64))
