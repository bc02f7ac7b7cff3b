"""Starting a server process and waiting for its ready file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from services.common.service import read_ready_file

ROOT = Path(__file__).resolve().parent.parent


def start(
    argv: Sequence[str], ready: Path, *, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``argv`` (its stdout discarded, its stderr shown) and return it with the address
    its ready file names once it exists."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen(list(argv), env=full_env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"{' '.join(argv[:4])}… did not start (see its output above)")
        time.sleep(0.05)
    return proc, read_ready_file(ready).address


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
