"""The CLI's pure parts: the exit-code table, flag parsers, and the JSON form of messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import any_pb2

from keel.commands import exit_code_for
from keel.commands._render import enum_text, message_dict, parse_time
from keel.commands.audit import audit_filter
from keel.commands.deploy import parse_route, parse_shadow, target_name
from keel.registry.v1 import alias_pb2, event_pb2, model_pb2

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 2),
        (grpc.StatusCode.NOT_FOUND, 3),
        (grpc.StatusCode.FAILED_PRECONDITION, 4),
        (grpc.StatusCode.ALREADY_EXISTS, 4),
        (grpc.StatusCode.ABORTED, 4),
        (grpc.StatusCode.PERMISSION_DENIED, 4),
        (grpc.StatusCode.UNAUTHENTICATED, 4),
        (grpc.StatusCode.UNAVAILABLE, 5),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 5),
        (grpc.StatusCode.INTERNAL, 5),
        (grpc.StatusCode.UNKNOWN, 5),
    ],
)
def test_every_status_has_one_exit_code(code: grpc.StatusCode, exit_code: int) -> None:
    assert exit_code_for(code) == exit_code


def test_times_are_rfc3339_now_or_a_span_ago() -> None:
    assert parse_time("2025-05-31T10:00:00Z", now=NOW) == datetime(2025, 5, 31, 10, tzinfo=UTC)
    assert parse_time("2025-05-31", now=NOW) == datetime(2025, 5, 31, tzinfo=UTC)
    assert parse_time("now", now=NOW) == NOW
    assert parse_time("24h", now=NOW) == NOW - timedelta(hours=24)
    assert parse_time("1h30m", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_time("7d", now=NOW) == NOW - timedelta(days=7)
    for bad in ("yesterday", "24x", "h", "1h oops"):
        with pytest.raises(ValueError, match="expected RFC 3339"):
            parse_time(bad, now=NOW)


def test_route_and_shadow_targets() -> None:
    assert target_name("churn", "3") == "models/churn/versions/3"
    assert target_name("churn", "v12") == "models/churn/versions/12"
    assert target_name("churn", "production") == "models/churn/aliases/production"
    assert target_name("churn", "other@2") == "models/other/versions/2"
    assert target_name("churn", "other@staging") == "models/other/aliases/staging"
    assert target_name("churn", "models/x/versions/1") == "models/x/versions/1"

    def fields(text: str) -> tuple[str, int, str, bool]:
        route = parse_route("churn", text)
        return route.target, route.weight, route.variant, route.canary

    assert fields("3=90") == ("models/churn/versions/3", 90, "", False)
    assert fields("3=90:control") == ("models/churn/versions/3", 90, "control", False)
    assert fields("4=10:canary") == ("models/churn/versions/4", 10, "", True)
    assert fields("4=10:new:canary") == ("models/churn/versions/4", 10, "new", True)
    assert fields("4=10:canary:canary") == ("models/churn/versions/4", 10, "canary", True)
    for bad in ("3", "=90", "3=ninety", "3=10:a:b", "3=10:a:b:canary"):
        with pytest.raises(ValueError, match="TARGET=WEIGHT"):
            parse_route("churn", bad)
    shadow = parse_shadow("churn", "other@2:mirror")
    assert (shadow.target, shadow.variant) == ("models/other/versions/2", "mirror")


def test_audit_filter_joins_the_flags() -> None:
    assert audit_filter() == ""
    assert audit_filter(model="churn", actions=["alias_set", "CHANGE_TYPE_ALIAS_DELETED"]) == (
        'model = "churn" AND action IN ("ALIAS_SET", "ALIAS_DELETED")'
    )
    since = audit_filter(since="2025-06-01T00:00:00Z", actor="bob", extra="sequence > 3")
    assert since == 'actor = "bob" AND time >= "2025-06-01T00:00:00Z" AND (sequence > 3)'


def test_messages_as_json_values() -> None:
    assert enum_text(model_pb2.ModelVersionStatus.DESCRIPTOR, 2) == "READY"
    assert enum_text(event_pb2.ChangeType.DESCRIPTOR, 10) == "ALIAS_SET"
    assert enum_text(model_pb2.ModelVersionStatus.DESCRIPTOR, 99) == "99"

    version = model_pb2.ModelVersion(version=7, status=model_pb2.MODEL_VERSION_STATUS_READY)
    version.tags["team"] = "risk"
    version.create_time.FromDatetime(NOW)
    as_json = message_dict(version)
    assert as_json["version"] == 7  # int64: a number, not proto3-JSON's "7"
    assert as_json["status"] == "READY"
    assert as_json["tags"] == {"team": "risk"}
    assert as_json["create_time"] == "2025-06-01T12:00:00Z"
    assert "artifact" not in as_json and "update_time" not in as_json  # unset messages

    packed = any_pb2.Any()
    packed.Pack(alias_pb2.Alias(name="models/churn/aliases/production", version=3))
    entry = message_dict(event_pb2.AuditEntry(sequence=9, after=packed))
    assert entry["after"] | {"@type": "keel.registry.v1.Alias", "version": 3} == entry["after"]
    assert "before" not in entry
