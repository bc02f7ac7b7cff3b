"""Counting rows into state: the all-features-at-once numeric path counts exactly what the
one-column path counts, merging two halves equals counting the whole, and a batch's unseen
categories are counted once."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import numpy.typing as npt
import pytest

from keel.client.profile import categorical_profile, numeric_profile
from keel.monitor.v1 import ingest_pb2
from services.monitor.accumulate import Outputs, Rows, count_numeric, count_predictions
from services.monitor.aggregates import State
from services.monitor.convert import column_reference
from services.monitor.counted import count_batch
from services.monitor.numeric_block import COMPARE_EDGES, bin_indices
from services.monitor.reference import FeatureSpec, ModelReference, NumericReference
from tests.support.monitor_batches import column_raw, column_strings
from tests.support.monitor_references import binary_reference

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
Numbers = npt.NDArray[np.int64] | npt.NDArray[np.float64]  # what a state's arrays hold


def assert_close(
    actual: npt.NDArray[np.generic], desired: npt.NDArray[np.generic], name: str
) -> None:
    np.testing.assert_allclose(
        cast(Numbers, actual), cast(Numbers, desired), rtol=1e-12, err_msg=name
    )


def reference() -> ModelReference:
    rng = np.random.default_rng(0)
    columns = {
        "a": column_reference(numeric_profile("a", rng.normal(0, 1, 5000))),
        "b": column_reference(numeric_profile("b", rng.poisson(2, 5000).astype(float))),
        "c": column_reference(numeric_profile("c", rng.lognormal(0, 1, 5000))),
        "prediction": column_reference(numeric_profile("prediction", rng.beta(2, 5, 5000))),
    }
    features = (
        FeatureSpec("a", "numeric", range_min=-2.5, range_max=2.5),
        FeatureSpec("b", "numeric"),
        FeatureSpec("c", "numeric", range_min=0.0),
    )
    return binary_reference(features, columns, 5000)


def current(seed: int, n: int) -> dict[str, tuple[Floats, Mask]]:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.3, 1.5, n)
    a[rng.random(n) < 0.05] = np.nan
    b = rng.poisson(3, n).astype(float)
    c = rng.lognormal(0, 2, n) - 0.5
    c[:3] = [np.inf, -np.inf, 1e9]
    return {
        "a": (a, rng.random(n) < 0.1),
        "b": (b, np.zeros(n, dtype=bool)),
        "c": (c, rng.random(n) < 0.02),
    }


def complete(seed: int, n: int) -> dict[str, tuple[Floats, Mask]]:
    """Finite values, none missing, some outside the allowed and reference ranges."""
    rng = np.random.default_rng(seed)
    none = np.zeros(n, dtype=bool)
    c = rng.lognormal(0, 2, n) - 0.5
    return {
        "a": (rng.normal(0.3, 1.5, n), none),
        "b": (rng.poisson(3, n).astype(np.float64), none),
        "c": (c, none),
    }


@pytest.mark.parametrize("rows", [current, complete], ids=["with-missing", "none-missing"])
def test_the_block_path_counts_exactly_like_one_column_at_a_time(
    rows: Callable[[int, int], dict[str, tuple[Floats, Mask]]],
) -> None:
    ref = reference()
    columns = rows(1, 2000)
    score = np.random.default_rng(3).beta(2, 4, 2000)
    score[::97] = np.nan  # a score the model did not give
    together = State.empty(ref.layout)
    count_predictions(together, ref, Rows(numeric=columns, outputs=Outputs(score=score)))
    apart = State.empty(ref.layout)
    for feature in ref.features:
        values, missing = columns[feature.name]
        column = ref.columns[feature.name]
        assert isinstance(column, NumericReference)
        bounds = (feature.range_min, feature.range_max)
        count_numeric(apart, f"n:{feature.name}", column, values, missing, bounds)
    unbounded = (-np.inf, np.inf)
    output = ref.columns["prediction"]
    count_numeric(apart, "n:prediction", output, score, np.isnan(score), unbounded)
    compared = [name for name in apart.arrays if name.startswith("n:")]
    assert any(name.startswith("n:prediction") for name in compared)
    for name in compared:
        assert_close(together.arrays[name], apart.arrays[name], name)


def test_two_halves_merged_equal_the_whole() -> None:
    ref = reference()
    columns = current(2, 3000)
    whole = State.empty(ref.layout)
    count_predictions(whole, ref, Rows(numeric=columns))
    halves = [State.empty(ref.layout), State.empty(ref.layout)]
    for half, part in zip(halves, (slice(0, 1234), slice(1234, 3000)), strict=True):
        numeric = {k: (v[part], m[part]) for k, (v, m) in columns.items()}
        count_predictions(half, ref, Rows(numeric=numeric))
    halves[0].merge(halves[1])
    for name, array in whole.arrays.items():
        assert_close(halves[0].arrays[name], array, name)
    again = State.from_bytes(halves[0].to_bytes(), ref.layout)
    for name, array in whole.arrays.items():
        assert_close(again.arrays[name], array, name)


def test_a_batch_counts_its_unseen_categories_once() -> None:

    city = column_reference(categorical_profile("city", ["paris"] * 60 + ["lyon"] * 40))
    assert city is not None
    ref = binary_reference((FeatureSpec("city", "categorical"),), {"city": city}, 100)
    values = ["paris", "oslo", "lyon", "oslo", "rome", "paris"]
    batch = ingest_pb2.PredictionBatch(
        row_count=6,
        prediction_ids=column_strings("", [f"p{i}" for i in range(6)]),
        time_unix_nanos=[1_000_000_000_000] * 6,
        features=[column_strings("city", values)],
    )
    batch.outputs.score.CopyFrom(column_raw("", np.full(6, 0.7)))
    counted = count_batch(batch, ref, 300)
    assert counted.error is None and counted.unseen == {"city": {"oslo": 2, "rome": 1}}
    ((state, rows),) = counted.deltas.values()
    assert rows == 6 and state.unseen == {"city": {"oslo": 2, "rome": 1}}
    assert list(state.i8("c:city:counts")) == [2, 1, 3]  # paris, lyon, unseen


@pytest.mark.parametrize("edges_per_row", [1, 9, COMPARE_EDGES, COMPARE_EDGES + 1, 100])
def test_bin_indices_are_searchsorteds_right_side(edges_per_row: int) -> None:
    rng = np.random.default_rng(edges_per_row)
    rows = 4
    edges = np.full((rows, edges_per_row), np.inf)
    for j in range(rows):
        width = edges_per_row if j % 2 == 0 else max(1, edges_per_row // 2)  # padded rows
        edges[j, :width] = np.sort(rng.choice(np.arange(-500, 500) / 10, width, replace=False))
    x = rng.normal(0, 30, (rows, 2000))
    x[:, :50] = edges[:, :1]  # on the lowest edge
    x[:, 50:100] = -1e9  # below every edge
    x[:, 100:150] = 1e9  # above every (finite) edge
    got = bin_indices(edges, x)
    assert got.dtype == np.int64
    for j in range(rows):
        want = np.searchsorted(edges[j], x[j], side="right")
        np.testing.assert_array_equal(got[j], want, err_msg=f"row {j}")
