"""The monitor's C loops (``services/monitor/_kernels.c``) against what they replace: the
numeric block counts exactly what numpy counts one column at a time, on the values where
rounding or comparison could differ (grid cell edges, bin edges, infinities, NaN, values
far outside the grid, more edges than the compared path takes); the ids come back as the
JSON that ``json.dumps`` makes of them, or not at all when they are not plain."""

from __future__ import annotations

import json
from typing import cast

import numpy as np
import numpy.typing as npt
import pytest

from keel.client.profile import bin_counts, numeric_profile
from keel.monitor.v1 import ingest_pb2
from services.common.errors import InvalidArgument
from services.monitor._kernels import count_numeric, plain_ids_json
from services.monitor.accumulate import count_numeric as count_one_column
from services.monitor.aggregates import State
from services.monitor.batches import prediction_ids_json
from services.monitor.convert import column_reference
from services.monitor.numeric_block import CELLS, count_block
from services.monitor.reference import (
    GRID_CELLS,
    CategoricalReference,
    FeatureSpec,
    ModelReference,
    NumericReference,
)
from tests.support.monitor_batches import column_length_prefixed, column_strings, length_prefixed
from tests.support.monitor_references import binary_reference

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


def numeric(name: str, values: Floats, edges: int = 0) -> NumericReference:
    """The reference of ``values``; with ``edges``, that many bins' edges instead of the
    deciles (a profile may declare its own)."""
    profile = numeric_profile(name, values)
    if edges:
        cut = np.quantile(values, np.linspace(0, 1, edges + 2)[1:-1])
        del profile.numeric.bin_edges[:], profile.numeric.bin_counts[:]
        profile.numeric.bin_edges.extend(cut.tolist())
        profile.numeric.bin_counts.extend(bin_counts(cut, values).tolist())
    column = column_reference(profile)
    assert isinstance(column, NumericReference)
    return column


def model_reference(edges: int) -> ModelReference:
    """Three features with different edge counts (so the block pads them); ``c`` with
    ``edges`` bins' edges (more than 32: the block searches, fewer: it compares)."""
    rng = np.random.default_rng(7)
    columns: dict[str, NumericReference | CategoricalReference] = {
        "a": numeric("a", rng.normal(0, 1, 5000)),
        "b": numeric("b", rng.integers(0, 3, 5000).astype(float)),
        "c": numeric("c", rng.normal(10, 3, 5000), edges=edges),
    }
    features = (
        FeatureSpec("a", "numeric", range_min=-2.0, range_max=2.0),
        FeatureSpec("b", "numeric"),
        FeatureSpec("c", "numeric", range_min=0.0),
    )
    return binary_reference(features, columns, 5000)


def awkward(column: NumericReference, rng: np.random.Generator) -> Floats:
    """Random values, then every grid cell edge and bin edge exactly, the reference's
    extremes, infinities, NaN, and values far outside the grid."""
    lo, hi = column.grid()
    cell_edges = lo + np.arange(-2, GRID_CELLS + 3) * ((hi - lo) / GRID_CELLS)
    special = [np.inf, -np.inf, np.nan, 1e150, -1e9, column.minimum, column.maximum, 0.0]
    return np.concatenate(
        [
            rng.normal((lo + hi) / 2, (hi - lo) / 3, 3000),
            cell_edges,
            np.nextafter(cell_edges, np.inf),
            np.nextafter(cell_edges, -np.inf),
            column.edges,
            np.nextafter(column.edges, -np.inf),
            special,
        ]
    )


@pytest.mark.parametrize("edges", [20, 60], ids=["compared", "searched"])
@pytest.mark.parametrize("present", [("a", "b", "c"), ("c", "a")], ids=["all", "some"])
def test_the_c_block_counts_exactly_like_numpy_one_column_at_a_time(
    present: tuple[str, ...], edges: int
) -> None:
    ref = model_reference(edges)
    assert ref.block.edges.shape[1] == edges
    rng = np.random.default_rng(11)
    columns: dict[str, tuple[Floats, Mask]] = {}
    for name in present:
        column = ref.columns[name]
        assert isinstance(column, NumericReference)
        values = awkward(column, rng)
        columns[name] = (values, rng.random(len(values)) < 0.05)
    rows = {len(v) for v, _ in columns.values()}
    if len(rows) > 1:  # the block takes columns of one length
        size = min(rows)
        columns = {k: (v[:size], m[:size]) for k, (v, m) in columns.items()}
    together = State.empty(ref.layout)
    assert count_block(together, ref.block, columns) == set(present)
    apart = State.empty(ref.layout)
    for feature in ref.features:
        if feature.name in columns:
            column = ref.columns[feature.name]
            bounds = (feature.range_min, feature.range_max)
            count_one_column(apart, f"n:{feature.name}", column, *columns[feature.name], bounds)
    for name, array in apart.arrays.items():
        if name.startswith("n:"):
            got = together.arrays[name]
            if array.dtype == np.int64:
                np.testing.assert_array_equal(got, array, err_msg=name)
            else:  # sums: the same values added in another order
                np.testing.assert_allclose(cast(Floats, got), cast(Floats, array), rtol=1e-12)
    counts = together.i8("n:a:count")
    assert counts[0] == len(columns["a"][0]) and counts[1] > 0 and counts[2] > 0


def test_the_kernel_refuses_arguments_that_do_not_fit() -> None:
    x, missing = np.zeros(10), np.zeros(10, dtype=bool)
    params = np.zeros((1, 6 + 3))
    ints, floats = np.zeros((1, 4 + CELLS + 3 + 2), np.int64), np.zeros((1, 4))
    count_numeric([x], [missing], params, 3, GRID_CELLS, ints, floats)  # fits
    with pytest.raises(ValueError, match="sizes do not fit"):
        count_numeric([x], [missing], params, 4, GRID_CELLS, ints, floats)
    with pytest.raises(ValueError, match=r"missing\[0\]: expected 10 bytes, got 9"):
        count_numeric([x], [missing[:9]], params, 3, GRID_CELLS, ints, floats)
    with pytest.raises(ValueError, match=r"columns\[1\]: expected 80 bytes"):
        count_numeric([x, x[:5]], [None, None], np.zeros((2, 9)), 3, GRID_CELLS, *two(ints))
    read_only = floats.tobytes()  # the results must be writable
    with pytest.raises(TypeError):
        count_numeric([x], [missing], params, 3, GRID_CELLS, ints, read_only)  # type: ignore[arg-type]


def two(ints: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], Floats]:
    return np.zeros((2, ints.shape[1]), np.int64), np.zeros((2, 4))


def ids_column(ids: list[str]) -> ingest_pb2.Column:
    return column_length_prefixed("", ids)


@pytest.mark.parametrize(
    "ids",
    [
        [f"pred-{i:06d}" for i in range(1000)],  # increasing
        [f"{i:032x}"[::-1] for i in range(1, 500)],  # one width, unsorted
        ["x"],
        ["a" * 128, "b" * 128],
        ["~ !#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}"],  # every printable kind but " and \
    ],
    ids=["increasing", "unsorted", "one", "longest", "punctuation"],
)
def test_plain_ids_come_back_as_the_json_of_their_list(ids: list[str]) -> None:
    got = plain_ids_json(length_prefixed(ids), len(ids), 128)
    assert got is not None and json.loads(got) == ids
    assert got == json.dumps(ids, separators=(",", ":"))


@pytest.mark.parametrize(
    "ids",
    [
        ["a", "bb"],  # two widths
        ["a" * 129],  # too long
        ["ab", 'a"'],
        ["ab", "a\\"],
        ["ab", "a\n"],
        ["ab", "a\x7f"],
        ["ab", "aé"],
        ["ab", "cd", "ab"],  # repeated, unsorted
        ["ab", "ab"],  # repeated, adjacent
    ],
    ids=["widths", "long", "quote", "backslash", "newline", "delete", "utf8", "dup", "dup-next"],
)
def test_ids_that_are_not_plain_are_left_to_the_general_path(ids: list[str]) -> None:
    data = length_prefixed(ids)
    assert plain_ids_json(data, len(ids), 128) is None
    if len(set(ids)) == len(ids) and all(1 <= len(i.encode()) <= 128 for i in ids):
        assert json.loads(prediction_ids_json(ids_column(ids), len(ids))) == ids


def test_a_length_prefix_that_lies_is_not_plain() -> None:
    data = bytearray(length_prefixed(["abc", "abd"]))
    data[7 + 0] = 4  # the second value's length says 4; the width says 3
    assert plain_ids_json(bytes(data), 2, 128) is None
    assert plain_ids_json(b"\x01\x00\x00\x00a\x01\x00\x00", 2, 128) is None  # 9 bytes, 2 rows
    assert plain_ids_json(b"", 0, 128) is None


@pytest.mark.parametrize("layout", ["length_prefixed", "strings"])
def test_a_repeated_id_is_refused_whichever_path_reads_it(layout: str) -> None:
    ids = [f"p{i:03d}" for i in range(50)] + ["p007"]
    column = ids_column(ids) if layout == "length_prefixed" else column_strings("", ids)
    with pytest.raises(InvalidArgument, match="expected unique ids in a batch"):
        prediction_ids_json(column, len(ids))


def test_ids_that_are_not_plain_still_decode_to_the_same_json() -> None:
    ids = ["réf-1", 'a"b', "c\\d", "e/10", "e/9"]
    assert json.loads(prediction_ids_json(ids_column(ids), len(ids))) == ids
    assert json.loads(prediction_ids_json(column_strings("", ids), len(ids))) == ids
