"""``keel up``: several service processes as one, logs interleaved, stopped together.

Children start in order; each must write its ready file before the next starts, so a
later service can be told the address of an earlier one. Every line a child prints is
echoed with its name in front. SIGINT or SIGTERM stops every child with SIGTERM (their
own graceful shutdown), then SIGKILL after a grace period. If one child dies, the
others are stopped and its exit code is returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from services.common.service import Listening, read_ready_file

READY_POLL_S = 0.05
ReadyHook = Callable[[Mapping[str, Listening]], Awaitable[None]]


@dataclass(frozen=True)
class Child:
    """One process to supervise; ``env`` is added to the parent's environment.
    ``env_from`` computes more variables from the services already started."""

    name: str
    argv: Sequence[str]
    ready_file: Path
    env: Mapping[str, str] = field(default_factory=dict)
    env_from: Callable[[Mapping[str, Listening]], Mapping[str, str]] | None = None


class ChildFailed(RuntimeError):
    """A child exited before it was ready, or while the others were running."""

    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"{name} exited with code {returncode}")
        self.name = name
        self.returncode = returncode


async def _pump(name: str, stream: asyncio.StreamReader, out: TextIO, width: int) -> None:
    async for raw in stream:
        out.write(f"{name:<{width}} | {raw.decode(errors='replace').rstrip()}\n")
        out.flush()


class Supervisor:
    """Starts, watches and stops a list of children."""

    def __init__(
        self, children: Sequence[Child], *, out: TextIO = sys.stdout, grace_s: float = 15.0
    ):
        self._children = children
        self._out = out
        self._grace_s = grace_s
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._pumps: list[asyncio.Task[None]] = []
        self.listening: dict[str, Listening] = {}
        self._width = max((len(c.name) for c in children), default=0)

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        child.ready_file.unlink(missing_ok=True)
        env = {**os.environ, **child.env}
        if child.env_from is not None:
            env.update(child.env_from(self.listening))
        proc = await asyncio.create_subprocess_exec(
            *child.argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        self._pumps.append(
            asyncio.create_task(_pump(child.name, proc.stdout, self._out, self._width))
        )
        self._procs[child.name] = proc
        return proc

    async def _wait_ready(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        while not child.ready_file.exists():
            if proc.returncode is not None:
                raise ChildFailed(child.name, proc.returncode)
            await asyncio.sleep(READY_POLL_S)
        self.listening[child.name] = read_ready_file(child.ready_file)

    async def start(self) -> None:
        """Start every child in order, each only after the one before is ready."""
        for child in self._children:
            proc = await self._spawn(child)
            await self._wait_ready(child, proc)

    async def wait_any_exit(self) -> ChildFailed:
        """Block until some child exits; return what it exited with."""
        waits = {asyncio.create_task(p.wait()): n for n, p in self._procs.items()}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        finished = next(iter(done))
        return ChildFailed(waits[finished], finished.result())

    async def stop(self) -> None:
        """SIGTERM every running child, SIGKILL those still running after the grace period."""
        running = [p for p in self._procs.values() if p.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), self._grace_s)
        except TimeoutError:
            for proc in running:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*(p.wait() for p in running))
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def run(self, stop: asyncio.Event, on_ready: ReadyHook | None = None) -> int:
        """Start all, run until ``stop`` is set or a child exits; 0 on a requested stop.
        ``on_ready`` runs once every child is ready (e.g. to load a demo model)."""
        try:
            await self.start()
            self._out.write(
                "keel: ready: "
                + ", ".join(f"{n} on {s.address}" for n, s in self.listening.items())
                + " (Ctrl-C stops)\n"
            )
            self._out.flush()
            if on_ready is not None:
                await on_ready(self.listening)
            watcher = asyncio.create_task(self.wait_any_exit())
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
            watcher.cancel()
            stopper.cancel()
            if watcher in done:
                failed = watcher.result()
                self._out.write(f"keel: {failed} ; stopping the others\n")
                return failed.returncode or 1
            return 0
        except ChildFailed as failed:
            self._out.write(f"keel: {failed} before it was ready; stopping the others\n")
            return failed.returncode or 1
        finally:
            await self.stop()


async def run_until_signalled(supervisor: Supervisor, on_ready: ReadyHook | None = None) -> int:
    """Run ``supervisor`` until SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await supervisor.run(stop, on_ready)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
