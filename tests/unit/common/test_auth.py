"""Bearer tokens without a server: the static token file, JWT (HS256 and RS256, keys made
at run time), expiry, issuer and audience, the role table against the services'
descriptors, model ownership, and the token helpers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr, ValidationError

from keel.inference.v1 import inference_pb2
from keel.monitor.v1 import monitor_pb2
from keel.oip.v2 import open_inference_pb2
from keel.registry.v1 import registry_pb2
from services.common import auth
from services.common.auth import (
    AuthConfigError,
    Authenticator,
    AuthFailure,
    JwtVerifier,
    TokenFile,
    bearer_token,
    build_authenticator,
    hash_token,
    service_token,
)
from services.common.bearer import with_service_token
from services.common.errors import PermissionDenied
from services.common.identity import Principal
from services.common.roles import ADMIN, ROLES, RPC_ROLES, allowed_roles, may_call
from services.common.settings import ServerSettings
from services.registry.ownership import check_new_owner, check_owner, owner_for_new_model
from services.registry.records import Caller, ModelRecord

SECRET = b"s" * 40
ISSUER = "https://id.example.test"
AUDIENCE = "keel"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "roles": ["writer", "reader"],
        "team": "fraud",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def verifier(**kwargs: Any) -> JwtVerifier:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "secret": SECRET}
    options.update(kwargs)
    return JwtVerifier(**options)


def hs256(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), SECRET, algorithm="HS256")


def refused(check: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthFailure) as failure:
        check.verify(token)
    return str(failure.value)


# The static token file -------------------------------------------------------------------
TOKEN_ENTRIES = [
    {"sha256": hash_token("tok-alice"), "subject": "alice", "roles": ["writer"], "team": "a"},
    {"sha256": hash_token("tok-bob"), "subject": "bob", "roles": ["reader", "approver"]},
]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_token_file_maps_a_token_to_its_principal(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tokens{suffix}"
    data = {"tokens": TOKEN_ENTRIES}
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    tokens = TokenFile.load(path)
    assert tokens.verify("tok-alice") == Principal(
        "alice", frozenset({"writer"}), "a", authenticated=True
    )
    assert tokens.verify("tok-bob") == Principal(
        "bob", frozenset({"reader", "approver"}), "", authenticated=True
    )
    assert tokens.verify("tok-carol") is None
    assert "tok-alice" not in path.read_text()  # only hashes are stored


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([{**TOKEN_ENTRIES[0], "roles": ["root"]}], "unknown role"),
        ([{**TOKEN_ENTRIES[0], "roles": []}], "roles"),
        ([{**TOKEN_ENTRIES[0], "sha256": "tok-alice"}], "sha256"),
        ([{**TOKEN_ENTRIES[0], "token": "tok-alice"}], "token"),
        ([TOKEN_ENTRIES[0], TOKEN_ENTRIES[0]], "listed twice"),
    ],
)
def test_a_bad_token_file_is_refused_at_startup(
    tmp_path: Path, entries: list[dict[str, Any]], expected: str
) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": entries}))
    with pytest.raises(AuthConfigError, match=expected):
        TokenFile.load(path)


def test_a_missing_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="tokens.yaml"):
        TokenFile.load(tmp_path / "tokens.yaml")


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "tok-alice"),),
        (("authorization", "Basic dG9rOng="),),
        (("authorization", "Bearer "),),
        (("authorization", b"Bearer tok-alice"),),
        (*bearer("tok-alice"), *bearer("tok-bob")),
    ],
)
def test_the_authorization_metadata_must_be_one_bearer_token(
    metadata: tuple[tuple[str, str | bytes], ...],
) -> None:
    with pytest.raises(AuthFailure):
        bearer_token(metadata)


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token((("x-keel-user", "eve"), ("authorization", "bearer abc"))) == "abc"


# JWT ---------------------------------------------------------------------------------------
def test_hs256_token_gives_subject_roles_and_team() -> None:
    principal = verifier().verify(hs256())
    assert principal == Principal(
        "alice", frozenset({"writer", "reader"}), "fraud", authenticated=True
    )


def test_roles_claim_as_a_string_nested_and_unknown_roles_dropped() -> None:
    check = verifier(roles_claim="realm_access.roles", team_claim="org.team")
    token = hs256(
        roles=None,
        team=None,
        realm_access={"roles": ["approver", "superuser"]},
        org={"team": "risk"},
    )
    principal = check.verify(token)
    assert principal is not None
    assert (principal.roles, principal.team) == (frozenset({"approver"}), "risk")
    spaced = verifier().verify(hs256(roles="reader predictor root"))
    assert spaced is not None and spaced.roles == frozenset({"reader", "predictor"})


def test_rs256_token_verified_with_the_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    check = verifier(secret=b"", public_key=public_pem(rsa_key))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    principal = check.verify(token)
    assert principal is not None and principal.subject == "alice"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(), other, algorithm="RS256")
    assert "InvalidSignatureError" in refused(check, forged)


def test_a_key_signs_only_its_own_algorithm(rsa_key: rsa.RSAPrivateKey) -> None:
    """An HS256 token "signed" with the RSA public key as its secret (key confusion) and
    an HS256 token to a verifier holding only the RS256 key are refused."""
    check = verifier(secret=b"", public_key=public_pem(rsa_key))

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(public_pem(rsa_key), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert "not accepted" in refused(check, f"{head}.{body}.{b64(mac)}")
    assert "not accepted" in refused(check, hs256())
    unsigned = f"{b64(json.dumps({'alg': 'none'}).encode())}.{body}."
    assert "not accepted" in refused(verifier(), unsigned)


def test_expiry_is_honoured_with_the_leeway() -> None:
    now = int(time.time())
    check = verifier(leeway_s=30)
    assert check.verify(hs256(exp=now - 10)) is not None  # within the leeway
    assert "ExpiredSignatureError" in refused(check, hs256(exp=now - 60))
    assert "ImmatureSignatureError" in refused(check, hs256(nbf=now + 120))
    assert "MissingRequiredClaimError" in refused(check, hs256(exp=None))


def test_wrong_issuer_or_audience_is_refused() -> None:
    check = verifier()
    assert "InvalidIssuerError" in refused(check, hs256(iss="https://evil.test"))
    assert "InvalidAudienceError" in refused(check, hs256(aud="other-app"))
    assert "MissingRequiredClaimError" in refused(check, hs256(aud=None))
    assert "InvalidSignatureError" in refused(
        check, jwt.encode(claims(), b"x" * 40, algorithm="HS256")
    )


def test_a_subject_is_required() -> None:
    assert "sub" in refused(verifier(), hs256(sub=None))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"secret": b"short"}, "32"),
        ({"secret": b""}, "auth_jwt_secret"),
        ({"issuer": ""}, "issuer"),
        ({"audience": ""}, "audience"),
        ({"public_key": b"not a key"}, "RS256"),
    ],
)
def test_jwt_settings_that_cannot_work_are_refused(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(AuthConfigError, match=expected):
        verifier(**options)


# Settings ----------------------------------------------------------------------------------
def test_auth_is_off_by_default() -> None:
    settings = ServerSettings()
    assert settings.auth_mode == "none"
    assert build_authenticator(settings) is None


def test_auth_mode_names_known_methods_only() -> None:
    with pytest.raises(ValidationError):
        ServerSettings(auth_mode="tokens,oauth")


def test_tokens_and_jwt_together(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": TOKEN_ENTRIES}))
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    settings = ServerSettings(
        auth_mode="tokens,jwt",
        auth_token_file=str(path),
        auth_jwt_secret_file=str(tmp_path / "secret"),
        auth_jwt_issuer=ISSUER,
        auth_jwt_audience=AUDIENCE,
    )
    authenticator = build_authenticator(settings)
    assert isinstance(authenticator, Authenticator)
    assert authenticator.authenticate(bearer("tok-bob")).subject == "bob"
    assert authenticator.authenticate(bearer(hs256(sub="carol"))).subject == "carol"
    with pytest.raises(AuthFailure):
        authenticator.authenticate(bearer("tok-nobody"))


def test_tokens_mode_needs_a_file() -> None:
    with pytest.raises(AuthConfigError, match="auth_token_file"):
        build_authenticator(ServerSettings(auth_mode="tokens"))


def test_service_token_from_setting_or_file(tmp_path: Path) -> None:
    assert service_token(ServerSettings()) == ""
    assert service_token(ServerSettings(auth_service_token=SecretStr("abc"))) == "abc"
    (tmp_path / "token").write_text("from-file\n")
    assert service_token(ServerSettings(auth_service_token_file=str(tmp_path / "token"))) == (
        "from-file"
    )


def test_hash_command_prints_the_sha256(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("tok-alice\n"))
    assert auth.main(["hash"]) == 0
    assert capsys.readouterr().out == hash_token("tok-alice") + "\n"


def test_new_command_prints_a_token_and_its_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert auth.main(["new", "--subject", "ci", "--role", "writer", "--team", "fraud"]) == 0
    token, entry = capsys.readouterr().out.split("\n", 1)
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens:\n" + entry)
    found = TokenFile.load(path).verify(token)
    assert found == Principal("ci", frozenset({"writer"}), "fraud", authenticated=True)


# The role table ----------------------------------------------------------------------------
DESCRIPTORS = (registry_pb2, monitor_pb2, open_inference_pb2, inference_pb2)


def test_role_table_covers_every_rpc_of_every_service_and_nothing_else() -> None:
    served = {
        service.full_name: {method.name for method in service.methods}
        for module in DESCRIPTORS
        for service in module.DESCRIPTOR.services_by_name.values()
    }
    assert {name: set(methods) for name, methods in RPC_ROLES.items()} == served
    for methods in RPC_ROLES.values():
        for roles in methods.values():
            assert ADMIN in roles and roles <= ROLES


def test_role_table_decides_by_role() -> None:
    registry = "/keel.registry.v1.RegistryService/"
    assert may_call(frozenset({"reader"}), registry + "GetModel")
    assert not may_call(frozenset({"reader"}), registry + "CreateModel")
    assert not may_call(frozenset({"predictor"}), registry + "ListAuditEntries")
    assert may_call(frozenset({"predictor"}), "/inference.GRPCInferenceService/ModelInfer")
    assert not may_call(frozenset({"writer"}), registry + "ApproveModelVersion")
    assert not may_call(frozenset({"writer"}), registry + "DeleteModel")
    assert allowed_roles("/unknown.Service/Method") == frozenset()
    assert allowed_roles("not-a-method") == frozenset()


# Model ownership ---------------------------------------------------------------------------
def writer(team: str, *roles: str) -> Caller:
    return Caller("w", roles or ("writer",), "", team, authenticated=True)


def test_a_writer_changes_only_its_own_teams_models() -> None:
    owned = ModelRecord("churn", "BINARY_CLASSIFICATION", owner_team="b")
    check_owner(writer("b"), owned)
    check_owner(writer("a", "admin"), owned)
    check_owner(writer("*"), owned)
    check_owner(Caller("stated"), owned)  # auth off: nothing to enforce
    check_owner(writer("a"), ModelRecord("open", "REGRESSION"))
    with pytest.raises(PermissionDenied) as denied:
        check_owner(writer("a"), owned)
    assert denied.value.message == "permission denied"
    assert "request_id" in denied.value.metadata


def test_a_new_model_belongs_to_its_creators_team() -> None:
    assert owner_for_new_model(writer("a"), "", "models/m") == "a"
    assert owner_for_new_model(writer("a"), "a", "models/m") == "a"
    assert owner_for_new_model(writer("a", "admin"), "b", "models/m") == "b"
    with pytest.raises(PermissionDenied):
        owner_for_new_model(writer("a"), "b", "models/m")
    check_new_owner(writer("a"), "a", "models/m")
    with pytest.raises(PermissionDenied):
        check_new_owner(writer("a"), "", "models/m")


# The service's own token on its channels ----------------------------------------------------
class _Recording:
    """Stands in for a grpc.aio channel: each multi-callable records its calls' metadata."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def unary_unary(self, method: str, **_: Any) -> Any:
        def call(request: Any, *, metadata: Any = None, timeout: float | None = None) -> Any:
            self.sent.append((method, metadata))
            return request

        return call

    stream_stream = unary_unary


def test_with_service_token_adds_the_bearer_to_every_call() -> None:
    inner = _Recording()
    fake: Any = inner
    assert with_service_token(fake, ServerSettings()) is fake  # no token: the channel as it was
    channel: Any = with_service_token(fake, ServerSettings(auth_service_token=SecretStr("svc")))
    channel.unary_unary("/a.S/M")(b"", metadata=(("x-keel-user", "keel-monitor"),), timeout=1)
    channel.stream_stream("/a.S/N", request_serializer=None)(iter(()))
    channel.unary_unary("/a.S/M")(b"", metadata=bearer("own"))
    assert inner.sent == [
        ("/a.S/M", (("x-keel-user", "keel-monitor"), ("authorization", "Bearer svc"))),
        ("/a.S/N", (("authorization", "Bearer svc"),)),
        ("/a.S/M", bearer("own")),  # a call's own credentials win
    ]
