"""When spans are recorded (what gets traced: tests/integration/test_server_plumbing.py)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.sampling import ParentBased

from services.common.telemetry import sampler_from_environment


def test_without_an_exporter_only_sampled_callers_are_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_SAMPLER",
    ):
        monkeypatch.delenv(name, raising=False)
    sampler = sampler_from_environment()
    assert isinstance(sampler, ParentBased)
    assert "AlwaysOffSampler" in sampler.get_description()  # type: ignore[no-untyped-call]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert sampler_from_environment() is None  # the SDK default: record everything
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    assert sampler_from_environment() is None  # the SDK reads the standard variables


def test_a_provider_says_whether_it_records_only_parented_calls() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from services.common.telemetry import PARENT_ONLY, records_only_parented

    assert records_only_parented(TracerProvider(sampler=PARENT_ONLY))
    assert not records_only_parented(TracerProvider())  # the default records every call
