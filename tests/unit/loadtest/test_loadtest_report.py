"""The report: one JSON document with the totals and each operation's figures, and the
table with errors by code and the requests left unsent."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from keel.loadtest.recorder import Recorder
from keel.loadtest.report import Report


def report(recorder: Recorder, *, unsent: int = 0) -> Report:
    return Report(
        target="inference",
        model="churn",
        mode="open",
        clients=2,
        rate=50.0,
        rows_per_request=4,
        timeout_s=1.0,
        elapsed_s=2.0,
        unsent=unsent,
        recorder=recorder,
    )


def test_the_document_has_totals_errors_by_code_and_operations() -> None:
    recorder = Recorder()
    for i in range(1, 9):
        recorder.record("ModelInfer", i / 1000, rows=4)
    recorder.fail("ModelInfer", 1.0, "DEADLINE_EXCEEDED")
    recorder.fail("ModelInfer", 0.001, "UNAVAILABLE")
    document = json.loads(json.dumps(report(recorder, unsent=3).as_dict()))
    assert (document["requests"], document["ok"], document["rows"]) == (10, 8, 32)
    assert document["errors"] == {"DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 1}
    assert (document["error_count"], document["error_rate"]) == (2, 0.2)
    assert (document["throughput_rps"], document["rows_per_s"]) == (4.0, 16.0)
    # p50 is the 4 ms bucket's highest value (within 0.8 %); max is exact
    assert document["latency_ms"]["p50"] == pytest.approx(4.0, rel=0.008)
    assert document["latency_ms"]["max"] == 8.0
    assert (document["mode"], document["rate"], document["unsent"]) == ("open", 50.0, 3)
    assert list(document["operations"]) == ["ModelInfer"]
    assert report(recorder).error_rate == 0.2


def test_the_table_names_errors_and_unsent_requests() -> None:
    recorder = Recorder()
    recorder.record("ModelInfer", 0.002, rows=4)
    recorder.fail("ModelInfer", 1.0, "DEADLINE_EXCEEDED")
    out = io.StringIO()
    report(recorder, unsent=3).render(Console(file=out, width=160))
    text = out.getvalue()
    assert "open loop at 50/s over 2 channel(s), 4 row(s) each" in text
    assert "errors: DEADLINE_EXCEEDED 1 (50.00% of requests)" in text
    assert "unsent: 3 requests" in text
    assert "p99.9 ms" in text


def test_an_empty_run_reports_no_latencies() -> None:
    document = report(Recorder()).as_dict()
    assert document["requests"] == 0 and document["error_rate"] == 0.0
    assert set(document["latency_ms"].values()) == {None}
