"""How requests are sent: closed loop (N clients, each sending its next request when the
previous one is answered) or open loop (a fixed rate, whatever the answers do).

Open-loop latency is measured from each request's *intended* send time, ``start + i /
rate``, not from when it actually left: when the service stalls, the requests that
should have been sent during the stall are counted with the time they waited. Timing
from the actual send would hide that queueing (Gil Tene's "coordinated omission"): a
closed-loop client simply stops asking while the service is stuck, and one slow answer
then hides the hundreds that a real population of users would have seen.

Both loops stop at the first of two bounds: a duration and a number of requests. They
read time from the running event loop (``loop.time()``), so a test can drive them on an
event loop with virtual time.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from keel.loadtest.recorder import Sink


class Workload(ABC):
    """The requests of one target: what request ``index`` is, and how to send it."""

    @abstractmethod
    def operation(self, index: int) -> str:
        """The operation request ``index`` calls (``ModelInfer``, ``GetModel``…)."""

    @abstractmethod
    async def send(self, client: int, index: int) -> int:
        """Sends request ``index`` on client ``client``'s channel; the rows answered.
        A failed call raises ``grpc.aio.AioRpcError``."""


@dataclass(frozen=True)
class Bounds:
    """When a run stops: after ``duration_s``, or after ``requests`` requests (0: no
    bound), whichever comes first."""

    duration_s: float
    requests: int = 0

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(f"duration {self.duration_s}: expected a positive number of seconds")
        if self.requests < 0:
            raise ValueError(f"requests {self.requests}: expected >= 0 (0: no bound)")


@dataclass(frozen=True)
class RunTime:
    """How long a run took, and (open loop) the requests that fell due but were never
    sent because ``max_in_flight`` requests were still waiting when the duration ended."""

    elapsed_s: float
    unsent: int = 0


async def timed(workload: Workload, client: int, index: int, since: float, sink: Sink) -> None:
    """Sends request ``index`` and reports its outcome, timed from ``since``."""
    loop = asyncio.get_running_loop()
    operation = workload.operation(index)
    try:
        rows = await workload.send(client, index)
    except grpc.aio.AioRpcError as error:
        sink.fail(operation, loop.time() - since, error.code().name)
    else:
        sink.record(operation, loop.time() - since, rows)


async def closed_loop(workload: Workload, clients: int, bounds: Bounds, sink: Sink) -> RunTime:
    """``clients`` clients, each with one request in flight at a time; latency is from
    each request's send to its answer."""
    if clients < 1:
        raise ValueError(f"clients {clients}: expected >= 1")
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + bounds.duration_s
    issued = 0

    async def client(number: int) -> None:
        nonlocal issued
        while loop.time() < end and not (bounds.requests and issued >= bounds.requests):
            index, issued = issued, issued + 1
            await timed(workload, number, index, loop.time(), sink)

    await asyncio.gather(*(client(n) for n in range(clients)))
    return RunTime(loop.time() - start)


def due_requests(rate: float, bounds: Bounds) -> int:
    """How many requests an open loop at ``rate`` means to send within ``bounds``."""
    due = math.ceil(round(bounds.duration_s * rate, 9))
    return min(due, bounds.requests) if bounds.requests else due


async def open_loop(
    workload: Workload,
    rate: float,
    clients: int,
    bounds: Bounds,
    sink: Sink,
    max_in_flight: int = 1024,
) -> RunTime:
    """Request ``i`` is due at ``start + i / rate`` and goes to client ``i % clients``;
    its latency is measured from that due time (see the module docstring). At most
    ``max_in_flight`` requests are outstanding: past that, due requests wait for a slot,
    and the wait counts in their latency. Requests still waiting for a slot when the
    duration ends are not sent; they are reported as ``unsent``."""
    if not rate > 0:
        raise ValueError(f"rate {rate}: expected a positive number of requests per second")
    if clients < 1 or max_in_flight < 1:
        raise ValueError(f"clients {clients}, max_in_flight {max_in_flight}: expected >= 1")
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + bounds.duration_s
    due = due_requests(rate, bounds)
    slots = asyncio.Semaphore(max_in_flight)
    running: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slots.release()

    sent = 0
    while sent < due:
        intended = start + sent / rate
        # sleeps until it is due, or (when behind) just lets the sent requests run
        await asyncio.sleep(max(0.0, intended - loop.time()))
        if not await _slot(slots, end - loop.time()):
            break
        task = asyncio.create_task(timed(workload, sent % clients, sent, intended, sink))
        running.add(task)
        task.add_done_callback(finished)
        sent += 1
    await _all(running)
    return RunTime(loop.time() - start, unsent=due - sent)


async def _slot(slots: asyncio.Semaphore, within_s: float) -> bool:
    """Takes a slot, waiting at most ``within_s``; False when none came free."""
    if not slots.locked():
        await slots.acquire()
        return True
    if within_s <= 0:
        return False
    try:
        await asyncio.wait_for(slots.acquire(), within_s)
    except TimeoutError:
        return False
    return True


async def _all(tasks: Sequence[asyncio.Task[None]] | set[asyncio.Task[None]]) -> None:
    if tasks:
        await asyncio.gather(*list(tasks))
