"""Alerting's tables: rules, alerts, the alert event log and its sequence counter.

Times are integer nanoseconds since the epoch (UTC). What is only stored and returned
(a rule's condition, an alert's action results, an event's copy of the alert) travels
as JSON documents; what is filtered or locked on has a column of its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index
from sqlmodel import Field

from services.monitor.tables import MonitorTable


class AlertRuleRow(MonitorTable, table=True):
    """A rule, with the status of its last evaluation. ``revision`` is its etag: it
    changes with every change a user makes, never with an evaluation."""

    __tablename__ = "monitor_alert_rules"

    id: str = Field(primary_key=True, max_length=63)
    model: str = Field(index=True)
    deployment: str = Field(default="", index=True)
    action_deployment: str = Field(default="", index=True)
    disabled: bool = False
    spec: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    revision: int = Field(default=1, sa_type=BigInteger)
    state: str = "UNSPECIFIED"
    value: float | None = None
    sample_count: int = Field(default=0, sa_type=BigInteger)
    evaluate_time: int = Field(default=0, sa_type=BigInteger)
    firing_alert: int = Field(default=0, sa_type=BigInteger)
    last_resolve_time: int = Field(default=0, sa_type=BigInteger)
    created_by: str = ""
    updated_by: str = ""
    create_time: int = Field(sa_type=BigInteger)
    update_time: int = Field(sa_type=BigInteger)


class AlertRow(MonitorTable, table=True):
    """One firing (and later resolution) of a rule."""

    __tablename__ = "monitor_alerts"
    __table_args__ = (
        Index("ix_monitor_alerts_fire_time", "fire_time", "id"),
        Index("ix_monitor_alerts_rule", "rule", "fire_time"),
        Index("ix_monitor_alerts_model", "model", "fire_time"),
    )

    id: int | None = Field(default=None, primary_key=True)
    rule: str
    model: str
    severity: int  # 1 INFO, 2 WARNING, 3 CRITICAL
    state: str
    fire_time: int = Field(sa_type=BigInteger)
    resolve_time: int = Field(default=0, sa_type=BigInteger)
    doc: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    last_event_sequence: int = Field(default=0, sa_type=BigInteger)


class AlertEventRow(MonitorTable, table=True):
    """One event of WatchAlerts, with the alert as it was after the event."""

    __tablename__ = "monitor_alert_events"
    __table_args__ = (
        Index("ix_monitor_alert_events_model", "model", "sequence"),
        Index("ix_monitor_alert_events_time", "time"),
    )

    sequence: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    type: str
    alert_id: int = Field(sa_type=BigInteger)
    model: str
    severity: int
    time: int = Field(sa_type=BigInteger)
    alert: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class AlertCounterRow(MonitorTable, table=True):
    """Gapless counters; the ``alert_events`` row is locked by every transaction that
    records an event, so sequences commit in order across replicas."""

    __tablename__ = "monitor_alert_counters"

    name: str = Field(primary_key=True)
    value: int = Field(default=0, sa_type=BigInteger)


ALERT_TABLES = (AlertRuleRow, AlertRow, AlertEventRow, AlertCounterRow)
