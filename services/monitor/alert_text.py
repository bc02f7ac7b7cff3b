"""Alert messages in words a person can act on, e.g.
``f1 of churn/canary is 0.71 < 0.80 over 1h (2,310 labelled rows)``."""

from __future__ import annotations

from services.monitor.alert_records import (
    SECOND_NS,
    Condition,
    DriftMetric,
    FairnessMetric,
    Metric,
    PerformanceMetric,
    QualityMetric,
    RuleSpec,
)

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def duration(ns: int) -> str:
    """``1h``, ``1h30m``, ``90s`` → ``1m30s``; ``0s`` for zero."""
    seconds, parts = ns // SECOND_NS, []
    for unit, size in _UNITS:
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def number(value: float) -> str:
    """Two decimals for everyday values, three significant digits for tiny or huge ones."""
    if value == 0 or 0.01 <= abs(value) < 10_000:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _words(name: str) -> str:
    return name.lower().replace("_", " ")


def metric_words(metric: Metric | None) -> str:
    if isinstance(metric, PerformanceMetric):
        per_class = f" of class '{metric.class_label}'" if metric.class_label else ""
        return f"{metric.metric}{per_class}"
    if isinstance(metric, DriftMetric):
        method = f"{_words(metric.method)} " if metric.method else ""
        if not metric.feature:
            return "share of drifted features"
        return f"{method}drift of '{metric.feature}'"
    if isinstance(metric, QualityMetric):
        of = f" of '{metric.feature}'" if metric.feature else ""
        return f"{_words(metric.measure)}{of}"
    if isinstance(metric, FairnessMetric):
        return f"{_words(metric.measure)} of '{metric.feature}'"
    return "value"


def scope(spec: RuleSpec) -> str:
    """``churn``, ``churn v3/canary``, ``churn/canary in deployment 'churn-web'``."""
    text = spec.model + (f" v{spec.version}" if spec.version else "")
    text += f"/{spec.variant}" if spec.variant else ""
    return text + (f" in deployment '{spec.deployment}'" if spec.deployment else "")


def rows(spec: RuleSpec, count: int) -> str:
    labelled = isinstance(spec.condition.metric, PerformanceMetric) or (
        isinstance(spec.condition.metric, FairnessMetric)
        and spec.condition.metric.measure == "EQUALIZED_ODDS_DIFFERENCE"
    )
    noun = "labelled row" if labelled else "row"
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def fired(spec: RuleSpec, value: float, count: int) -> str:
    c: Condition = spec.condition
    return (
        f"{metric_words(c.metric)} of {scope(spec)} is {number(value)} {c.comparator} "
        f"{number(c.threshold)} over {duration(spec.window)} ({rows(spec, count)})"
    )


def resolved(spec: RuleSpec, value: float, count: int) -> str:
    return (
        f"resolved: {metric_words(spec.condition.metric)} is {number(value)} over "
        f"{duration(spec.window)} ({rows(spec, count)})"
    )
