"""Settings of the registry: ``KEEL_REGISTRY_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import DatabaseSettings


class RegistrySettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEEL_REGISTRY_")

    port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int | None = Field(default=9101, ge=0, le=65535)
    artifact_root: str = Field(
        default="", description="fsspec URL or folder for artifacts; empty: data_dir/artifacts."
    )
    max_artifact_bytes: int = Field(
        default=2 * 1024**3, gt=0, description="Largest artifact accepted by UploadArtifact."
    )
    event_poll_s: float = Field(
        default=0.2, gt=0, description="How often WatchEvents looks for other replicas' commits."
    )
