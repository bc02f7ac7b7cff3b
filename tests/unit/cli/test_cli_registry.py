"""``keel models|versions|alias|gates|approve|deploy|audit`` against a real registry: what
the tables and JSON say, and the exit codes scripts rely on."""

from __future__ import annotations

import json

import pytest

from keel.common.v1 import metric_pb2
from keel.registry.v1 import model_pb2
from tests.support.registry import objective
from tests.unit.cli.conftest import Registry
from tests.unit.cli.runner import keel, keel_json

F1_AT_LEAST_08 = objective("f1", metric_pb2.COMPARATOR_GREATER_OR_EQUAL, 0.8)


async def test_models_create_list_show(registry: Registry) -> None:
    created = await keel_json(
        "models", "create", "churn", "--objective", "f1 >= 0.8", "--tag", "team=risk",
        *registry.flag,
    )  # fmt: skip
    assert created["model"]["name"] == "models/churn"
    assert created["model"]["task"] == "BINARY_CLASSIFICATION"
    assert (
        created["model"]["objectives"][0] | {"metric": "f1", "threshold": 0.8}
        == (created["model"]["objectives"][0])
    )
    assert created["model"]["tags"] == {"team": "risk"}

    listed = await keel_json("models", "list", *registry.flag)
    assert [m["name"] for m in listed["models"]] == ["models/churn"]
    assert listed["models"][0]["latest_version"] == 0  # a number, not proto3-JSON's "0"

    table = await keel("models", "list", *registry.flag)
    assert table.exit_code == 0 and "churn" in table.stdout and "f1 >= 0.8" in table.stdout

    await registry.client.register("churn")
    await registry.client.set_alias("churn", "staging", 1)
    shown = await keel_json("models", "show", "churn", *registry.flag)
    assert shown["model"]["latest_version"] == 1
    assert [(a["name"], a["version"]) for a in shown["aliases"]] == [
        ("models/churn/aliases/staging", 1)
    ]


async def test_errors_exit_with_their_code_and_one_line_on_stderr(registry: Registry) -> None:
    missing = await keel("models", "show", "nope", "--json", *registry.flag)
    assert missing.exit_code == 3
    assert missing.stdout == ""
    assert missing.stderr.strip().splitlines() == ["keel: NOT_FOUND: model 'models/nope' not found"]

    await keel_json("models", "create", "churn", *registry.flag)
    taken = await keel("models", "create", "churn", *registry.flag)
    assert taken.exit_code == 4 and taken.stderr.startswith("keel: ALREADY_EXISTS: ")

    refused_by_server = await keel("models", "create", "Not A Name", *registry.flag)
    assert refused_by_server.exit_code == 2
    assert refused_by_server.stderr.startswith("keel: INVALID_ARGUMENT: model_id")

    bad_task = await keel("models", "create", "other", "--task", "clustering", *registry.flag)
    assert bad_task.exit_code == 2 and "task 'clustering'" in bad_task.stderr

    bad_flag = await keel("models", "list", "--no-such-flag", *registry.flag)
    assert bad_flag.exit_code == 2

    bad_address = await keel("models", "list", "--registry", "nowhere")
    assert bad_address.exit_code == 2 and "expected host:port" in bad_address.stderr
    assert "Traceback" not in missing.output + taken.output + bad_address.output


async def test_an_unreachable_service_exits_5() -> None:
    result = await keel("models", "list", "--registry", "127.0.0.1:1")
    assert result.exit_code == 5
    assert result.stderr.startswith("keel: UNAVAILABLE: ") and len(result.stderr.splitlines()) == 1


async def test_addresses_come_from_the_environment(registry: Registry) -> None:
    await registry.client.create_model("churn")
    result = await keel("models", "list", "--json", env={"KEEL_REGISTRY": registry.address})
    assert result.exit_code == 0
    assert [m["name"] for m in json.loads(result.stdout)["models"]] == ["models/churn"]


async def test_versions_list_show_compare(registry: Registry) -> None:
    await registry.client.create_model("churn")
    await registry.client.register("churn", evaluation={"f1": 0.9, "accuracy": 0.92})
    await registry.client.register("churn", evaluation={"f1": 0.85, "accuracy": 0.93})
    await registry.client.set_alias("churn", "production", 1)

    listed = await keel_json("versions", "list", "churn", *registry.flag)
    assert [(v["version"], v["status"], v["aliases"]) for v in listed["versions"]] == [
        (2, "READY", []),
        (1, "READY", ["production"]),
    ]
    table = await keel("versions", "list", "churn", *registry.flag)
    assert "f1=0.9" in table.stdout and "production" in table.stdout

    shown = await keel_json("versions", "show", "churn", "production", *registry.flag)
    version = shown["model_version"]
    assert (version["version"], version["flavor"]) == (1, "XGBOOST")
    assert [i["name"] for i in version["signature"]["inputs"]] == ["f0", "f1", "f2", "f3"]
    assert "reference_profile" not in version  # BASIC view unless --full

    compared = await keel_json("versions", "compare", "churn", "1", "v2", *registry.flag)
    rows = {(r["split"], r["metric"]): r for r in compared["metrics"]}
    assert rows[("holdout", "f1")]["a"] == 0.9 and rows[("holdout", "f1")]["b"] == 0.85
    assert rows[("holdout", "f1")]["delta"] == pytest.approx(-0.05)
    assert rows[("holdout", "accuracy")]["delta"] == pytest.approx(0.01)
    assert compared["signature"] == {
        "added": [],
        "removed": [],
        "changed": [],
        "class_labels_changed": False,
    }
    table = await keel("versions", "compare", "churn", "1", "2", *registry.flag)
    assert "-0.05" in table.stdout and "same inputs" in table.stdout

    missing = await keel("versions", "show", "churn", "9", *registry.flag)
    assert missing.exit_code == 3 and missing.stderr.startswith("keel: NOT_FOUND: ")
    no_alias = await keel("versions", "show", "churn", "canary", *registry.flag)
    assert no_alias.exit_code == 3


async def test_gates_check_alias_set_history_rollback(registry: Registry) -> None:
    await registry.client.create_model("churn", objectives=[F1_AT_LEAST_08])
    for f1 in (0.9, 0.5, 0.95):
        await registry.client.register("churn", evaluation={"f1": f1})
    await keel_json("alias", "set", "churn", "production", "1", *registry.flag)

    refused = await keel_json("gates", "check", "churn", "2", *registry.flag, expect=1)
    assert refused["allowed"] is False
    failed = [c for c in refused["gate_report"]["checks"] if c["outcome"] == "FAILED"]
    assert [c["kind"] for c in failed] == ["OBJECTIVE", "CHAMPION_COMPARISON"]
    table = await keel("gates", "check", "churn", "2", *registry.flag)
    assert table.exit_code == 1 and "Move refused" in table.stdout

    allowed = await keel_json("gates", "check", "churn", "3", *registry.flag)
    assert allowed["allowed"] is True and allowed["gate_report"]["current_version"] == 1

    blocked = await keel("alias", "set", "churn", "production", "2", *registry.flag)
    assert blocked.exit_code == 4 and blocked.stdout == ""
    assert blocked.stderr.startswith("keel: FAILED_PRECONDITION: the gates refused: ")
    assert "f1" in blocked.stderr and len(blocked.stderr.splitlines()) == 1

    moved = await keel_json(
        "alias", "set", "churn", "production", "3", "--reason", "CHG-7", "--user", "carol",
        *registry.flag,
    )  # fmt: skip
    assert (moved["alias"]["version"], moved["alias"]["previous_version"]) == (3, 1)
    assert moved["gate_report"]["allowed"] is True

    stale = await keel(
        "alias", "set", "churn", "production", "1", "--expected", "2", *registry.flag
    )
    assert stale.exit_code == 4 and stale.stderr.startswith("keel: ABORTED: ")

    history = await keel_json("alias", "history", "churn", "--alias", "production", *registry.flag)
    assert [(m["kind"], m["from_version"], m["to_version"]) for m in history["moves"]] == [
        ("SET", 1, 3),
        ("SET", 0, 1),
    ]
    assert history["moves"][0]["actor"] == "carol" and history["moves"][0]["reason"] == "CHG-7"

    back = await keel_json("alias", "rollback", "churn", "production", *registry.flag)
    assert (back["alias"]["version"], back["alias"]["previous_version"]) == (1, 3)
    table = await keel("alias", "history", "churn", *registry.flag)
    assert "rollback" in table.stdout and "CHG-7" in table.stdout


async def test_approve_and_reject(registry: Registry) -> None:
    policy = model_pb2.PromotionPolicy(protected_aliases=["production"], require_approval=True)
    await registry.client.create_model("churn", promotion_policy=policy)
    await registry.client.register("churn")  # registered by alice

    own = await keel("approve", "churn", "1", "--user", "alice", *registry.flag)
    assert own.exit_code == 4 and own.stderr.startswith("keel: PERMISSION_DENIED: ")
    unsaid = await keel("approve", "churn", "1", "--reject", "--user", "bob", *registry.flag)
    assert unsaid.exit_code == 2 and "--comment" in unsaid.stderr

    gated = await keel_json("gates", "check", "churn", "1", *registry.flag, expect=1)
    assert [c["kind"] for c in gated["gate_report"]["checks"] if c["outcome"] == "FAILED"] == [
        "APPROVAL"
    ]
    approved = await keel_json(
        "approve", "churn", "1", "--comment", "looks fine", "--user", "bob", *registry.flag
    )
    assert (
        approved["approval"] | {"approver": "bob", "decision": "APPROVED"} == (approved["approval"])
    )
    await keel_json("gates", "check", "churn", "1", *registry.flag)

    rejected = await keel_json(
        "approve", "churn", "1", "--reject", "--comment", "no", "--user", "dan", *registry.flag
    )
    assert rejected["approval"]["decision"] == "REJECTED"
    await keel_json("gates", "check", "churn", "1", *registry.flag, expect=1)


async def test_deploy_creates_then_updates(registry: Registry) -> None:
    await registry.client.create_model("churn")
    for _ in range(2):
        await registry.client.register("churn")
    await registry.client.set_alias("churn", "production", 1)

    created = await keel_json(
        "deploy", "churn-live", "--model", "churn",
        "--route", "production=90:control", "--route", "2=10:canary",
        "--shadow", "v1:mirror", "--sticky", "user", "--guard", "error-rate",
        *registry.flag,
    )  # fmt: skip
    deployment = created["deployment"]
    assert created["created"] is True and deployment["revision"] == 1
    routes = deployment["routes"]
    assert [(r["target"], r["weight"], r["variant"], r["canary"]) for r in routes] == [
        ("models/churn/aliases/production", 90, "control", False),
        ("models/churn/versions/2", 10, "v2", True),
    ]
    assert [(s["target"], s["variant"]) for s in deployment["shadows"]] == [
        ("models/churn/versions/1", "mirror")
    ]
    assert deployment["sticky_key_parameter"] == "user"
    assert deployment["guard_alert_rules"] == ["error-rate"]

    updated = await keel_json(
        "deploy", "churn-live", "--route", "2=100", "--clear-shadows", *registry.flag
    )
    deployment = updated["deployment"]
    assert updated["created"] is False and deployment["revision"] == 2
    assert [(r["target"], r["weight"]) for r in deployment["routes"]] == [
        ("models/churn/versions/2", 100)
    ]
    assert deployment.get("shadows") == [] and deployment["guard_alert_rules"] == ["error-rate"]

    table = await keel("deploy", "churn-live", "--sticky", "", *registry.flag)
    assert table.exit_code == 0 and "revision 3" in table.stdout

    no_routes = await keel("deploy", "fresh", "--model", "churn", *registry.flag)
    assert no_routes.exit_code == 2 and "--route" in no_routes.stderr
    bad_route = await keel("deploy", "fresh", "--model", "churn", "--route", "1=x", *registry.flag)
    assert bad_route.exit_code == 2 and "TARGET=WEIGHT" in bad_route.stderr
    bad_sum = await keel("deploy", "fresh", "--model", "churn", "--route", "1=50", *registry.flag)
    assert bad_sum.exit_code == 2 and bad_sum.stderr.startswith("keel: INVALID_ARGUMENT: ")
    unknown = await keel("deploy", "fresh", "--model", "nope", "--route", "1=100", *registry.flag)
    assert unknown.exit_code == 3


async def test_audit_lists_changes_newest_first(registry: Registry) -> None:
    await registry.client.create_model("churn")
    await registry.client.register("churn")
    await keel_json("alias", "set", "churn", "staging", "1", "--user", "carol", *registry.flag)
    nothing_earlier = await keel("alias", "rollback", "churn", "staging", *registry.flag)
    assert nothing_earlier.exit_code == 4

    every = await keel_json("audit", *registry.flag)
    sequences = [e["sequence"] for e in every["entries"]]
    assert sequences == sorted(sequences, reverse=True) and len(sequences) >= 4
    assert every["entries"][0]["action"] == "ALIAS_SET"

    moves = await keel_json(
        "audit", "--model", "churn", "--action", "alias_set", "--since", "1h", *registry.flag
    )
    assert [(e["action"], e["actor"], e["resource"]) for e in moves["entries"]] == [
        ("ALIAS_SET", "carol", "models/churn/aliases/staging")
    ]
    assert moves["entries"][0]["after"]["@type"] == "keel.registry.v1.Alias"
    assert moves["entries"][0]["after"]["version"] == 1

    oldest = await keel_json("audit", "--oldest-first", "--limit", "1", *registry.flag)
    assert [e["action"] for e in oldest["entries"]] == ["MODEL_CREATED"]
    table = await keel("audit", "--actor", "carol", *registry.flag)
    assert table.exit_code == 0 and "ALIAS_SET" in table.stdout and "carol" in table.stdout
    bad = await keel("audit", "--since", "yesterday-ish", *registry.flag)
    assert bad.exit_code == 2 and "time 'yesterday-ish'" in bad.stderr
