"""Settings of the monitor: ``KEEL_MONITOR_*``."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.db import sqlite_page_size
from services.common.jetstream import DEFAULT_STREAM, DEFAULT_SUBJECT
from services.common.settings import DatabaseSettings

DAY_S = 86_400
MIN_JOIN_WINDOW_S = 60  # a window this short or longer; or 0, none


class MonitorSettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEEL_MONITOR_")

    port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int | None = Field(default=9103, ge=0, le=65535)
    registry_address: str = Field(default="127.0.0.1:50051", description="host:port.")
    nats_url: str = Field(
        default="",
        description="NATS server URL to consume prediction logs from (JetStream); empty: off.",
    )
    nats_stream: str = Field(default=DEFAULT_STREAM, description="JetStream stream name.")
    nats_subject: str = Field(default=DEFAULT_SUBJECT, description="Subject of the batches.")
    nats_durable: str = Field(
        default="keel-monitor", description="Durable consumer shared by the monitor replicas."
    )
    instance_id: str = Field(
        default="",
        description="Source id of this monitor's aggregates in exports; replicas sharing a "
        "store share it. Empty: derived from the database URL.",
    )
    bucket_s: int = Field(
        default=300, ge=1, le=DAY_S, description="Base aggregate bucket (seconds); divides 1h."
    )
    join_window_s: int = Field(
        default=7 * DAY_S,
        ge=0,
        description="How long logged predictions are kept to join feedback labels and to "
        "recognise re-sent prediction ids: 0, or at least 60. 0 keeps none (aggregates only: "
        "no labels, no GetPrediction; re-sent batches are still recognised by sequence).",
    )
    max_batch_rows: int = Field(default=10_000, ge=1, description="Largest batch accepted.")
    max_in_flight_batches: int = Field(
        default=64, ge=1, le=1024, description="Flow-control window of a LogPredictions stream."
    )
    sqlite_page_size: int = Field(
        default=16_384,
        description=(
            "Page size in bytes of a SQLite database the monitor creates: a power of two from "
            "512 to 65536 (a file that exists keeps its own). ADR 0012."
        ),
    )
    count_process: bool = Field(
        default=True,
        description="Decode and count logged batches in a worker process (false: in a thread "
        "of the monitor's own process, which then shares one interpreter lock with them).",
    )
    max_rows_per_s: float = Field(
        default=0,
        ge=0,
        description="Rows per second one producer may log (0: no limit); a stream over it is "
        "paced, a LogPredictionBatch call refused with RESOURCE_EXHAUSTED.",
    )
    alert_eval_interval_s: float = Field(
        default=60.0, gt=0, description="Alert rules are evaluated at least this often."
    )
    alert_min_eval_gap_s: float = Field(
        default=1.0, ge=0, description="Data-driven evaluations of one rule at most this often."
    )
    alert_history_days: int = Field(
        default=30, ge=1, description="How long alert events stay resumable in WatchAlerts."
    )
    guard_refresh_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the deployments' guard_alert_rules are read from the registry.",
    )
    event_poll_s: float = Field(
        default=0.2, gt=0, description="How often WatchAlerts looks for other replicas' events."
    )

    @field_validator("join_window_s")
    @classmethod
    def _join_window(cls, value: int) -> int:
        if 0 < value < MIN_JOIN_WINDOW_S:
            raise ValueError(
                f"expected 0 (keep no logged predictions) or at least {MIN_JOIN_WINDOW_S} "
                f"seconds, got {value}"
            )
        return value

    @model_validator(mode="after")
    def _ids_for_the_stream(self) -> MonitorSettings:
        if self.nats_url and self.join_window_s == 0:
            raise ValueError(
                "KEEL_MONITOR_JOIN_WINDOW_S (join_window_s): a monitor reading JetStream "
                "(KEEL_MONITOR_NATS_URL) recognises a redelivered batch by its prediction ids, "
                f"so it needs a join window of at least {MIN_JOIN_WINDOW_S} seconds, got 0"
            )
        return self

    @field_validator("sqlite_page_size")
    @classmethod
    def _page_size(cls, value: int) -> int:
        return sqlite_page_size(value)
