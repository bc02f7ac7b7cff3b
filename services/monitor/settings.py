"""Settings of the monitor: ``KEEL_MONITOR_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import DatabaseSettings


class MonitorSettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEEL_MONITOR_")

    port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int | None = Field(default=9103, ge=0, le=65535)
    registry_address: str = Field(default="127.0.0.1:50051", description="host:port.")
