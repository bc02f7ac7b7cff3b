"""How a value is compared with a threshold (objectives, alert conditions): the symbols
domain code uses (``>=``, ``>``, ``<=``, ``<``), the ``keel.common.v1.Comparator`` value
each stands for, and what each means."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from types import MappingProxyType

from keel.common.v1 import metric_pb2

TESTS: Mapping[str, Callable[[float, float], bool]] = MappingProxyType(
    {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
)
SYMBOLS: Mapping[metric_pb2.Comparator.ValueType, str] = MappingProxyType(
    {
        metric_pb2.COMPARATOR_GREATER_OR_EQUAL: ">=",
        metric_pb2.COMPARATOR_GREATER: ">",
        metric_pb2.COMPARATOR_LESS_OR_EQUAL: "<=",
        metric_pb2.COMPARATOR_LESS: "<",
    }
)
ENUMS: Mapping[str, metric_pb2.Comparator.ValueType] = MappingProxyType(
    {symbol: value for value, symbol in SYMBOLS.items()}
)


def holds(comparator: str, value: float, threshold: float) -> bool:
    """``value <comparator> threshold``; a comparator that is not one of ``TESTS`` never
    holds."""
    test = TESTS.get(comparator)
    return test is not None and test(value, threshold)
