"""``keel loadtest --json`` against real servers in-process: inference (closed and open
loop), registry reads and monitor ingestion, with the service's own count of what it
answered next to the load generator's; errors counted by status code and
``--max-error-rate`` turning them into exit 1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from keel.cli import build_app
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp
from tests.support.inference import churn_in_production, running_inference
from tests.support.monitor import log_classifier, running_monitor
from tests.support.registry import running_registry

APP = build_app()


async def keel(*args: str) -> Result:
    """``keel ARGS`` in a worker thread (it runs an event loop of its own)."""
    return await asyncio.to_thread(CliRunner().invoke, APP, list(args))


async def loadtest(*args: str, expect: int = 0) -> Any:
    result = await keel("loadtest", *args, "--json")
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def check_figures(report: dict[str, Any]) -> None:
    latency = report["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"]
    assert latency["p99"] <= latency["p99.9"] <= latency["max"]
    assert report["throughput_rps"] > 0


async def test_inference_closed_and_open_loop(tmp_path: Path) -> None:
    async with (
        churn_in_production(tmp_path) as (_registry, port),
        running_inference(port, tmp_path / "inference") as inference,
    ):
        flags = ("inference", "--model", "churn", "--inference", inference.address)
        closed = await loadtest(*flags, "--clients", "4", "--rows", "3", "--requests", "200")
        assert (closed["mode"], closed["clients"], closed["rows_per_request"]) == ("closed", 4, 3)
        assert (closed["requests"], closed["ok"], closed["rows"]) == (200, 200, 600)
        assert closed["errors"] == {} and closed["error_rate"] == 0
        assert list(closed["operations"]) == ["ModelInfer"]
        check_figures(closed)
        # inference logged every answered row (to its recorder, no monitor here)
        assert sum(record.rows for record in inference.predictions.records) == 600

        opened = await loadtest(*flags, "--rate", "200", "--duration", "1", "--clients", "2")
        assert (opened["mode"], opened["rate"], opened["unsent"]) == ("open", 200.0, 0)
        assert opened["ok"] == 200 and opened["errors"] == {}
        check_figures(opened)
        assert 0.99 <= opened["elapsed_s"] < 3


async def test_registry_reads_and_alias_resolves(tmp_path: Path) -> None:
    async with churn_in_production(tmp_path) as (_registry, port):
        report = await loadtest(
            "registry", "-m", "churn", "--registry", f"127.0.0.1:{port}", "-c", "3", "-n", "90"
        )
        assert report["ok"] == 90 and report["errors"] == {}
        assert {name: op["ok"] for name, op in report["operations"].items()} == {
            "GetModel": 30,
            "ListModelVersions": 30,
            "ResolveAlias": 30,
        }
        check_figures(report)


async def test_monitor_ingestion_counts_every_row(tmp_path: Path) -> None:
    async with running_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "registry") as (
        registry,
        port,
    ):
        address = f"127.0.0.1:{port}"
        version = await log_classifier(address, "churn")
        await registry.set_alias("churn", "production", version)
        async with running_monitor(
            address, f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "monitor"
        ) as monitor:
            report = await loadtest(
                "monitor", "-m", "churn", "--registry", address, "--monitor", monitor.address,
                "--rows", "50", "-c", "2", "-n", "40",
            )  # fmt: skip
            assert (report["ok"], report["rows"], report["errors"]) == (40, 2000, {})
            counted = await monitor.stub.ComputeDataQuality(
                pb.ComputeDataQualityRequest(scope=rp.ReportScope(model="models/churn")),
                timeout=30,
            )
            assert counted.report.row_count == 2000


async def test_errors_are_counted_by_code_and_max_error_rate_exits_1(tmp_path: Path) -> None:
    async with (
        churn_in_production(tmp_path) as (_registry, port),
        running_inference(
            port, tmp_path / "inference", fault_delays_s={"churn:1": 0.5}
        ) as inference,
    ):
        flags = ["inference", "-m", "churn", "--inference", inference.address]
        flags += ["-n", "20", "-c", "10", "--timeout", "0.1"]
        # every model call blocks 0.5 s, past the deadline: every request fails, and the
        # run still exits 0 ...
        report = await loadtest(*flags)
        assert (report["ok"], report["errors"], report["error_rate"]) == (
            0,
            {"DEADLINE_EXCEEDED": 20},
            1.0,
        )
        assert report["latency_ms"]["p50"] is None
        # ... unless the error rate is bounded
        result = await keel("loadtest", *flags, "--max-error-rate", "0.5")
        assert result.exit_code == 1
        assert "error rate 100.00% exceeds --max-error-rate 50.00%" in result.stderr
        # a model inference does not serve fails before the run, with NOT_FOUND's code
        missing = await keel(
            "loadtest", "inference", "-m", "nope", "--inference", inference.address
        )
        assert missing.exit_code == 3 and missing.stderr.startswith("keel: NOT_FOUND: ")


async def test_the_table_shows_the_percentiles(tmp_path: Path) -> None:
    async with churn_in_production(tmp_path) as (_registry, port):
        result = await keel(
            "loadtest", "registry", "-m", "churn", "--registry", f"127.0.0.1:{port}", "-n", "30"
        )
        assert result.exit_code == 0, result.stderr
        for heading in ("p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "ResolveAlias"):
            assert heading in result.stdout
