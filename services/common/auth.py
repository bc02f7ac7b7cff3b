"""Bearer tokens: who a token names, from a static token file or a JWT.

``Authenticator.authenticate(metadata)`` reads ``authorization: Bearer <token>`` and
returns the ``Principal`` (subject, roles, team) the token proves, or raises
``AuthFailure``. Its ``reason`` goes to the server's log only: a caller learns nothing
but "missing or invalid credentials" (``denials.py``).

- Static tokens: a YAML or JSON file of entries ``{sha256, subject, roles, team}``; the
  file holds the sha256 of each token, never the token (``python -m
  services.common.auth hash`` prints it).
- JWT: HS256 with a shared secret, RS256 with a public key; ``iss`` and ``aud`` must
  match, ``exp`` is required, ``exp``/``nbf`` are honoured with a small leeway; the
  algorithm is the one the key was configured for, never the token's choice alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import jwt
import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.common.identity import MAX_IDENTITY, Principal
from services.common.roles import ROLES
from services.common.settings import ServerSettings

AUTHORIZATION = "authorization"
MIN_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 8192

Metadata = Iterable[tuple[str, str | bytes]]


class AuthFailure(Exception):
    """The call does not prove who makes it; the message is for the server's log."""


class AuthConfigError(OSError):
    """The auth settings cannot work (a missing file, a short secret, no issuer…). An
    OSError, as TLS's errors are, so that ``serve`` says it in one line and exits 1."""


def hash_token(token: str) -> str:
    """The sha256 (hex) a token file lists for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(metadata: Metadata | None) -> str:
    """The token of the one ``authorization: Bearer …`` header; AuthFailure otherwise."""
    found = [v for k, v in metadata or () if k == AUTHORIZATION]
    if not found:
        raise AuthFailure("no authorization metadata")
    if len(found) > 1:
        raise AuthFailure("more than one authorization metadata")
    value = found[0]
    if not isinstance(value, str):
        raise AuthFailure("binary authorization metadata")
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        raise AuthFailure("authorization is not 'Bearer <token>'")
    return token


class Verifier(Protocol):
    def verify(self, token: str) -> Principal | None:
        """The principal of ``token``; None if the token is not of this kind."""


# Static tokens ---------------------------------------------------------------------------
class TokenEntry(BaseModel):
    """One static token: the sha256 of the token and who it stands for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    subject: str = Field(min_length=1, max_length=MAX_IDENTITY)
    roles: list[str] = Field(min_length=1)
    team: str = Field(default="", max_length=MAX_IDENTITY)

    @field_validator("roles")
    @classmethod
    def known_roles(cls, roles: list[str]) -> list[str]:
        unknown = sorted(set(roles) - ROLES)
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; expected some of {sorted(ROLES)}")
        return roles


class TokenFileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry]


class TokenFile:
    """The principals of the static tokens listed (hashed) in a YAML or JSON file."""

    def __init__(self, entries: Sequence[TokenEntry]) -> None:
        self._by_hash: dict[str, Principal] = {}
        for entry in entries:
            if entry.sha256 in self._by_hash:
                raise AuthConfigError(f"token file: sha256 {entry.sha256[:12]}… listed twice")
            self._by_hash[entry.sha256] = Principal(
                entry.subject, frozenset(entry.roles), entry.team, authenticated=True
            )

    @classmethod
    def load(cls, path: Path) -> TokenFile:
        try:
            text = path.read_text()
        except OSError as error:
            raise AuthConfigError(f"token file {path}: {error.strerror or error}") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            return cls(TokenFileModel.model_validate(data).tokens)
        except (ValueError, yaml.YAMLError) as error:
            # ValidationError is a ValueError; its text quotes hashes, never tokens.
            raise AuthConfigError(f"token file {path}: {error}") from None

    def verify(self, token: str) -> Principal | None:
        return self._by_hash.get(hash_token(token))


# JWT -------------------------------------------------------------------------------------
def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _roles_of(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list):
        return frozenset()
    return frozenset(r for r in value if isinstance(r, str)) & ROLES


class JwtVerifier:
    """JWTs signed with HS256 (``secret``) and/or RS256 (``public_key``, PEM)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        secret: bytes = b"",
        public_key: bytes = b"",
        leeway_s: float = 30.0,
        roles_claim: str = "roles",
        team_claim: str = "team",
    ) -> None:
        if not issuer or not audience:
            raise AuthConfigError("jwt: auth_jwt_issuer and auth_jwt_audience are required")
        if secret and len(secret) < MIN_SECRET_BYTES:
            raise AuthConfigError(f"jwt: the HS256 secret must be {MIN_SECRET_BYTES}+ bytes")
        self._keys: dict[str, Any] = {}
        if secret:
            self._keys["HS256"] = secret
        if public_key:
            try:
                self._keys["RS256"] = jwt.algorithms.RSAAlgorithm(
                    jwt.algorithms.RSAAlgorithm.SHA256
                ).prepare_key(public_key)
            except (ValueError, jwt.InvalidKeyError) as error:
                raise AuthConfigError(f"jwt: the RS256 public key is not usable: {error}") from None
        if not self._keys:
            raise AuthConfigError("jwt: set auth_jwt_secret(_file) or auth_jwt_public_key_file")
        self.issuer, self.audience, self.leeway_s = issuer, audience, leeway_s
        self.roles_claim, self.team_claim = roles_claim, team_claim

    def verify(self, token: str) -> Principal | None:
        if token.count(".") != 2:
            return None
        try:
            stated = jwt.get_unverified_header(token).get("alg")
            algorithm = stated if isinstance(stated, str) else ""
            key = self._keys.get(algorithm)
            if key is None:
                raise AuthFailure(f"jwt: algorithm {stated!r} not accepted")
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise AuthFailure(f"jwt: {type(error).__name__}: {error}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_IDENTITY:
            raise AuthFailure("jwt: 'sub' is not a string of 1-256 characters")
        team = _claim(claims, self.team_claim)
        return Principal(
            subject,
            _roles_of(_claim(claims, self.roles_claim)),
            team[:MAX_IDENTITY] if isinstance(team, str) else "",
            authenticated=True,
        )


# Settings --------------------------------------------------------------------------------
class Authenticator:
    """Tries each verifier in turn: the first that recognises the token decides."""

    def __init__(self, verifiers: Sequence[Verifier]) -> None:
        self.verifiers = tuple(verifiers)

    def authenticate(self, metadata: Metadata | None) -> Principal:
        token = bearer_token(metadata)
        for verifier in self.verifiers:
            found = verifier.verify(token)
            if found is not None:
                return found
        raise AuthFailure("token not recognised")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise AuthConfigError(f"{what} {path}: {error.strerror or error}") from None


def auth_modes(settings: ServerSettings) -> frozenset[str]:
    return frozenset(settings.auth_mode.split(",")) - {"none"}


def jwt_verifier(settings: ServerSettings) -> JwtVerifier:
    secret = settings.auth_jwt_secret.get_secret_value().encode()
    if settings.auth_jwt_secret_file:
        secret = _read(settings.auth_jwt_secret_file, "auth_jwt_secret_file").rstrip(b"\r\n")
    public_key = b""
    if settings.auth_jwt_public_key_file:
        public_key = _read(settings.auth_jwt_public_key_file, "auth_jwt_public_key_file")
    return JwtVerifier(
        issuer=settings.auth_jwt_issuer,
        audience=settings.auth_jwt_audience,
        secret=secret,
        public_key=public_key,
        leeway_s=settings.auth_jwt_leeway_s,
        roles_claim=settings.auth_jwt_roles_claim,
        team_claim=settings.auth_jwt_team_claim,
    )


def build_authenticator(settings: ServerSettings) -> Authenticator | None:
    """The authenticator ``auth_mode`` asks for; None when authentication is off."""
    modes = auth_modes(settings)
    if not modes:
        return None
    verifiers: list[Verifier] = []
    if "tokens" in modes:
        if not settings.auth_token_file:
            raise AuthConfigError("auth_mode 'tokens' needs auth_token_file")
        verifiers.append(TokenFile.load(Path(settings.auth_token_file)))
    if "jwt" in modes:
        verifiers.append(jwt_verifier(settings))
    return Authenticator(verifiers)


def service_token(settings: ServerSettings) -> str:
    """The token this service sends to the services it calls ('' for none)."""
    if settings.auth_service_token_file:
        raw = _read(settings.auth_service_token_file, "auth_service_token_file")
        return raw.decode().strip()
    return settings.auth_service_token.get_secret_value().strip()


# python -m services.common.auth ------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.auth", description="Static bearer tokens."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("hash", help="print the sha256 of the token read from standard input")
    new = commands.add_parser(
        "new", help="make a random token; print it, then its entry for the token file's list"
    )
    new.add_argument("--subject", required=True)
    new.add_argument("--role", action="append", required=True, choices=sorted(ROLES))
    new.add_argument("--team", default="")
    args = parser.parse_args(argv)
    if args.command == "hash":
        token = sys.stdin.readline().strip()
        if not token:
            parser.error("no token on standard input")
        print(hash_token(token))
        return 0
    token = secrets.token_urlsafe(32)
    try:
        entry = TokenEntry(
            sha256=hash_token(token), subject=args.subject, roles=args.role, team=args.team
        )
    except ValidationError as error:
        parser.error(str(error))
    print(token)
    print(yaml.safe_dump([entry.model_dump()], sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
