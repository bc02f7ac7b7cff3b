"""What gets traced, and when spans are recorded."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.sdk.trace.sampling import ParentBased

from services.common.telemetry import sampler_from_environment, traced_calls


class Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_health_and_reflection_are_not_traced() -> None:
    traced = traced_calls()
    assert traced(Details("/keel.registry.v1.RegistryService/GetModel"))
    assert traced(Details("/inference.GRPCInferenceService/ModelInfer"))
    assert not traced(Details("/grpc.health.v1.Health/Check"))
    assert not traced(Details("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"))


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


def test_with_the_parent_only_sampler_untraced_calls_skip_the_interceptor() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from services.common.telemetry import PARENT_ONLY, records_only_parented

    traced = traced_calls(parented_only=True)
    plain = Details("/keel.registry.v1.RegistryService/GetModel")
    parented = Details("/keel.registry.v1.RegistryService/GetModel")
    parented.invocation_metadata = (("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"),)
    assert not traced(plain) and traced(parented)
    assert records_only_parented(TracerProvider(sampler=PARENT_ONLY))
    assert not records_only_parented(TracerProvider())  # the default records every call
