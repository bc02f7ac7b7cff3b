"""Objectives as text."""

from __future__ import annotations

import pytest

from keel.client.objectives import format_objective, parse_objective, parse_objectives
from keel.common.v1 import metric_pb2


@pytest.mark.parametrize(
    ("text", "metric", "comparator", "threshold"),
    [
        ("f1 >= 0.80", "f1", metric_pb2.COMPARATOR_GREATER_OR_EQUAL, 0.8),
        ("rmse <= 3.5", "rmse", metric_pb2.COMPARATOR_LESS_OR_EQUAL, 3.5),
        ("roc_auc>0.9", "roc_auc", metric_pb2.COMPARATOR_GREATER, 0.9),
        ("  log_loss <  1e-1 ", "log_loss", metric_pb2.COMPARATOR_LESS, 0.1),
        ("r2 >= -0.5", "r2", metric_pb2.COMPARATOR_GREATER_OR_EQUAL, -0.5),
        ("demographic_parity_ratio >= 0.8", "demographic_parity_ratio", 1, 0.8),
    ],
)
def test_objectives_parse(text: str, metric: str, comparator: int, threshold: float) -> None:
    objective = parse_objective(text)
    assert objective.metric == metric
    assert objective.comparator == comparator
    assert objective.threshold == threshold
    assert objective.split == metric_pb2.METRIC_SPLIT_UNSPECIFIED  # the holdout


@pytest.mark.parametrize(
    "text",
    ["f1", "f1 => 0.8", "f1 == 0.8", "f1 >= high", "f1 >= nan", "f1 >= inf", "speed >= 3", ""],
)
def test_bad_objectives_are_value_errors_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_objective(text)
    assert repr(text) in str(caught.value)


def test_one_string_is_one_objective_and_messages_pass_through() -> None:
    assert [o.metric for o in parse_objectives("f1 >= 0.8")] == ["f1"]
    given = metric_pb2.Objective(metric="mae", comparator=metric_pb2.COMPARATOR_LESS, threshold=2)
    assert parse_objectives([given, "accuracy > 0.5"])[0] == given
    assert format_objective(parse_objective("f1 >= 0.80")) == "f1 >= 0.8"
