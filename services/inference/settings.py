"""Settings of the inference service: ``KEEL_INFERENCE_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServerSettings


class InferenceSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="KEEL_INFERENCE_")

    port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int | None = Field(default=9102, ge=0, le=65535)
    registry_address: str = Field(default="127.0.0.1:50051", description="host:port.")
    monitor_address: str = Field(default="127.0.0.1:50053", description="host:port.")
    max_batch_rows: int = Field(
        default=1024,
        ge=1,
        description="Rows per coalesced model call (a larger request runs alone).",
    )
    max_batch_delay_s: float = Field(
        default=0.0005, ge=0, description="Longest wait for more requests to batch with."
    )
    max_queue: int = Field(default=1024, ge=1, description="Requests waiting per version.")
    predict_threads: int = Field(default=2, ge=1, description="Threads running model calls.")
    model_threads: int = Field(default=1, ge=1, description="XGBoost threads per model call.")
    prediction_log_capacity: int = Field(
        default=100_000, ge=1, description="Records kept for the monitor before the oldest drop."
    )
    registry_retry_s: float = Field(
        default=1.0, gt=0, description="Wait before reconnecting to the registry's stream."
    )
