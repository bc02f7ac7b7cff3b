"""A run's report: one JSON document (``as_dict``) or rich tables (``render``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from keel.loadtest.recorder import PERCENTILES, Recorder, stats_dict


@dataclass(frozen=True)
class Report:
    """What a run did and measured. Throughput counts answered requests (and their
    rows) per second of the run; latency percentiles are of answered requests only;
    failed requests are counted by status code."""

    target: str
    model: str
    mode: str  # "closed" or "open"
    clients: int
    rate: float | None
    rows_per_request: int | None  # None for registry reads
    timeout_s: float
    elapsed_s: float
    unsent: int
    recorder: Recorder

    @property
    def error_rate(self) -> float:
        total = self.recorder.total()
        attempted = total.ok + total.error_count
        return total.error_count / attempted if attempted else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "model": self.model,
            "mode": self.mode,
            "clients": self.clients,
            "rate": self.rate,
            "rows_per_request": self.rows_per_request,
            "timeout_s": self.timeout_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "unsent": self.unsent,
            **stats_dict(self.recorder.total(), self.elapsed_s),
            "operations": {
                name: stats_dict(stats, self.elapsed_s)
                for name, stats in sorted(self.recorder.operations.items())
            },
        }

    def render(self, console: Console) -> None:
        document = self.as_dict()
        loop = (
            f"open loop at {self.rate:g}/s over {self.clients} channel(s)"
            if self.mode == "open"
            else f"closed loop, {self.clients} client(s)"
        )
        rows = "" if self.rows_per_request is None else f", {self.rows_per_request} row(s) each"
        console.print(f"{self.target} '{self.model}': {loop}{rows}, {document['elapsed_s']:.1f} s")
        console.print(_figures(document))
        errors = document["errors"]
        if errors:
            console.print(
                "errors: "
                + ", ".join(f"{code} {count}" for code, count in errors.items())
                + f" ({document['error_rate']:.2%} of requests)"
            )
        if self.unsent:
            console.print(
                f"unsent: {self.unsent} requests fell due but found no free slot before the end"
            )


def _figures(document: dict[str, Any]) -> Table:
    names = [name for name, _ in PERCENTILES]
    table = Table(title=None, header_style="bold")
    for column in ("operation", "requests", "ok", "errors", "req/s", "rows/s"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for name in [*names, "max"]:
        table.add_column(f"{name} ms", justify="right")
    rows = list(document["operations"].items())
    if len(rows) > 1:
        rows.append(("total", document))
    for operation, stats in rows:
        latency = stats["latency_ms"]
        table.add_row(
            operation,
            str(stats["requests"]),
            str(stats["ok"]),
            str(stats["error_count"]),
            f"{stats['throughput_rps']:.1f}",
            f"{stats['rows_per_s']:.1f}",
            *("-" if latency[n] is None else f"{latency[n]:.3f}" for n in [*names, "max"]),
        )
    return table
