"""What the fault tests break things with: service processes that can be SIGKILLed and
started again on the same port and data, a PostgreSQL cluster of the test's own, a tiny
filesystem for the artifact store, and a record of every call a load made."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import pytest

from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from tests.support.inference import raw_request
from tests.support.processes import ROOT, python_env, serve_argv, stop, wait_ready

T = TypeVar("T")
# Words that only a leaked stack trace or SQL error would put in a status message.
LEAKS = ("Traceback", 'File "', "psycopg", "sqlalchemy", "OperationalError", "SELECT ", "INSERT ")


class ServiceProcess:
    """``keel <service> serve`` as a process that can be killed and started again on the
    same port and data folder; its output (every run) is appended to ``<name>.log``."""

    def __init__(self, service: str, tmp: Path, name: str, env: Mapping[str, str]) -> None:
        self.service, self.tmp, self.name = service, tmp, name
        self.env = dict(env)
        self.data_dir = tmp / name
        self.log = tmp / f"{name}.log"
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> str:
        """Start on the port of the previous run (any free port the first time); the address."""
        ready = self.tmp / f"{self.name}.json"
        ready.unlink(missing_ok=True)
        argv = serve_argv(self.service, self.data_dir, ready)
        argv[argv.index("--port") + 1] = str(self.port)
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=python_env(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        try:
            self.port = wait_ready(self.proc, ready, timeout_s).port
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.output()}") from None
        return self.address

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 15 s; nothing when not running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        stop(self.proc, grace_s=15)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def errors(self, limit: int = 6000) -> str:
        """The output from the first logged error or traceback on (what a failed assertion
        needs to show; the tail of a busy service's log rarely holds it)."""
        text = self.output()
        found = [text.find(mark) for mark in (" ERROR ", "Traceback") if mark in text]
        return text[min(found) :][:limit] if found else text[-limit:]


@contextmanager
def services(tmp: Path) -> Iterator[dict[str, ServiceProcess]]:
    """A place for the test's processes, all stopped (last started first) at the end."""
    started: dict[str, ServiceProcess] = {}
    try:
        yield started
    finally:
        for process in reversed(list(started.values())):
            process.stop()


# Calls and their outcomes -----------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One call a load made: what, when (monotonic), and how it ended."""

    kind: str
    started: float
    ended: float
    code: grpc.StatusCode
    details: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.code.name} {self.details}"


@dataclass
class Outcomes:
    calls: list[Outcome] = field(default_factory=list)

    async def record(self, kind: str, call: Awaitable[T]) -> T | None:
        """The call's reply, or None when it failed (after a pause, so that a client of
        a server that is down does not spin)."""
        started = time.monotonic()
        try:
            reply = await call
        except grpc.aio.AioRpcError as error:
            self.add(kind, started, error)
            await asyncio.sleep(0.02)
            return None
        self.add(kind, started)
        return reply

    def add(self, kind: str, started: float, error: grpc.aio.AioRpcError | None = None) -> None:
        code = grpc.StatusCode.OK if error is None else error.code()
        details = "" if error is None else str(error.details() or "")
        self.calls.append(Outcome(kind, started, time.monotonic(), code, details))

    def codes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self.calls:
            counts[call.code.name] = counts.get(call.code.name, 0) + 1
        return dict(sorted(counts.items()))

    def failed(self) -> list[Outcome]:
        return [c for c in self.calls if c.code != grpc.StatusCode.OK]

    def leaks(self) -> list[Outcome]:
        return [c for c in self.calls if any(word in c.details for word in LEAKS)]


class InferenceLoad:
    """``clients`` closed-loop callers of ``ModelInfer`` on one model, each on a channel
    of its own; every call is recorded with the version that answered it."""

    def __init__(self, address: str, model: str, rows: np.ndarray, clients: int = 8) -> None:
        self.address, self.model, self.rows, self.clients = address, model, rows, clients
        self.outcomes = Outcomes()
        self.versions: list[tuple[float, str]] = []  # (ended, model_version) of answers
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._running = True
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]

    async def stop(self) -> None:
        self._running = False
        await asyncio.gather(*self._tasks)

    async def _client(self, index: int) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]  # a connection per client
        async with grpc.aio.insecure_channel(self.address, options=options) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            i = index
            while self._running:
                i += 1
                request = raw_request(self.model, self.rows[i % len(self.rows)][None, :])
                reply = await self.outcomes.record(
                    "ModelInfer", stub.ModelInfer(request, timeout=10)
                )
                if reply is not None:
                    self.versions.append((time.monotonic(), reply.model_version))

    def answered_by(self, since: float = 0.0, until: float = float("inf")) -> set[str]:
        """The versions that answered calls ending between ``since`` and ``until``."""
        return {version for ended, version in self.versions if since <= ended < until}


# PostgreSQL of the test's own ----------------------------------------------------------
def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries installed (``/usr/lib/postgresql/*/bin``)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresCluster:
    """A cluster made with ``initdb`` in a temporary folder, listening on a Unix socket in
    that folder only (no TCP port, so it can never meet the machine's own cluster).
    PostgreSQL refuses to run as root: as root, it runs as the ``postgres`` user."""

    def __init__(self, bin_dir: Path, user: str | None) -> None:
        self.bin_dir = bin_dir
        self.user = user
        self.folder = Path(tempfile.mkdtemp(prefix="keel-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"

    @property
    def url(self) -> str:
        # With a socket folder as host, the port only names the socket file in it.
        return f"postgresql+psycopg://postgres@/keel?host={self.folder}&port=5432"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60)

    def create(self) -> None:
        if self.user is not None:
            shutil.chown(self.folder, self.user, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")
        settings = [
            "listen_addresses = ''",
            f"unix_socket_directories = '{self.folder}'",
            "fsync = off",
            "max_connections = 100",
        ]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        self.start()
        self._run("createdb", "-h", str(self.folder), "-U", "postgres", "keel")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def destroy(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def own_postgres() -> Iterator[PostgresCluster]:
    """A fresh cluster with an empty database ``keel``; the test is skipped, saying why,
    when this machine cannot make one."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin")
    user = None
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root, and no runuser to run PostgreSQL as another user")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and no 'postgres' user to run PostgreSQL as")
        user = "postgres"
    cluster = PostgresCluster(bin_dir, user)
    try:
        try:
            cluster.create()
        except subprocess.CalledProcessError as error:
            pytest.skip(f"cannot make a PostgreSQL cluster here: {error.stderr.strip()[-300:]}")
        yield cluster
    finally:
        cluster.destroy()


# A filesystem that fills up or turns read-only ----------------------------------------
@contextmanager
def tiny_filesystem(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (root only: a full disk that only this
    test fills); skipped, saying why, when mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only while inside: a read-only bind mount of it on itself (root
    ignores file modes), else its folders' modes without write bits."""
    if os.geteuid() != 0:
        folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
        modes = {path: path.stat().st_mode for path in folders}
        for path in folders:
            path.chmod(0o555)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount a folder here: {bind.stderr.decode().strip()}")
    remount = ["mount", "-o", "remount,bind,ro", str(folder)]
    if subprocess.run(remount, capture_output=True).returncode != 0:
        subprocess.run(["umount", str(folder)], capture_output=True, check=True)
        pytest.skip("cannot remount a bind mount read-only here")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True, check=True)
