"""TLS and mutual TLS from a server's settings: the credentials it listens with, and
those of the channels it opens to its peers.

- ``tls_cert_file`` + ``tls_key_file``: the server listens with TLS (and only TLS).
  ``tls_require_client_cert`` adds mutual TLS: a caller must present a certificate
  signed by ``tls_ca_file``, or its handshake fails (the caller sees UNAVAILABLE).
- Peers (inference → registry, inference → monitor, monitor → registry) are called
  over TLS whenever any ``tls_*_file`` is set: their certificates are verified against
  ``tls_ca_file`` (the system's roots when empty), and the service presents
  ``tls_client_cert_file``/``tls_client_key_file`` (by default its own certificate,
  which must then allow client authentication, as most service certificates do).

Every file is read once, when the server starts; a renewed certificate needs a restart.
A missing, unreadable or mismatched file is a ``TlsError``: one line that names the
setting (``KEEL_REGISTRY_TLS_CERT_FILE '/etc/keel/tls.crt': No such file or directory``),
which the serve runner prints before exiting with 1 — an ``OSError``, like a taken port.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.settings import ServerSettings


class TlsError(OSError):
    """A TLS setting names a file that cannot be used."""


@dataclass(frozen=True)
class _Pair:
    """A certificate (chain) and its private key, read and checked against each other."""

    cert: bytes
    key: bytes


def _setting(settings: ServerSettings, field: str) -> str:
    """The environment variable of ``field`` (``KEEL_REGISTRY_TLS_CA_FILE``)."""
    prefix = str(settings.model_config.get("env_prefix") or "")
    return f"{prefix}{field.upper()}" if prefix else field


def _read(settings: ServerSettings, field: str) -> bytes:
    path = getattr(settings, field)
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise TlsError(f"{_setting(settings, field)} '{path}': {error.strerror or error}") from None
    if not data.strip():
        raise TlsError(f"{_setting(settings, field)} '{path}': the file is empty")
    return data


def _pair(settings: ServerSettings, cert_field: str, key_field: str) -> _Pair:
    """Read a certificate and its key; OpenSSL checks that they belong together."""
    cert, key = _read(settings, cert_field), _read(settings, key_field)
    cert_path, key_path = getattr(settings, cert_field), getattr(settings, key_field)
    try:
        # The empty password makes an encrypted key fail here instead of prompting.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            cert_path, key_path, password=lambda: b""
        )
    except ssl.SSLError as error:
        cert_name, key_name = _setting(settings, cert_field), _setting(settings, key_field)
        if error.reason == "KEY_VALUES_MISMATCH":
            raise TlsError(
                f"{key_name} '{key_path}' is not the key of {cert_name} '{cert_path}'"
            ) from None
        detail = f" ({error.reason})" if error.reason else ""
        raise TlsError(
            f"{cert_name} '{cert_path}' and {key_name} '{key_path}': expected a PEM "
            f"certificate and its unencrypted PEM private key{detail}"
        ) from None
    return _Pair(cert, key)


def _ca(settings: ServerSettings) -> bytes | None:
    if not settings.tls_ca_file:
        return None
    data = _read(settings, "tls_ca_file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
            cadata=data.decode("ascii", errors="replace")
        )
    except ssl.SSLError:
        raise TlsError(
            f"{_setting(settings, 'tls_ca_file')} '{settings.tls_ca_file}': expected PEM CA "
            "certificates"
        ) from None
    return data


def _both_or_neither(settings: ServerSettings, cert_field: str, key_field: str) -> bool:
    """Whether the pair is set; one without the other is an error."""
    cert, key = getattr(settings, cert_field), getattr(settings, key_field)
    if bool(cert) != bool(key):
        raise TlsError(
            f"{_setting(settings, cert_field)} and {_setting(settings, key_field)} go "
            "together: set both or neither"
        )
    return bool(cert)


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """What the server listens with: TLS when it has a certificate, else None (plaintext)."""
    if not _both_or_neither(settings, "tls_cert_file", "tls_key_file"):
        if settings.tls_require_client_cert:
            raise TlsError(
                f"{_setting(settings, 'tls_require_client_cert')} needs TLS: set "
                f"{_setting(settings, 'tls_cert_file')} and {_setting(settings, 'tls_key_file')}"
            )
        return None
    if settings.tls_require_client_cert and not settings.tls_ca_file:
        raise TlsError(
            f"{_setting(settings, 'tls_require_client_cert')} needs "
            f"{_setting(settings, 'tls_ca_file')} to verify client certificates against"
        )
    pair = _pair(settings, "tls_cert_file", "tls_key_file")
    ca = _ca(settings)
    return grpc.ssl_server_credentials(
        [(pair.key, pair.cert)],
        # Without require_client_cert no certificate is asked of callers.
        root_certificates=ca if settings.tls_require_client_cert else None,
        require_client_auth=settings.tls_require_client_cert,
    )


def peers_use_tls(settings: ServerSettings) -> bool:
    """Whether this service calls its peers over TLS: when any TLS file is set."""
    return any(
        (
            settings.tls_cert_file,
            settings.tls_key_file,
            settings.tls_ca_file,
            settings.tls_client_cert_file,
            settings.tls_client_key_file,
        )
    )


def channel_credentials(settings: ServerSettings) -> grpc.ChannelCredentials | None:
    """What this service's channels to its peers use: TLS (verified against
    ``tls_ca_file``, presenting the client certificate) when any TLS file is set, else
    None (plaintext)."""
    if not peers_use_tls(settings):
        return None
    if _both_or_neither(settings, "tls_client_cert_file", "tls_client_key_file"):
        pair: _Pair | None = _pair(settings, "tls_client_cert_file", "tls_client_key_file")
    elif _both_or_neither(settings, "tls_cert_file", "tls_key_file"):
        pair = _pair(settings, "tls_cert_file", "tls_key_file")
    else:
        pair = None
    return grpc.ssl_channel_credentials(
        root_certificates=_ca(settings),
        private_key=pair.key if pair else None,
        certificate_chain=pair.cert if pair else None,
    )
