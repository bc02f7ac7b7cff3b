"""``keel report`` against a real registry and monitor in-process: the HTML page read the
way a reader reads it (parsed, not grepped) — the shifted feature shows drift, the
performance section has the production figures, the canary is worse than the control;
with no traffic the reference distributions are there and the page says so; the exit
codes scripts rely on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner, Result

from keel.commands.report import report
from keel.monitor.v1 import monitor_pb2 as pb
from keel.registry.v1 import deployment_pb2
from keel.registry.v1 import registry_pb2 as rpb
from tests.support.monitor import (
    NS,
    Monitor,
    batch,
    feedback,
    frame,
    labels_for,
    log_classifier,
    running_monitor,
)
from tests.support.registry import Client, running_registry

DESCRIPTION = "<script>alert('churn')</script> & friends"
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def all(self, tag: str, cls: str | None = None) -> Iterator[Node]:
        for child in self.children:
            if child.tag == tag and (cls is None or cls in child.attrs.get("class", "").split()):
                yield child
            yield from child.all(tag, cls)

    def one(self, tag: str, cls: str | None = None) -> Node:
        found = list(self.all(tag, cls))
        assert len(found) == 1, f"expected one <{tag} class={cls}>, found {len(found)}"
        return found[0]

    def by_id(self, ident: str) -> Node:
        return next(n for n in self.walk() if n.attrs.get("id") == ident)

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            yield child
            yield from child.walk()

    def content(self) -> str:
        return "".join(self.text) + "".join(c.content() for c in self.children)


class Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].text.append(data)


def parse(page: str) -> Node:
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == [tree.root], "unclosed elements"
    return tree.root


def assert_self_contained(page: str, root: Node) -> None:
    """Nothing a browser would fetch: no external URL, script, stylesheet or image."""
    for node in root.walk():
        assert node.tag not in {"script", "link", "img", "iframe", "object", "embed"}
        for name in ("src", "href", "xlink:href", "action", "data"):
            value = node.attrs.get(name, "")
            assert "http" not in value and "//" not in value, (node.tag, name, value)
    lowered = page.lower()
    assert "http:" not in lowered and "https:" not in lowered
    assert "url(" not in lowered and "@import" not in lowered


def bars(article: Node, cls: str) -> list[float]:
    return [float(r.attrs["height"]) for r in article.one("svg").all("rect", cls) if r.children]


def column(root: Node, feature: str) -> Node:
    (found,) = [a for a in root.all("article", "column") if a.attrs["data-feature"] == feature]
    return found


def facts(article: Node) -> dict[str, str]:
    """The label/value rows of the first table in ``article``."""
    rows = next(article.all("table")).all("tr")
    return {r.one("th").content(): r.one("td").content() for r in rows}


def run(*args: str) -> Result:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("report")(report)
    return CliRunner().invoke(app, ["report", *args])


@dataclass
class Services:
    registry: str
    monitor: Monitor
    client: Client


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    registry_db, monitor_db = tmp_path / "registry.db", tmp_path / "monitor.db"
    async with running_registry(f"sqlite:///{registry_db}", tmp_path / "registry") as (
        client,
        port,
    ):
        address = f"127.0.0.1:{port}"
        async with running_monitor(address, f"sqlite:///{monitor_db}", tmp_path / "m") as monitor:
            yield Services(address, monitor, client)


async def log_traffic(monitor: Monitor, version: int) -> float:
    """Two hours ago 2000 rows like the reference; now 1500 control and 1500 canary rows
    with x0 shifted by one standard deviation; labels for all, the canary's 30% wrong.
    Returns the accuracy over all rows."""
    rng = np.random.default_rng(3)
    correct = 0
    parts = [
        ("old", "control", frame(2000, 30).to_numpy(), time.time_ns() - 2 * 3600 * NS, 0.1),
        ("new", "control", frame(1500, 31, shift=1.0).to_numpy(), None, 0.1),
        ("can", "canary", frame(1500, 32, shift=1.0).to_numpy(), None, 0.3),
    ]
    for sequence, (prefix, variant, x, when_ns, flip) in enumerate(parts, start=1):
        ids = [f"{prefix}{i}" for i in range(len(x))]
        message = batch(
            "churn",
            version,
            x,
            ids,
            sequence=sequence,
            variant=variant,
            deployment="deployments/churn",
            when_ns=when_ns,
        )
        await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))
        truth = labels_for(x)
        wrong = rng.random(len(x)) < flip
        truth[wrong] = 1 - truth[wrong]
        predicted = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
        correct += int((predicted == truth).sum())
        await monitor.stub.LogFeedback(feedback("churn", ids, truth))
    return correct / 5000


async def deploy_control_and_canary(client: Client, version: int) -> None:
    target = f"models/churn/versions/{version}"
    deployment = deployment_pb2.Deployment(
        model="models/churn",
        routes=[
            deployment_pb2.Route(target=target, weight=50, variant="control"),
            deployment_pb2.Route(target=target, weight=50, variant="canary", canary=True),
        ],
    )
    await client.stub.CreateDeployment(
        rpb.CreateDeploymentRequest(deployment=deployment, deployment_id="churn"),
        metadata=client.md,
        timeout=10,
    )


async def test_report_with_traffic_shows_drift_performance_and_variants(
    services: Services, tmp_path: Path
) -> None:
    version = await log_classifier(
        services.registry,
        "churn",
        protected=["x1"],
        objectives=["accuracy >= 0.99"],
        description=DESCRIPTION,
    )
    await services.client.set_alias("churn", "production", version)
    await deploy_control_and_canary(services.client, version)
    accuracy = await log_traffic(services.monitor, version)
    out = tmp_path / "out" / "churn.html"
    out.parent.mkdir()
    result = await asyncio.to_thread(
        run, "churn", "--registry", services.registry, "--monitor", services.monitor.address,
        "--out", str(out), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["path"] == str(out) and summary["predictions"] == 5000
    assert summary["drifted_features"] == ["x0"] and summary["version"] == version
    page = out.read_text(encoding="utf-8")
    root = parse(page)
    assert_self_contained(page, root)
    assert root.one("head").one("title").content() == "Keel report: churn version 1"
    # The description is shown as text, not run as a script.
    model = facts(root.by_id("model"))
    assert model["Description"] == DESCRIPTION and "&lt;script&gt;" in page
    assert model["Version"] == "1 (alias production)" and model["Aliases"] == "production → v1"

    drift = root.by_id("drift")
    verdicts = {
        a.attrs["data-feature"]: a.one("span", "verdict").content()
        for a in drift.all("article", "column")
    }
    assert verdicts == {
        "x0": "drift",
        "x1": "no drift",
        "x2": "no drift",
        "x3": "no drift",
        "prediction": "drift",
        "label": verdicts["label"],  # reported once labels arrived; its verdict is not the point
    }
    x0 = column(root, "x0")
    stats = facts(x0)
    assert stats["method"] == "Wasserstein (normalised)"
    assert float(stats["statistic"]) > 0.3 and stats["threshold"] == "0.1 (effect size)"
    # Ten deciles of the reference each hold a tenth; the shifted current piles up at the top.
    reference, current = bars(x0, "ref"), bars(x0, "cur")
    assert len(reference) == len(current) == 10 and min(reference) > 0
    assert current[-1] > 2 * reference[-1] and current[0] < reference[0]
    x1_reference, x1_current = bars(column(root, "x1"), "ref"), bars(column(root, "x1"), "cur")
    assert max(abs(r - c) for r, c in zip(x1_reference, x1_current, strict=True)) < 0.3 * max(
        x1_reference
    )

    performance = root.by_id("performance")
    figures = facts(performance)
    assert figures["predictions"] == "5,000" and figures["labelled"] == "5,000 (100.0%)"
    assert float(figures["accuracy"]) == pytest.approx(accuracy, abs=1e-3)
    _, objectives = performance.all("table")
    (row,) = [r for r in objectives.all("tr") if r.children[0].tag == "td"]
    cells = [c.content() for c in row.children]
    assert cells[:3] == ["accuracy >= 0.99", f"{accuracy:.4g}", "failed"]
    volume, metrics = performance.all("svg")
    predictions = [float(r.attrs["height"]) for r in volume.all("rect", "ref") if r.children]
    assert len(predictions) >= 24 and sum(h > 0 for h in predictions) == 2  # hourly
    assert len(list(metrics.all("circle", "line-0"))) == 2  # accuracy in two windows

    fairness = root.by_id("fairness")
    x1_groups = fairness.one("article", "fairness")
    assert x1_groups.attrs["data-feature"] == "x1"
    assert "four-fifths rule failed" in x1_groups.content()
    assert len(list(x1_groups.one("svg").all("rect", None))) >= 5

    variants = root.by_id("variants")
    assert variants.one("h3").content() == "deployment churn: canary against control"
    rows = {
        r.children[0].content(): r.children[-1].content()
        for r in variants.one("table").all("tr")
        if r.children[0].tag == "td"
    }
    assert rows["accuracy"] == "candidate worse"
    # The canary's rows are shifted towards positives: more selected, neither better nor worse.
    assert rows["selection_rate"] == "candidate higher"
    assert set(rows) == {"accuracy", "f1", "roc_auc", "selection_rate"}


async def test_report_without_traffic_shows_the_reference(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await log_classifier(services.registry, "fresh", protected=["x1"])
    monkeypatch.chdir(tmp_path)
    result = await asyncio.to_thread(
        run, "fresh", "--registry", services.registry, "--monitor", services.monitor.address
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "wrote keel-report-fresh.html"
    page = (tmp_path / "keel-report-fresh.html").read_text(encoding="utf-8")
    root = parse(page)
    assert_self_contained(page, root)
    drift = root.by_id("drift")
    assert drift.one("p", "note").content().startswith("No traffic yet")
    articles = list(drift.all("article", "column"))
    names = [a.attrs["data-feature"] for a in articles]
    assert names == ["x0", "x1", "x2", "x3", "prediction", "label"]
    for article in articles:
        assert article.one("span", "verdict").content() == "no traffic"
        reference = bars(article, "ref")
        # Deciles of the numeric columns; the two classes of the training labels.
        assert len(reference) == (2 if article.attrs["data-feature"] == "label" else 10)
        assert all(h > 0 for h in reference) and bars(article, "cur") == []
    x0 = column(root, "x0")
    assert x0.one("svg").attrs["aria-label"] == "x0: reference distribution"
    assert "reference 2,000 rows" in x0.one("p", "facts").content()
    assert root.by_id("performance").one("p", "note").content().startswith("No traffic yet")
    assert root.by_id("fairness").one("p", "note").content().startswith("No traffic yet")
    assert "two variants" in root.by_id("variants").one("p", "note").content()
    assert model_version_line(root) == "1 (latest version (no production alias))"


def model_version_line(root: Node) -> str:
    return facts(root.by_id("model"))["Version"]


async def test_exit_codes_unknown_model_and_unreachable_monitor(
    services: Services, tmp_path: Path
) -> None:
    out = tmp_path / "r.html"
    missing = await asyncio.to_thread(
        run, "ghost", "--registry", services.registry, "--out", str(out)
    )
    assert missing.exit_code == 3 and not out.exists()
    (line,) = missing.stderr.splitlines()
    assert line.startswith("keel: NOT_FOUND: ") and "ghost" in line
    await log_classifier(services.registry, "churn")
    # Nothing listens on port 1.
    down = await asyncio.to_thread(
        run, "churn", "--registry", services.registry, "--monitor", "127.0.0.1:1", "--out", str(out)
    )  # fmt: skip
    assert down.exit_code == 5 and not out.exists()
    (line,) = down.stderr.splitlines()
    assert line.startswith("keel: UNAVAILABLE: the monitor at 127.0.0.1:1 did not answer")
    assert "Traceback" not in down.output
    bad = await asyncio.to_thread(run, "churn", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and len(bad.stderr.splitlines()) == 1
