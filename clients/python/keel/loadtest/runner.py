"""One load run: open the channels, set the target's workload up, drive it closed- or
open-loop within the bounds, and return the report."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

import grpc

from keel.client.channel import parse_address
from keel.loadtest.recorder import Recorder
from keel.loadtest.report import Report
from keel.loadtest.scheduler import Bounds, RunTime, Workload, closed_loop, open_loop
from keel.loadtest.workloads import (
    Options,
    inference_workload,
    monitor_workload,
    open_channel,
    registry_workload,
)


class Target(StrEnum):
    """The service a run loads."""

    INFERENCE = "inference"
    REGISTRY = "registry"
    MONITOR = "monitor"


@dataclass(frozen=True)
class LoadSpec:
    """Everything a run needs. ``rate`` 0 means closed loop with ``clients`` clients;
    a positive ``rate`` means open loop at that many requests per second, spread over
    ``clients`` channels with at most ``max_in_flight`` outstanding."""

    target: Target
    options: Options
    bounds: Bounds
    clients: int = 1
    rate: float = 0.0
    max_in_flight: int = 1024
    registry: str = "127.0.0.1:50051"
    inference: str = "127.0.0.1:50052"
    monitor: str = "127.0.0.1:50053"

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise ValueError(f"clients {self.clients}: expected >= 1")
        if self.rate < 0:
            raise ValueError(f"rate {self.rate}: expected >= 0 requests per second")
        if self.max_in_flight < 1:
            raise ValueError(f"max in flight {self.max_in_flight}: expected >= 1")
        if self.options.rows < 1:
            raise ValueError(f"rows {self.options.rows}: expected >= 1")
        if not self.options.timeout_s > 0:
            raise ValueError(f"timeout {self.options.timeout_s}: expected a positive number")
        parse_address(self.address)
        if self.target is Target.MONITOR:
            parse_address(self.registry)

    @property
    def address(self) -> str:
        return {
            Target.INFERENCE: self.inference,
            Target.REGISTRY: self.registry,
            Target.MONITOR: self.monitor,
        }[self.target]


@asynccontextmanager
async def _workload(spec: LoadSpec) -> AsyncIterator[Workload]:
    """The target's workload on ``clients`` fresh channels, closed afterwards. Setup
    calls that fail raise ``grpc.aio.AioRpcError``; a model the target cannot load
    raises ValueError."""
    async with AsyncExitStack() as stack:
        channels: list[grpc.aio.Channel] = []
        for _ in range(spec.clients):
            channel = open_channel(spec.address)
            stack.push_async_callback(channel.close, None)
            channels.append(channel)
        if spec.target is Target.INFERENCE:
            yield await inference_workload(channels, spec.options)
        elif spec.target is Target.REGISTRY:
            yield await registry_workload(channels, spec.options)
        else:
            registry = open_channel(spec.registry)
            stack.push_async_callback(registry.close, None)
            yield await monitor_workload(channels, registry, spec.options)


async def run_load(spec: LoadSpec) -> Report:
    """Runs ``spec`` and returns what it measured."""
    recorder = Recorder()
    async with _workload(spec) as workload:
        timing: RunTime
        if spec.rate > 0:
            timing = await open_loop(
                workload, spec.rate, spec.clients, spec.bounds, recorder, spec.max_in_flight
            )
        else:
            timing = await closed_loop(workload, spec.clients, spec.bounds, recorder)
    return Report(
        target=spec.target.value,
        model=spec.options.model,
        mode="open" if spec.rate > 0 else "closed",
        clients=spec.clients,
        rate=spec.rate or None,
        rows_per_request=None if spec.target is Target.REGISTRY else spec.options.rows,
        timeout_s=spec.options.timeout_s,
        elapsed_s=timing.elapsed_s,
        unsent=timing.unsent,
        recorder=recorder,
    )


def run(spec: LoadSpec) -> Report:
    """``run_load`` on an event loop of its own."""
    return asyncio.run(run_load(spec))
