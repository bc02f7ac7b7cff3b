"""The service config a channel carries: deadlines and retries, none for streams."""

from __future__ import annotations

from services.common.channels import ChannelPolicy, service_config


def test_calls_get_a_deadline_and_retries_on_unavailable_only() -> None:
    config = service_config(["keel.registry.v1.RegistryService"], [], ChannelPolicy(timeout_s=5))
    [method] = config["methodConfig"]
    assert method["name"] == [{"service": "keel.registry.v1.RegistryService"}]
    assert method["timeout"] == "5s"
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert method["retryPolicy"]["maxAttempts"] == 4


def test_named_streams_get_no_deadline_and_no_retry() -> None:
    config = service_config(
        ["keel.registry.v1.RegistryService"],
        ["keel.registry.v1.RegistryService/WatchEvents"],
        ChannelPolicy(),
    )
    stream = config["methodConfig"][1]
    assert stream == {
        "name": [{"service": "keel.registry.v1.RegistryService", "method": "WatchEvents"}]
    }
