"""Start real service processes the way a user does, and wait for their ready files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from services.common.service import Listening, read_ready_file

ROOT = Path(__file__).resolve().parents[2]


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment, with the repository importable (for ``tests.support``)."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def spawn(argv: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        list(argv),
        cwd=ROOT,
        env=python_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str], ready_file: Path, timeout_s: float = 30) -> Listening:
    deadline = time.monotonic() + timeout_s
    while not ready_file.exists():
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process exited with {proc.returncode} before ready:\n{output}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no ready file {ready_file} after {timeout_s}s")
        time.sleep(0.05)
    return read_ready_file(ready_file)


def probe_argv(ready_file: Path) -> list[str]:
    return [sys.executable, "-m", "tests.support.probe", str(ready_file)]


def serve_argv(service: str, data_dir: Path, ready_file: Path, *extra: str) -> list[str]:
    """``python -m keel <service> serve`` on a free port, metrics off, with a ready file."""
    return [
        sys.executable,
        "-m",
        "keel",
        service,
        "serve",
        *extra,
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--data-dir",
        str(data_dir),
        "--ready-file",
        str(ready_file),
    ]


def start_service(
    service: str, tmp: Path, name: str, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start one service process with its data in ``tmp/name``; (process, address) once
    it is ready. A stale ready file of an earlier process of that name is removed first."""
    ready = tmp / f"{name}.json"
    ready.unlink(missing_ok=True)
    proc = spawn(serve_argv(service, tmp / name, ready), env=env)
    return proc, wait_ready(proc, ready).address


def stop(proc: subprocess.Popen[str], grace_s: float = 20) -> str:
    """SIGTERM (SIGKILL after ``grace_s``), then collect the piped output, which closes
    the pipe; the output ("" when not piped or already collected)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return output or ""


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """A list to add started processes to; each is stopped at exit, the last first."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            stop(proc)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited meanwhile
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited child nobody reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
