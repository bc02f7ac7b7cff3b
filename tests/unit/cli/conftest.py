"""A real registry in-process (SQLite under the test's folder) for the CLI's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.registry import Client, running_registry


@dataclass(frozen=True)
class Registry:
    client: Client
    address: str

    @property
    def flag(self) -> tuple[str, str]:
        return ("--registry", self.address)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    async with running_registry(url, tmp_path / "registry") as (client, port):
        yield Registry(client, f"127.0.0.1:{port}")
