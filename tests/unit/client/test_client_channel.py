"""Channel service config: default deadline, retries on UNAVAILABLE, exceptions."""

from __future__ import annotations

import pytest

from keel.client.channel import ChannelPolicy, parse_address, service_config
from keel.client.registry import SERVICE, UPLOAD_METHOD, WATCH_METHOD


def test_every_method_gets_a_deadline_and_retries_on_unavailable() -> None:
    config = service_config(
        [SERVICE],
        ChannelPolicy(timeout_s=7.5),
        long_methods=[UPLOAD_METHOD],
        streaming_methods=[WATCH_METHOD],
    )
    default, long, stream = config["methodConfig"]
    assert default["name"] == [{"service": SERVICE}]
    assert default["timeout"] == "7.5s"
    assert default["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert default["retryPolicy"]["maxAttempts"] == 4
    assert long == {
        "name": [{"service": SERVICE, "method": "UploadArtifact"}],
        "retryPolicy": default["retryPolicy"],
    }
    assert stream == {"name": [{"service": SERVICE, "method": "WatchEvents"}]}


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:50051", ("127.0.0.1", 50051)), ("[::1]:9", ("[::1]", 9)), ("h:1", ("h", 1))],
)
def test_addresses_are_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["localhost", ":50051", "h:", "h:x", "h:70000", "[::1:5"])
def test_other_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_address(address)
