"""The schedulers on an event loop with virtual time (a sleep takes no real time, so
the figures are exact): the open loop times each request from its intended send time,
so a stall shows in every request that should have been sent during it; both loops stop
at the first bound; failures are counted by status code."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import pytest

from keel.loadtest.recorder import Recorder
from keel.loadtest.scheduler import Bounds, RunTime, Workload, closed_loop, open_loop


class VirtualSelector(selectors.DefaultSelector):
    """Instead of blocking for ``timeout``, moves the loop's clock forward by it."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout:
            self.clock[0] += timeout
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = [1000.0]
        super().__init__(VirtualSelector(self.clock))

    def time(self) -> float:
        return self.clock[0]


def run_virtual(main: Callable[[], Coroutine[Any, Any, RunTime]]) -> RunTime:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


class Sink:
    """Keeps every outcome in order of completion."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: list[tuple[float, str]] = []

    def record(self, operation: str, latency_s: float, rows: int) -> None:
        self.latencies.append(latency_s)

    def fail(self, operation: str, latency_s: float, code: str) -> None:
        self.failures.append((latency_s, code))


class Service(Workload):
    """A service with ``workers`` workers (requests beyond them queue at the server) that
    takes ``service_s(index)`` to answer request ``index``."""

    def __init__(self, service_s: Callable[[int], float], workers: int = 1000) -> None:
        self.service_s = service_s
        self.workers = asyncio.Semaphore(workers)
        self.sent: dict[int, float] = {}
        self.clients: dict[int, int] = {}

    def operation(self, index: int) -> str:
        return "Call"

    async def send(self, client: int, index: int) -> int:
        self.sent[index] = asyncio.get_running_loop().time()
        self.clients[index] = client
        async with self.workers:
            await asyncio.sleep(self.service_s(index))
        return 1


def stall_at(index: int, stall_s: float, usual_s: float = 0.005) -> Callable[[int], float]:
    return lambda i: stall_s if i == index else usual_s


def test_open_loop_sends_on_schedule_and_times_each_request_from_its_due_time() -> None:
    service, sink = Service(lambda i: 0.005), Sink()
    timing = run_virtual(lambda: open_loop(service, 100, 4, Bounds(1.0), sink))
    assert len(sink.latencies) == 100
    assert sink.latencies == pytest.approx([0.005] * 100, abs=1e-9)
    start = service.sent[0]
    assert [service.sent[i] - start for i in range(100)] == pytest.approx(
        [i / 100 for i in range(100)], abs=1e-9
    )
    assert [service.clients[i] for i in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert timing.elapsed_s == pytest.approx(0.995, abs=1e-9)
    assert timing.unsent == 0


def expected_after_stall(i: int) -> float:
    """Latency of request i at 100/s when request 10 took 1 s and the others 5 ms, one
    at a time: request 10 waits 1 s; each later one waits for the backlog ahead of it,
    which shrinks by 5 ms per request (10 ms apart, 5 ms each) until it is gone."""
    if i < 10:
        return 0.005
    return max(0.005, 1.0 - 0.005 * (i - 10))


@pytest.mark.parametrize("where", ["server queue", "client slots"])
def test_a_stall_shows_in_every_request_due_during_it(where: str) -> None:
    """Coordinated omission: timed from their actual send, every request but one took
    5 ms. Timed from their due time, the hundred requests due during the 1 s stall took
    0.5 to 1 s, as users arriving at 100/s would have seen."""
    sink = Sink()
    if where == "server queue":  # one server worker: requests queue at the service
        service = Service(stall_at(10, 1.0), workers=1)
        run = lambda: open_loop(service, 100, 1, Bounds(3.0), sink)  # noqa: E731
    else:  # one request in flight: due requests wait for a slot in the client
        service = Service(stall_at(10, 1.0))
        run = lambda: open_loop(service, 100, 1, Bounds(3.0), sink, max_in_flight=1)  # noqa: E731
    timing = run_virtual(run)
    assert len(sink.latencies) == 300
    assert sink.latencies == pytest.approx([expected_after_stall(i) for i in range(300)], abs=1e-9)
    assert sum(latency > 0.5025 for latency in sink.latencies) == 100
    assert timing.unsent == 0


def test_the_stall_hidden_by_timing_from_the_actual_send() -> None:
    """The same stall, closed loop (one client): one slow request and nothing else."""
    service, sink = Service(stall_at(10, 1.0)), Sink()
    run_virtual(lambda: closed_loop(service, 1, Bounds(3.0, requests=300), sink))
    assert sum(latency > 0.5 for latency in sink.latencies) == 1


def test_open_loop_stops_sending_at_the_end_and_counts_what_was_due_but_unsent() -> None:
    """10/s for 2 s with one slot and 0.9 s answers: requests 0-2 go out (at 0, 0.9 and
    1.8 s), the 17 others are still waiting for the slot at 2 s."""
    service, sink = Service(lambda i: 0.9), Sink()
    timing = run_virtual(lambda: open_loop(service, 10, 1, Bounds(2.0), sink, max_in_flight=1))
    assert sink.latencies == pytest.approx([0.9, 1.7, 2.5], abs=1e-9)
    assert timing.unsent == 17
    assert timing.elapsed_s == pytest.approx(2.7, abs=1e-9)


def test_open_loop_stops_at_the_request_bound() -> None:
    service, sink = Service(lambda i: 0.002), Sink()
    timing = run_virtual(lambda: open_loop(service, 1000, 2, Bounds(60.0, requests=50), sink))
    assert len(sink.latencies) == 50
    assert timing.elapsed_s == pytest.approx(0.049 + 0.002, abs=1e-9)


def test_closed_loop_keeps_one_request_per_client_in_flight_until_a_bound() -> None:
    service, sink = Service(lambda i: 0.01), Sink()
    # each client starts requests at 0, 0.01 … 0.99 s, all before the end at 0.995 s
    timing = run_virtual(lambda: closed_loop(service, 4, Bounds(0.995), sink))
    assert len(sink.latencies) == 400
    assert sink.latencies == pytest.approx([0.01] * 400, abs=1e-9)
    assert timing.elapsed_s == pytest.approx(1.0, abs=1e-9)

    service, sink = Service(lambda i: 0.01), Sink()
    run_virtual(lambda: closed_loop(service, 4, Bounds(60.0, requests=10), sink))
    assert len(sink.latencies) == 10 and sorted(service.sent) == list(range(10))


class Failing(Service):
    """Answers even requests; odd ones fail with UNAVAILABLE after 1 ms."""

    async def send(self, client: int, index: int) -> int:
        await asyncio.sleep(0.001)
        if index % 2:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down", ""
            )
        return 3


def test_failures_are_counted_by_status_code_apart_from_latencies() -> None:
    recorder = Recorder()
    run_virtual(lambda: open_loop(Failing(lambda i: 0), 100, 1, Bounds(1.0), recorder))
    stats = recorder.operations["Call"]
    assert (stats.ok, stats.rows, dict(stats.errors)) == (50, 150, {"UNAVAILABLE": 50})
    assert stats.latency_ns.max == 1_000_000


def test_bounds_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="duration"):
        Bounds(0)
    with pytest.raises(ValueError, match="requests"):
        Bounds(1, requests=-1)
    with pytest.raises(ValueError, match="rate"):
        run_virtual(lambda: open_loop(Service(lambda i: 0), 0, 1, Bounds(1), Sink()))
