"""Each service reads its own prefix; flags (init values) win over the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.inference.settings import InferenceSettings
from services.monitor.settings import MonitorSettings
from services.registry.settings import RegistrySettings


def test_defaults_are_the_documented_ports() -> None:
    assert (RegistrySettings().port, RegistrySettings().metrics_port) == (50051, 9101)
    assert (InferenceSettings().port, InferenceSettings().metrics_port) == (50052, 9102)
    assert (MonitorSettings().port, MonitorSettings().metrics_port) == (50053, 9103)


def test_each_service_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_REGISTRY_DATABASE_URL", "postgresql+psycopg://db/registry")
    monkeypatch.setenv("KEEL_MONITOR_PORT", "0")
    monkeypatch.setenv("KEEL_INFERENCE_REGISTRY_ADDRESS", "10.0.0.1:50051")
    assert RegistrySettings().database("registry.db") == "postgresql+psycopg://db/registry"
    assert MonitorSettings().port == 0
    assert MonitorSettings().database_url == ""
    assert InferenceSettings().registry_address == "10.0.0.1:50051"
    assert RegistrySettings().port == 50051


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_REGISTRY_PORT", "6000")
    assert RegistrySettings(port=0).port == 0


def test_sqlite_in_the_data_dir_by_default(tmp_path: Path) -> None:
    url = RegistrySettings(data_dir=tmp_path).database("registry.db")
    assert url == f"sqlite:///{tmp_path.resolve()}/registry.db"


def test_a_bad_value_names_the_variable_and_the_expectation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEEL_REGISTRY_PORT", "70000")
    with pytest.raises(ValidationError) as caught:
        RegistrySettings()
    assert "port" in str(caught.value)
    assert "less than or equal to 65535" in str(caught.value)


@pytest.mark.parametrize("seconds", ["1", "59", "-1"])
def test_a_join_window_is_none_or_a_minute_at_least(
    monkeypatch: pytest.MonkeyPatch, seconds: str
) -> None:
    monkeypatch.setenv("KEEL_MONITOR_JOIN_WINDOW_S", seconds)
    with pytest.raises(ValidationError) as caught:
        MonitorSettings()
    assert "join_window_s" in str(caught.value)
    expected = "greater than or equal to 0" if seconds == "-1" else "or at least 60 seconds"
    assert expected in str(caught.value)


@pytest.mark.parametrize("seconds", [0, 60, 86_400])
def test_no_join_window_or_one_of_a_minute_or_more_is_taken(
    monkeypatch: pytest.MonkeyPatch, seconds: int
) -> None:
    monkeypatch.setenv("KEEL_MONITOR_JOIN_WINDOW_S", str(seconds))
    assert MonitorSettings().join_window_s == seconds


def test_a_monitor_reading_jetstream_needs_a_join_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_MONITOR_JOIN_WINDOW_S", "0")
    monkeypatch.setenv("KEEL_MONITOR_NATS_URL", "nats://127.0.0.1:4222")
    with pytest.raises(ValidationError) as caught:
        MonitorSettings()
    assert "join_window_s" in str(caught.value) and "redelivered" in str(caught.value)
    monkeypatch.setenv("KEEL_MONITOR_JOIN_WINDOW_S", "60")
    assert MonitorSettings().join_window_s == 60
