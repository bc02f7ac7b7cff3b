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
