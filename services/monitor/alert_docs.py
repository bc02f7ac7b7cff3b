"""Alerting's records as JSON documents (the rows' ``spec`` and ``doc`` columns, and the
copy of an alert kept with each event), and back."""

from __future__ import annotations

import dataclasses
from typing import Any

from services.monitor.alert_records import (
    ActionResult,
    ActionState,
    AlertRecord,
    AlertState,
    Condition,
    DriftMetric,
    Exemplar,
    FairnessMetric,
    Metric,
    PerformanceMetric,
    QualityMetric,
    RollbackCanary,
    RuleSpec,
)

_METRICS: dict[str, type[Metric]] = {
    "drift": DriftMetric,
    "data_quality": QualityMetric,
    "performance": PerformanceMetric,
    "fairness": FairnessMetric,
}
_KINDS = {cls: kind for kind, cls in _METRICS.items()}


# documents ------------------------------------------------------------------------
def condition_doc(c: Condition) -> dict[str, Any]:
    metric = None if c.metric is None else {"kind": _KINDS[type(c.metric)]}
    if c.metric is not None and metric is not None:
        metric.update(dataclasses.asdict(c.metric))
    return {"metric": metric, "comparator": c.comparator, "threshold": c.threshold}


def condition_from(doc: dict[str, Any]) -> Condition:
    raw = dict(doc.get("metric") or {})
    metric = _METRICS[raw.pop("kind")](**raw) if raw else None
    return Condition(metric, doc["comparator"], float(doc["threshold"]))


def spec_doc(s: RuleSpec) -> dict[str, Any]:
    return {
        "condition": condition_doc(s.condition),
        "version": s.version,
        "variant": s.variant,
        "description": s.description,
        "window_ns": s.window,
        "min_samples": s.min_samples,
        "cooldown_ns": s.cooldown,
        "severity": s.severity,
        "action": s.action.deployment if s.action else None,
        "labels": dict(s.labels),
    }


def spec_from(
    doc: dict[str, Any], rule_id: str, model: str, deployment: str, disabled: bool
) -> RuleSpec:
    fields = dict(doc)
    action = fields.pop("action")
    return RuleSpec(
        id=rule_id,
        model=model,
        deployment=deployment,
        disabled=disabled,
        **{**fields, "condition": condition_from(doc["condition"])},
        action=RollbackCanary(action) if action else None,
    )


def alert_doc(a: AlertRecord) -> dict[str, Any]:
    doc = {f.name: getattr(a, f.name) for f in dataclasses.fields(a)}
    doc["condition"] = condition_doc(a.condition)
    doc["state"] = a.state.value
    doc["actions"] = [
        {**dataclasses.asdict(r), "action": r.action.deployment, "state": r.state.value}
        for r in a.actions
    ]
    doc["exemplars"] = [list(e) for e in a.exemplars]
    return doc


def alert_from(doc: dict[str, Any]) -> AlertRecord:
    fields = dict(doc)
    fields["condition"] = condition_from(doc["condition"])
    fields["state"] = AlertState(doc["state"])
    fields["actions"] = tuple(
        ActionResult(
            **{**r, "action": RollbackCanary(r["action"]), "state": ActionState(r["state"])}
        )
        for r in doc["actions"]
    )
    fields["exemplars"] = tuple(Exemplar(*e) for e in doc["exemplars"])
    return AlertRecord(**fields)
