"""An artifact upload shows its progress: the bar counts the bytes as gRPC takes them,
and the stored artifact is the one sent."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

from rich.console import Console

from keel.client import Keel
from tests.support.registry import running_registry, xgboost_artifact


async def test_upload_with_a_progress_bar_stores_the_artifact(tmp_path: Path) -> None:
    data = xgboost_artifact(trees=400).data  # 325.5 kB
    shown = io.StringIO()
    console = Console(file=shown, force_terminal=True, width=120)
    async with running_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "a") as (_, port):

        def upload() -> str:
            with Keel(registry=f"127.0.0.1:{port}") as keel:
                stored = keel.registry.upload_artifact(data, progress=True, console=console)
                return stored.sha256

        sha256 = await asyncio.to_thread(upload)
    assert sha256 == hashlib.sha256(data).hexdigest()
    text = shown.getvalue()
    assert "uploading artifact" in text
    total = f"{len(data) / 1000:.1f}"
    assert f"0.0/{total} kB" in text and f"{total}/{total} kB" in text  # every byte counted
