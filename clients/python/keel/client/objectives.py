"""Objectives written as text, such as ``"f1 >= 0.80"`` or ``"rmse <= 3.5"``."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from keel.common.v1 import metric_pb2

OBJECTIVE_METRICS = frozenset(
    {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "rmse",
        "mae",
        "r2",
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "equalized_odds_difference",
    }
)
COMPARATORS: dict[str, metric_pb2.Comparator.ValueType] = {
    ">=": metric_pb2.COMPARATOR_GREATER_OR_EQUAL,
    ">": metric_pb2.COMPARATOR_GREATER,
    "<=": metric_pb2.COMPARATOR_LESS_OR_EQUAL,
    "<": metric_pb2.COMPARATOR_LESS,
}
SYMBOLS = {code: symbol for symbol, code in COMPARATORS.items()}
_PATTERN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*(\S+)\s*")


def parse_objective(text: str) -> metric_pb2.Objective:
    """``"f1 >= 0.80"`` as an Objective: a canonical metric name, one of
    ``>= > <= <``, a finite number. Anything else is a ValueError naming the text."""
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"objective {text!r}: expected '<metric> <comparator> <number>' "
            "with a comparator among >= > <= <, e.g. 'f1 >= 0.80'"
        )
    name, symbol, number = match.groups()
    if name not in OBJECTIVE_METRICS:
        known = ", ".join(sorted(OBJECTIVE_METRICS))
        raise ValueError(f"objective {text!r}: unknown metric {name!r}; expected one of {known}")
    try:
        threshold = float(number)
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        raise ValueError(f"objective {text!r}: threshold {number!r} is not a finite number")
    return metric_pb2.Objective(metric=name, comparator=COMPARATORS[symbol], threshold=threshold)


def parse_objectives(
    objectives: str | metric_pb2.Objective | Iterable[str | metric_pb2.Objective],
) -> list[metric_pb2.Objective]:
    """A list of Objectives from text or Objective messages (one string is one objective)."""
    if isinstance(objectives, str | metric_pb2.Objective):
        objectives = [objectives]
    return [
        item if isinstance(item, metric_pb2.Objective) else parse_objective(item)
        for item in objectives
    ]


def format_objective(objective: metric_pb2.Objective) -> str:
    """An Objective as text, e.g. ``f1 >= 0.8``."""
    symbol = SYMBOLS.get(objective.comparator, "?")
    return f"{objective.metric} {symbol} {objective.threshold:g}"
