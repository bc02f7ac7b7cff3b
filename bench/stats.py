"""Small numeric helpers every benchmark shares: percentiles, medians, CPU time."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def percentile_ms(seconds: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of latencies given in seconds, in milliseconds."""
    if not seconds:
        return float("nan")
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of another process (Linux ``/proc``), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> set[int]:
    """``pid`` and its live descendants (worker processes), from Linux ``/proc``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    return tree


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and its live descendants (MLServer's, Keel's
    inference workers, the monitor's counting process); None once ``pid`` is gone."""
    own = process_cpu_seconds(pid)
    if own is None:
        return None
    return own + sum(process_cpu_seconds(member) or 0.0 for member in process_tree(pid) - {pid})


@dataclass
class CpuShare:
    """How busy the server process and this (client) process were during a phase, as a
    fraction of one core."""

    server: float | None
    client: float

    def describe(self) -> str:
        server = "?" if self.server is None else f"{100 * self.server:.0f}%"
        return f"server {server}, client {100 * self.client:.0f}% of a core"


class CpuMeter:
    """Measures the CPU share of the server (its process and their children) and of this
    process over a ``with`` block."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.share = CpuShare(None, 0.0)

    def __enter__(self) -> CpuMeter:
        self._wall = time.perf_counter()
        self._client = time.process_time()
        self._server = tree_cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        server = tree_cpu_seconds(self.pid)
        self.share = CpuShare(
            None if server is None or self._server is None else (server - self._server) / wall,
            (time.process_time() - self._client) / wall,
        )


def machine_note() -> str:
    """Cores and load average, so a reader can tell a busy machine from a slow server."""
    try:
        load = Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        load = "?"
    return f"machine: {os.cpu_count()} cores, 1-minute load average {load} before starting"
