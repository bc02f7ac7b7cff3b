"""Settings every Keel server shares; each service subclasses with its own env prefix.

Values come from the environment (``KEEL_REGISTRY_PORT=0``), then from ``serve`` flags,
which win. A service adds its own fields (database URL, addresses of peers) in its own
``settings.py``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
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
    # TLS (services/common/tls.py): files are read once, at startup; a new certificate
    # needs a restart. Empty: not set.
    tls_cert_file: str = Field(
        default="",
        description="PEM certificate (chain) the server presents; with tls_key_file set, "
        "the server listens with TLS only.",
    )
    tls_key_file: str = Field(default="", description="PEM private key of tls_cert_file.")
    tls_ca_file: str = Field(
        default="",
        description="PEM CA certificates that client certificates (tls_require_client_cert) "
        "and the servers this service calls are verified against; empty: the system's roots.",
    )
    tls_require_client_cert: bool = Field(
        default=False,
        description="Mutual TLS: refuse callers without a certificate signed by tls_ca_file.",
    )
    tls_client_cert_file: str = Field(
        default="",
        description="PEM certificate presented to the services this one calls; empty: "
        "tls_cert_file. Peers are called over TLS when any tls_*_file is set.",
    )
    tls_client_key_file: str = Field(
        default="", description="PEM private key of tls_client_cert_file; empty: tls_key_file."
    )
    # Bearer tokens and roles (services/common/auth.py, roles.py): files are read once,
    # at startup. Off by default: then the caller's x-keel-user is trusted as stated.
    auth_mode: str = Field(
        default="none",
        pattern=r"^(none|tokens|jwt|tokens,jwt|jwt,tokens)$",
        description="Bearer token on every RPC: none (off), tokens (auth_token_file), jwt, "
        "or tokens,jwt (either is accepted).",
    )
    auth_token_file: str = Field(
        default="",
        description="YAML or JSON file of static tokens, each as its sha256 with subject, "
        "roles and team (`python -m services.common.auth hash`).",
    )
    auth_jwt_secret: SecretStr = Field(
        default=SecretStr(""),
        description="HS256 shared secret (32 bytes or more); or auth_jwt_secret_file.",
    )
    auth_jwt_secret_file: str = Field(
        default="", description="File holding the HS256 shared secret (trailing newline cut)."
    )
    auth_jwt_public_key_file: str = Field(
        default="", description="PEM public key that RS256 tokens are verified with."
    )
    auth_jwt_issuer: str = Field(default="", description="The `iss` every JWT must carry.")
    auth_jwt_audience: str = Field(default="", description="The `aud` every JWT must include.")
    auth_jwt_leeway_s: float = Field(
        default=30.0, ge=0, le=300, description="Clock skew allowed on `exp` and `nbf`."
    )
    auth_jwt_roles_claim: str = Field(
        default="roles",
        description="Claim holding the roles (a list, or a space-separated string); a dotted "
        "path reaches into objects (realm_access.roles).",
    )
    auth_jwt_team_claim: str = Field(default="team", description="Claim holding the team.")
    auth_exempt_methods: list[str] = Field(
        default=[
            "/grpc.health.v1.Health/",
            "/grpc.reflection.v1alpha.ServerReflection/",
            "/grpc.reflection.v1.ServerReflection/",
        ],
        description="Callable without a token: '/pkg.Service/Method', or '/pkg.Service/' for "
        "all of a service's methods (JSON list in the environment).",
    )
    auth_service_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token this service sends to the services it calls; or "
        "auth_service_token_file. Empty: none sent.",
    )
    auth_service_token_file: str = Field(
        default="", description="File holding auth_service_token (trailing newline cut)."
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
