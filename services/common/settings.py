"""Settings every Keel server shares; each service subclasses with its own env prefix.

Values come from the environment (``KEEL_REGISTRY_PORT=0``), then from ``serve`` flags,
which win. A service adds its own fields (database URL, addresses of peers) in its own
``settings.py``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class ServerSettings(BaseSettings):
    """What ``build_server`` and the serve runner need; prefix set by each subclass."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=0, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Prometheus port on `host`; None turns it off (`--metrics-port 0`).",
    )
    max_message_bytes: int = Field(
        default=64 * MIB, gt=0, description="Largest gRPC message received or sent."
    )
    grace_period_s: float = Field(
        default=10.0, ge=0, description="On SIGTERM, how long in-flight calls may run on."
    )
    data_dir: Path = Field(
        default=Path(".keel"), description="Where embedded defaults keep their files."
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")
    reuse_port: bool = Field(
        default=False,
        description="Share the port with sibling worker processes (SO_REUSEPORT); off, a taken "
        "port is an error.",
    )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class DatabaseSettings(ServerSettings):
    """A server that keeps state in SQL: SQLite under ``data_dir`` unless told otherwise."""

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL (e.g. postgresql+psycopg://…); empty: SQLite in data_dir.",
    )

    def database(self, filename: str) -> str:
        """The URL to connect to: ``database_url``, else ``sqlite:///<data_dir>/<filename>``."""
        return self.database_url or f"sqlite:///{(self.data_dir / filename).resolve()}"
