"""Checks of alert rules that need no model: names, the condition's shape, window,
defaults, labels. What depends on the model (features, the task's metrics, protected
features) is the injected ``CheckRule``'s business."""

from __future__ import annotations

import dataclasses
import math
import re

from services.common.errors import FieldViolation, InvalidArgument
from services.monitor.alert_records import (
    COMPARATORS,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_SEVERITY,
    DRIFT_METHODS,
    FAIRNESS_MEASURES,
    PERFORMANCE_METRICS,
    QUALITY_MEASURES,
    SEVERITIES,
    Condition,
    DriftMetric,
    FairnessMetric,
    Metric,
    PerformanceMetric,
    QualityMetric,
    RuleSpec,
)
from services.monitor.alert_text import duration

ID_PATTERN = re.compile(r"^[a-z0-9-]{1,63}$")
MAX_LABEL = 63
MAX_DESCRIPTION = 1000
MAX_FEATURE = 256
RULE = "alert_rule"


def invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", violations=[FieldViolation(field, message)])


def check_id(field: str, value: str) -> str:
    if not ID_PATTERN.match(value):
        raise invalid(field, f"expected 1-63 characters of [a-z0-9-], got {value!r}")
    return value


def resource_id(field: str, name: str, collection: str, *, optional: bool = False) -> str:
    """The id in ``{collection}/{id}``; "" for an empty optional name."""
    if optional and not name:
        return ""
    prefix, _, rest = name.partition("/")
    if prefix != collection or not ID_PATTERN.match(rest):
        raise invalid(field, f"expected a name like '{collection}/{{id}}', got {name!r}")
    return rest


def alert_number(field: str, name: str) -> int:
    prefix, _, rest = name.partition("/")
    number = rest.isascii() and rest.isdigit() and len(rest) <= 19  # "²" is a digit, too
    if prefix != "alerts" or not number or not 1 <= int(rest) < 2**63:
        raise invalid(field, f"expected a name like 'alerts/{{number}}', got {name!r}")
    return int(rest)


def _metric(metric: Metric | None) -> None:
    field = f"{RULE}.condition"
    if metric is None:
        raise invalid(field, "expected exactly one of drift, data_quality, performance, fairness")
    if isinstance(metric, DriftMetric):
        if metric.method not in DRIFT_METHODS:
            raise invalid(f"{field}.drift.method", f"unknown drift method {metric.method!r}")
    elif isinstance(metric, QualityMetric):
        _quality(metric, f"{field}.data_quality")
    elif isinstance(metric, PerformanceMetric):
        if metric.metric not in PERFORMANCE_METRICS:
            known = ", ".join(PERFORMANCE_METRICS)
            raise invalid(
                f"{field}.performance.metric", f"expected one of {known}, got {metric.metric!r}"
            )
    elif isinstance(metric, FairnessMetric):
        if metric.measure not in FAIRNESS_MEASURES:
            raise invalid(f"{field}.fairness.measure", "expected a fairness measure")
        if not metric.feature:
            raise invalid(f"{field}.fairness.feature", "expected the protected feature")
    feature = getattr(metric, "feature", "")
    if len(feature) > MAX_FEATURE:
        raise invalid(f"{field}.feature", f"expected at most {MAX_FEATURE} characters")


def _quality(metric: QualityMetric, field: str) -> None:
    if metric.measure not in QUALITY_MEASURES:
        raise invalid(f"{field}.measure", "expected a data-quality measure")
    if metric.measure in ("OUT_OF_RANGE_RATE", "UNSEEN_CATEGORY_RATE") and not metric.feature:
        raise invalid(f"{field}.feature", f"{metric.measure.lower()} needs a feature")
    if metric.measure == "REJECTED_RATE" and metric.feature:
        raise invalid(f"{field}.feature", "rejected_rate is dataset-level: leave feature empty")


def check_condition(condition: Condition) -> None:
    _metric(condition.metric)
    if condition.comparator not in COMPARATORS:
        raise invalid(f"{RULE}.condition.comparator", "expected >=, >, <= or <")
    if not math.isfinite(condition.threshold):
        raise invalid(f"{RULE}.condition.threshold", "expected a finite number")


def _window(window_ns: int, bucket_ns: int) -> None:
    if window_ns <= 0 or window_ns % bucket_ns:
        raise invalid(
            f"{RULE}.window",
            f"expected a positive multiple of the base bucket ({duration(bucket_ns)}), "
            f"got {window_ns / 1e9:g}s",
        )


def _labels(labels: dict[str, str]) -> None:
    for key, value in labels.items():
        if not 1 <= len(key) <= MAX_LABEL or len(value) > MAX_LABEL:
            raise invalid(
                f"{RULE}.labels",
                f"expected keys of 1-{MAX_LABEL} and values of up to {MAX_LABEL} characters, "
                f"got {key[:80]!r}",
            )


def _names(spec: RuleSpec) -> None:
    check_id(f"{RULE}.model", spec.model)
    if spec.version < 0:
        raise invalid(
            f"{RULE}.version", f"expected 0 (any) or a version number, got {spec.version}"
        )
    if spec.deployment:
        check_id(f"{RULE}.deployment", spec.deployment)
    if spec.variant:
        check_id(f"{RULE}.variant", spec.variant)
    if spec.action is not None:
        check_id(f"{RULE}.action.rollback_canary.deployment", spec.action.deployment)


def normalised(spec: RuleSpec, bucket_ns: int) -> RuleSpec:
    """``spec`` checked, with its defaults filled in; InvalidArgument naming the field."""
    check_id("alert_rule_id", spec.id)
    _names(spec)
    check_condition(spec.condition)
    _window(spec.window, bucket_ns)
    if spec.min_samples < 0:
        raise invalid(f"{RULE}.min_samples", f"expected 0 (100) or more, got {spec.min_samples}")
    if spec.cooldown < 0:
        raise invalid(f"{RULE}.cooldown", "expected 0 or more")
    if spec.severity and spec.severity not in SEVERITIES:
        raise invalid(f"{RULE}.severity", f"unknown severity {spec.severity!r}")
    if len(spec.description) > MAX_DESCRIPTION:
        raise invalid(f"{RULE}.description", f"expected at most {MAX_DESCRIPTION} characters")
    _labels(dict(spec.labels))
    return dataclasses.replace(
        spec,
        window_ns=spec.window,
        cooldown_ns=spec.cooldown,
        min_samples=spec.min_samples or DEFAULT_MIN_SAMPLES,
        severity=spec.severity or DEFAULT_SEVERITY,
        labels=dict(spec.labels),
    )


MUTABLE_PATHS = {
    "description": "description",
    "version": "version",
    "deployment": "deployment",
    "variant": "variant",
    "condition": "condition",
    "window": "window_ns",
    "min_samples": "min_samples",
    "cooldown": "cooldown_ns",
    "severity": "severity",
    "action": "action",
    "disabled": "disabled",
    "labels": "labels",
}
FROZEN_PATHS = ("name", "model", "status", "create_time", "update_time", "etag")
METRIC_PATHS = ("drift", "data_quality", "performance", "fairness")


def _condition_path(before: Condition, patch: Condition, rest: str, path: str) -> Condition:
    head = rest.split(".")[0]
    if rest == "comparator":
        return dataclasses.replace(before, comparator=patch.comparator)
    if rest == "threshold":
        return dataclasses.replace(before, threshold=patch.threshold)
    if head in METRIC_PATHS:
        return dataclasses.replace(before, metric=patch.metric)
    raise invalid("update_mask", f"unknown field {path!r}")


def patched(before: RuleSpec, patch: RuleSpec, paths: list[str]) -> RuleSpec:
    """``before`` with the fields named by ``paths`` (FieldMask paths of AlertRule) taken
    from ``patch``; no paths means every mutable field."""
    changes: dict[str, object] = {}
    condition = before.condition
    for path in paths or list(MUTABLE_PATHS):
        head, _, rest = path.partition(".")
        if head in FROZEN_PATHS:
            raise invalid("update_mask", f"{path!r} is output only or immutable")
        if head not in MUTABLE_PATHS:
            known = ", ".join(MUTABLE_PATHS)
            raise invalid("update_mask", f"unknown field {path!r}; expected some of {known}")
        if head == "condition" and rest:
            condition = _condition_path(condition, patch.condition, rest, path)
        elif rest:
            raise invalid("update_mask", f"{path!r}: only condition has updatable sub-fields")
        elif head == "condition":
            condition = patch.condition
        else:
            changes[MUTABLE_PATHS[head]] = getattr(patch, MUTABLE_PATHS[head])
    return dataclasses.replace(before, condition=condition, **changes)  # type: ignore[arg-type]
