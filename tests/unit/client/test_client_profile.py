"""Reference profiles: the binning rule of keel/common/v1/profile.proto, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from keel.client._model import Predictions
from keel.client._tabular import columns
from keel.client.profile import (
    QUANTILE_LEVELS,
    bin_counts,
    bin_edges,
    categorical_profile,
    numeric_profile,
    reference_profile,
)
from keel.common.v1 import schema_pb2


def documented_bin(edges: list[float], x: float) -> int:
    """The proto's rule, written out: bin 0 is (-inf, e1), bin i is [e_i, e_{i+1}),
    the last is [e_{B-1}, +inf)."""
    if x < edges[0]:
        return 0
    for i in range(1, len(edges)):
        if edges[i - 1] <= x < edges[i]:
            return i
    assert x >= edges[-1]
    return len(edges)


def test_values_on_an_edge_fall_in_the_bin_that_starts_there() -> None:
    counts = bin_counts([1.0, 2.0, 3.0], [0.5, 1.0, 1.5, 2.0, 3.0, 3.5, np.nan])
    assert counts.tolist() == [1, 2, 1, 2]


def test_counts_follow_the_documented_rule_on_random_data_and_its_own_edges() -> None:
    rng = np.random.default_rng(7)
    values = np.round(rng.normal(size=500), 1)  # many ties, many values equal to edges
    edges = bin_edges(values)
    probe = np.concatenate([values, edges, edges - 1e-9, [-np.inf, np.inf]])
    expected = np.zeros(len(edges) + 1, dtype=int)
    for x in probe:
        expected[documented_bin(edges.tolist(), float(x))] += 1
    assert bin_counts(edges, probe).tolist() == expected.tolist()


def test_edges_are_the_deciles_of_the_reference() -> None:
    values = np.arange(1.0, 11.0)
    edges = bin_edges(values)
    assert edges.tolist() == pytest.approx([1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1])
    assert numeric_profile("x", values).numeric.bin_counts == [1] * 10


def test_few_distinct_values_give_fewer_strictly_increasing_edges() -> None:
    values = np.array([0.0] * 5 + [1.0] * 5)
    profile = numeric_profile("x", values).numeric
    assert list(profile.bin_edges) == [0.0, 0.5, 1.0]
    assert list(profile.bin_counts) == [0, 5, 0, 5]
    constant = numeric_profile("c", np.full(8, 3.0)).numeric
    assert list(constant.bin_edges) == [3.0]
    assert list(constant.bin_counts) == [0, 8]


def test_nan_is_missing_and_left_out_of_bins_and_statistics() -> None:
    values = np.array([1.0, np.nan, 2.0, 3.0, np.nan, 4.0])
    profile = numeric_profile("x", values)
    assert profile.kind == schema_pb2.FEATURE_KIND_NUMERIC
    assert profile.missing_count == 2
    assert sum(profile.numeric.bin_counts) == 4
    assert len(profile.numeric.bin_counts) == len(profile.numeric.bin_edges) + 1
    assert profile.numeric.min == 1.0
    assert profile.numeric.max == 4.0
    assert profile.numeric.mean == pytest.approx(2.5)
    assert profile.numeric.stddev == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]))


def test_quantiles_at_101_levels() -> None:
    values = np.random.default_rng(1).uniform(size=1000)
    quantiles = numeric_profile("x", values).numeric.quantiles
    assert [q.level for q in quantiles] == [i / 100 for i in range(101)]
    assert len(QUANTILE_LEVELS) == 101
    assert quantiles[0].value == values.min()
    assert quantiles[100].value == values.max()
    assert quantiles[50].value == pytest.approx(np.median(values))


def test_an_all_missing_column_has_one_empty_bin() -> None:
    profile = numeric_profile("x", np.full(3, np.nan))
    assert profile.missing_count == 3
    assert list(profile.numeric.bin_edges) == []
    assert list(profile.numeric.bin_counts) == [0]


def test_categories_are_counted_most_frequent_first() -> None:
    profile = categorical_profile("colour", ["red", "blue", None, "red", "green", "blue", "red"])
    assert profile.kind == schema_pb2.FEATURE_KIND_CATEGORICAL
    assert profile.missing_count == 1
    assert [(c.value, c.count) for c in profile.categorical.categories] == [
        ("red", 3),
        ("blue", 2),
        ("green", 1),
    ]


def test_reference_profile_of_a_binary_classifier_profiles_the_positive_score() -> None:
    features = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, np.nan], [4.0, 40.0]])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    predictions = Predictions(np.array([0, 0, 1, 1]), proba, (0, 1))
    profile = reference_profile(
        columns(features),
        task=schema_pb2.TASK_BINARY_CLASSIFICATION,
        predictions=predictions,
        labels=np.array([0, 1, 1, 1]),
    )
    assert profile.row_count == 4
    assert [f.name for f in profile.features] == ["f0", "f1"]
    assert profile.features[1].missing_count == 1
    assert profile.prediction.name == "prediction"
    assert profile.prediction.numeric.max == pytest.approx(0.8)
    assert [(c.value, c.count) for c in profile.label.categorical.categories] == [
        ("1", 3),
        ("0", 1),
    ]
    assert profile.dataset == "train"
    assert profile.create_time.seconds > 0


def test_reference_profile_of_multiclass_and_regression_models() -> None:
    features = columns(np.zeros((3, 1)))
    multiclass = reference_profile(
        features,
        task=schema_pb2.TASK_MULTICLASS_CLASSIFICATION,
        predictions=Predictions(np.array(["a", "c", "c"]), np.full((3, 3), 1 / 3), ("a", "b", "c")),
    )
    assert multiclass.prediction.kind == schema_pb2.FEATURE_KIND_CATEGORICAL
    assert [c.value for c in multiclass.prediction.categorical.categories] == ["c", "a"]
    assert not multiclass.HasField("label")
    regression = reference_profile(
        features,
        task=schema_pb2.TASK_REGRESSION,
        predictions=Predictions(np.array([1.5, 2.5, 3.5]), None),
        labels=np.array([1.0, 2.0, 4.0]),
    )
    assert regression.prediction.numeric.mean == pytest.approx(2.5)
    assert regression.label.kind == schema_pb2.FEATURE_KIND_NUMERIC
    assert regression.label.numeric.max == 4.0
