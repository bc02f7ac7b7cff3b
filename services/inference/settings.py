"""Settings of the inference service: ``KEEL_INFERENCE_*``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.jetstream import DEFAULT_STREAM, DEFAULT_SUBJECT
from services.common.settings import MIB, ServerSettings


class InferenceSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="KEEL_INFERENCE_")

    port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int | None = Field(default=9102, ge=0, le=65535)
    registry_address: str = Field(default="127.0.0.1:50051", description="host:port.")
    max_batch_rows: int = Field(
        default=1024,
        ge=1,
        description="Rows per coalesced model call (a larger request runs alone).",
    )
    max_batch_delay_s: float = Field(
        default=0.002, ge=0, description="Longest wait for more requests to batch with."
    )
    max_request_rows: int = Field(
        default=100_000, ge=1, description="Rows one request may send (RESOURCE_EXHAUSTED above)."
    )
    max_tensor_elements: int = Field(
        default=16 * 1024 * 1024, ge=1, description="Elements one input tensor may hold."
    )
    max_string_bytes: int = Field(
        default=64 * 1024, ge=1, description="Bytes one BYTES element may hold."
    )
    max_queue: int = Field(default=1024, ge=1, description="Requests waiting per version.")
    predict_threads: int = Field(
        default=2,
        ge=1,
        description="Threads running model calls; as many batches of one version predict at once.",
    )
    model_threads: int = Field(
        default=1,
        ge=1,
        description="XGBoost threads per model call; above 1, batches of 256 rows or more "
        "predict through XGBoost instead of Keel's one-thread walk of the trees (ADR 0014).",
    )
    inline_predict_budget_s: float = Field(
        default=0.001,
        ge=0,
        description=(
            "A batch the version's warm-up measured to predict within this many seconds "
            "runs on the event loop instead of a thread (0: always a thread)."
        ),
    )
    monitor_address: str = Field(
        default="127.0.0.1:50053",
        description="host:port of the monitor receiving prediction logs; empty: no prediction log.",
    )
    prediction_log_transport: Literal["grpc", "nats"] = Field(
        default="grpc",
        description="grpc: the monitor's LogPredictions stream (monitor_address); nats: publish "
        "to a NATS JetStream stream that monitors consume (nats_url).",
    )
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL.")
    nats_stream: str = Field(default=DEFAULT_STREAM, description="JetStream stream name.")
    nats_subject: str = Field(default=DEFAULT_SUBJECT, description="Subject batches go to.")
    prediction_log_batch_rows: int = Field(
        default=1000, ge=1, description="Rows per prediction-log batch sent to the monitor."
    )
    prediction_log_flush_s: float = Field(
        default=0.2, gt=0, description="Longest a prediction waits before its batch is sealed."
    )
    prediction_log_max_waiting_rows: int = Field(
        default=1_000_000,
        ge=1,
        description="Rows waiting to be sealed before new ones are dropped (and counted).",
    )
    prediction_log_spool_bytes: int = Field(
        default=256 * MIB,
        ge=64 * 1024,
        description="Size limit of the on-disk spool; when full the oldest batches are dropped "
        "(counted in keel_prediction_log_dropped_rows and logged).",
    )
    prediction_log_spool_sync: bool = Field(
        default=False, description="fsync every spooled batch (survives a power loss, slower)."
    )
    prediction_log_retry_s: float = Field(
        default=0.5,
        gt=0,
        description="First pause before reconnecting to the monitor (doubles to 5 s).",
    )
    prediction_log_drain_s: float = Field(
        default=2.0,
        ge=0,
        description="On shutdown, how long delivery may go on emptying the spool.",
    )
    pii_hash_key: SecretStr = Field(
        default=SecretStr(""),
        description="Key of the digest that replaces PII features in prediction logs; "
        "replicas must share it. Empty: a random key kept in data_dir/pii.key.",
    )
    shadow_threads: int = Field(default=1, ge=1, description="Threads running shadow copies.")
    shadow_max_in_flight: int = Field(
        default=64, ge=1, description="Shadow copies running or waiting before more are skipped."
    )
    fault_delays_s: dict[str, float] = Field(
        default_factory=dict,
        description="Chaos testing: JSON object of 'model:version' -> seconds each model call of "
        "that version blocks first, in the thread running it (live and shadow calls alike).",
    )
    registry_retry_s: float = Field(
        default=1.0, gt=0, description="Wait before reconnecting to the registry's stream."
    )
