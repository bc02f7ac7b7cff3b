"""Test doubles shared by the client's unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.rpc import status_pb2

DETAILS_KEY = "grpc-status-details-bin"


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What a failed sync call raises: an RpcError that is also a grpc.Call."""

    def __init__(
        self, code: grpc.StatusCode, message: str, status: status_pb2.Status | None = None
    ) -> None:
        self._code, self._message = code, message
        self._trailers: tuple[tuple[str, Any], ...] = (
            ((DETAILS_KEY, status.SerializeToString()),) if status is not None else ()
        )

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return self._trailers

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False
