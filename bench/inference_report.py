"""The inference benchmark's table, and its ratios beside the goals of issue 4."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.stats import median

SERVERS = ("mlserver-default", "mlserver-best", "keel", "keel-w2", "floor")
KEELS = ("keel", "keel-w2")
# (rows per request, clients): one client for latency, 32 for 1-row throughput, 8 for 100 rows.
SCENARIOS = ((1, 1), (1, 32), (100, 8))


@dataclass(frozen=True)
class Figures:
    rows: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # server CPU (all its processes) per answered request, warm-up included

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows


Results = dict[tuple[int, int, str], list[Figures]]  # (rows, clients, server) -> per run


def _cell(results: Results, key: tuple[int, int, str], pick: Callable[[Figures], float]) -> float:
    return median([pick(f) for f in results.get(key, [])])


def table(results: Results, swaps: dict[str, list[float]]) -> None:
    print(
        f"{'server':<17}{'1 row x 1 client':^26}{'1 row x 32 clients':^26}"
        f"{'100 rows x 8 clients':^27}{'swap ms':>8}"
    )
    print(
        f"{'':<17}{'p50 ms':>8}{'p99 ms':>8}{'req/s':>8}  {'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"  {'rows/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'p50':>10}"
    )
    for server in SERVERS:
        line = f"{server:<17}"
        for rows, clients in SCENARIOS:
            key = (rows, clients, server)
            rate = _cell(results, key, lambda f: f.rows_per_s)
            p50 = _cell(results, key, lambda f: f.p50_ms)
            p99 = _cell(results, key, lambda f: f.p99_ms)
            if clients == 1:
                line += f"{p50:>8.3f}{p99:>8.3f}{rate:>8.0f}  "
            else:
                line += f"{rate:>{9 if rows > 1 else 8}.0f}{p50:>8.2f}{p99:>8.2f}  "
        swap = median(swaps[server]) if swaps.get(server) else None
        line += f"{swap:>8.0f}" if swap is not None else f"{'-':>8}"
        print(line)
    print("server CPU ms per request (all its processes; the client and other load excluded):")
    for server in SERVERS:
        cells = [_cell(results, (r, c, server), lambda f: f.cpu_ms) for r, c in SCENARIOS]
        print(
            f"  {server:<17}"
            + "".join(f"{r}x{c}: {v:6.3f}   " for (r, c), v in zip(SCENARIOS, cells, strict=True))
        )
    errors = {k: sum(f.errors for f in v) for k, v in results.items() if any(f.errors for f in v)}
    for (rows, clients, server), count in sorted(errors.items()):
        print(f"!! {server}: {count} failed calls at {rows} row(s) x {clients} client(s)")


def _per_run(
    results: Results, mine: tuple[int, int, str], theirs: tuple[int, int, str]
) -> list[float]:
    return [
        a.rps / b.rps for a, b in zip(results.get(mine, []), results.get(theirs, []), strict=False)
    ]


def _line(label: str, ratios: list[float], goal: str, met: bool | None) -> None:
    runs = ", ".join(f"{r:.2f}" for r in ratios)
    verdict = "" if met is None else ("met" if met else "MISSED")
    print(f"  {label:<44}{median(ratios):>6.2f}x  goal {goal:<9}{verdict:<7} runs: {runs}")


def ratios(results: Results) -> None:
    print("ratios (median of per-run ratios; throughput ratios unless marked)")
    # The most a server that costs at least the floor could be against MLServer's best: when
    # under 3, the goal below cannot be met on this machine in this run.
    ceiling = _per_run(results, (1, 32, "floor"), (1, 32, "mlserver-best"))
    _line("floor / mlserver-best, 1 row x 32: ceiling", ceiling, "", None)
    for keel in KEELS:
        small = (1, 32, keel)
        big = (100, 8, keel)
        vs_best = _per_run(results, small, (1, 32, "mlserver-best"))
        _line(f"{keel} / mlserver-best, 1 row x 32", vs_best, ">= 3 (4)", median(vs_best) >= 3)
        vs_default = _per_run(results, small, (1, 32, "mlserver-default"))
        _line(f"{keel} / mlserver-default, 1 row x 32", vs_default, "", None)
        floor = [1 / r for r in _per_run(results, small, (1, 32, "floor")) if r]
        _line(f"floor / {keel}, 1 row x 32", floor, "<= 1.5", median(floor) <= 1.5)
        best_ml = [
            max(a.rps, b.rps)
            for a, b in zip(
                results.get((100, 8, "mlserver-best"), []),
                results.get((100, 8, "mlserver-default"), []),
                strict=False,
            )
        ]
        rows = [k.rps / m for k, m in zip(results.get(big, []), best_ml, strict=False)]
        _line(f"{keel} / best MLServer rows/s, 100 rows x 8", rows, ">= 3", median(rows) >= 3)
        p50 = [f.p50_ms for f in results.get((1, 1, keel), [])]
        runs = ", ".join(f"{p:.3f}" for p in p50)
        met = "met" if median(p50) <= 1.2 else "MISSED"
        label = f"{keel} p50 at 1 row x 1 client"
        print(f"  {label:<44}{median(p50):>6.3f}ms goal <= 1.2ms {met:<6} runs: {runs}")
