"""The monitor benchmark's printout: Evidently's figures, Keel's ingestion, verdict latency
and memory, the ratios beside the goals of issue 5, and both tools' drift verdicts side
by side."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bench import monitor_data as data
from bench.monitor_load import DriftTimings, Ingestion, RssSamples
from bench.monitor_storage import StorageCost
from bench.stats import CpuShare, median, percentile_ms
from keel.monitor.v1 import monitor_pb2, reports_pb2

GOAL_ROWS_PER_S = 500_000
GOAL_RATIO = 30
GOAL_VERDICT_MS = 10.0
FLAT_GROWTH = 0.05  # RSS "flat": the second half of the ingestion adds < 5 % (and 20 MiB)


@dataclass
class Evidently:
    """What ``bench.monitor_evidently`` printed."""

    figures: dict[str, Any]

    @property
    def rows_per_s(self) -> float:
        """Current rows per second of ``Report.run`` alone (its most favourable figure)."""
        return float(self.figures["current_rows"]) / float(self.figures["run_s"])

    def verdicts(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = self.figures["verdicts"]
        return found


@dataclass
class Verdicts:
    """ComputeDrift timings after a given number of ingested rows, spread over how many
    base buckets (1: all rows made within the same few minutes)."""

    rows: int
    timings: DriftTimings
    buckets: int = 1

    @property
    def label(self) -> str:
        spread = "" if self.buckets == 1 else f" over {self.buckets} buckets"
        return f"{self.rows:,} rows{spread}"


@dataclass
class ServerRuns:
    """One server's ingestions of the benchmark's streams, from one producer and from two,
    each with the CPU used meanwhile."""

    single: list[Ingestion] = field(default_factory=list)
    double: list[Ingestion] = field(default_factory=list)
    cpu_single: list[CpuShare] = field(default_factory=list)
    cpu_double: list[CpuShare] = field(default_factory=list)

    def add(self, producers: int, ingestion: Ingestion, share: CpuShare) -> None:
        (self.single if producers == 1 else self.double).append(ingestion)
        (self.cpu_single if producers == 1 else self.cpu_double).append(share)

    @property
    def every(self) -> list[Ingestion]:
        return self.single + self.double

    @property
    def every_cpu(self) -> list[CpuShare]:
        return self.cpu_single + self.cpu_double


@dataclass
class KeelFigures:
    default: ServerRuns = field(default_factory=ServerRuns)  # Keel's monitor as it starts
    # the same streams to bench.monitor_floor (parses and acks, nothing else)
    floor: ServerRuns = field(default_factory=ServerRuns)
    # the same streams to a monitor with KEEL_MONITOR_JOIN_WINDOW_S=0 (aggregates only)
    windowless: ServerRuns = field(default_factory=ServerRuns)
    bodies_s: float = 0.0  # building every batch body (features, outputs, times)
    requests_s: list[float] = field(default_factory=list)  # headers + framing, per ingestion
    verdicts: list[Verdicts] = field(default_factory=list)
    rss: RssSamples = field(default_factory=RssSamples)
    rss_rows: int = 0
    rss_ingestion: Ingestion | None = None
    cpu_rss: CpuShare | None = None
    disk_mb: float = 0.0  # the monitor's --data-dir after the RSS phase
    storage: StorageCost | None = None  # the join window's storage in sqlite3 alone


def evidently_lines(ev: Evidently) -> None:
    f = ev.figures
    print(
        f"evidently {f['evidently']} (pandas {f['pandas']}): Report([DataDriftPreset()]) "
        f"on {f['reference_rows']:,} reference and {f['current_rows']:,} current rows "
        f"x {f['columns']} columns"
    )
    print(
        f"  Report.run {f['run_s']:.2f} s = {ev.rows_per_s:,.0f} current rows/s; "
        f"snapshot.dict() {1000 * f['dict_s']:.1f} ms; frames built in {f['frames_s']:.2f} s "
        f"(not counted); import {f['import_s']:.1f} s"
    )
    print(
        f"  RSS before run {f['rss_before_run_mb']:.0f} MiB (imports + frames), peak "
        f"{f['peak_rss_mb']:.0f} MiB, end {f['rss_end_mb']:.0f} MiB; "
        f"drifted: {', '.join(f['drifted']) or 'none'}"
    )


def _rate(ingestions: list[Ingestion]) -> float:
    return median([i.rows_per_s for i in ingestions])


def _cpu(shares: list[CpuShare]) -> str:
    if not shares:
        return "?"
    return shares[len(shares) // 2].describe()


def _ms_per_thousand(ingestions: list[Ingestion], shares: list[CpuShare], *, client: bool) -> float:
    """Median CPU milliseconds per 1,000 rows of the server's processes (or the client)."""
    costs: list[float] = []
    for ingestion, share in zip(ingestions, shares, strict=True):
        used = share.client if client else share.server
        if used is not None:  # None: the server's CPU could not be read
            costs.append(1e6 * used / ingestion.rows_per_s)
    return median(costs)


def _goal(label: str, value: str, goal: str, met: bool) -> None:
    print(f"  {label:<52}{value:>14}  goal {goal:<12}{'met' if met else 'MISSED'}")


def keel_lines(keel: KeelFigures, evidently: Evidently | None) -> None:
    rows = keel.default.single[0].rows if keel.default.single else 0
    batches = rows // data.BLOCK
    print(
        f"keel monitor: {rows:,} rows per ingestion in {batches:,} batches of {data.BLOCK:,} "
        f"rows, {len(keel.default.single)} run(s), medians; pre-built before timing: bodies "
        f"{1e6 * keel.bodies_s / max(batches, 1):.0f} us/batch, ids + framing "
        f"{1e6 * median(keel.requests_s) / max(batches, 1):.0f} us/batch (not counted)"
    )
    print(f"{'':<30}{'rows/s':>12}{'seconds':>10}  CPU (fraction of a core)")
    for label, runs, cpu in (
        ("1 producer", keel.default.single, keel.default.cpu_single),
        ("2 producers", keel.default.double, keel.default.cpu_double),
        ("no join window, 1 producer", keel.windowless.single, keel.windowless.cpu_single),
        ("no join window, 2 producers", keel.windowless.double, keel.windowless.cpu_double),
    ):
        if runs:
            seconds = median([i.seconds for i in runs])
            print(f"  {label:<28}{_rate(runs):>12,.0f}{seconds:>10.2f}  {_cpu(cpu)}")
    for label, runs in (("1 producer", keel.floor.single), ("2 producers", keel.floor.double)):
        if runs:
            seconds = median([i.seconds for i in runs])
            print(f"  floor, {label:<21}{_rate(runs):>12,.0f}{seconds:>10.2f}")
    if keel.floor.single:
        print(
            "  (floor: a bare grpc.aio LogPredictions that parses each batch and acks it, "
            "the same streams right after Keel's)"
        )
    if keel.windowless.single:
        print(
            "  (no join window: a second monitor with KEEL_MONITOR_JOIN_WINDOW_S=0, which keeps "
            "no logged rows, so no labels and no re-sent-id check; the same streams after the "
            "floor)"
        )
    windows = sorted({w for i in keel.default.every for p in i.producers for w in p.windows})
    print(f"  flow-control windows seen (max_in_flight_batches): {windows}")
    for verdict in keel.verdicts:
        t = verdict.timings
        print(
            f"  ComputeDrift after {verdict.label}: p50 {percentile_ms(t.seconds, 0.5):.2f} "
            f"ms, p90 {percentile_ms(t.seconds, 0.9):.2f} ms over {len(t.seconds)} calls "
            f"(first call {1000 * t.first:.2f} ms); report.row_count "
            f"{t.answer.report.row_count:,}"
            + ("" if t.answer.report.row_count == verdict.rows else "  !! expected the rows sent")
        )
    rss_lines(keel)
    ratio_lines(keel, evidently)
    cpu_lines(keel, evidently)


def rss_lines(keel: KeelFigures) -> None:
    samples = keel.rss.samples
    if not samples:
        return
    rss = [s[1] for s in samples]
    ingestion = keel.rss_ingestion
    rate = f", {ingestion.rows_per_s:,.0f} rows/s" if ingestion else ""
    cpu = f", {keel.cpu_rss.describe()}" if keel.cpu_rss else ""
    print(
        f"  monitor RSS (its processes together) while ingesting {keel.rss_rows:,} rows "
        f"(1 producer, batches built while sending{rate}{cpu}), sampled every 0.5 s: "
        f"start {rss[0]:.0f} MiB, peak "
        f"{max(rss):.0f} MiB, end {rss[-1]:.0f} MiB; its data dir then {keel.disk_mb:,.0f} MiB"
    )
    step = 1_000_000 if keel.rss_rows >= 2_000_000 else 100_000
    marks: list[str] = []
    previous = samples[0]
    for mark in range(step, keel.rss_rows + 1, step):
        at = next((s for s in samples if s[2] >= mark), samples[-1])
        if at[0] > previous[0]:
            speed = f"{(at[2] - previous[2]) / (at[0] - previous[0]) / 1000:.0f}k/s"
        else:  # passed within the same 0.5 s sample as the previous mark
            speed = "same sample"
        marks.append(f"{mark // 1000:,}k: {at[1]:.0f} MiB ({speed})")
        previous = at
    print("    RSS at rows acknowledged (and rows/s since the previous mark):")
    for start in range(0, len(marks), 5):
        print("      " + "; ".join(marks[start : start + 5]))
    half = next((s for s in samples if s[2] >= keel.rss_rows // 2), samples[-1])
    growth = rss[-1] - half[1]
    flat = growth <= max(FLAT_GROWTH * half[1], 20.0)
    print(
        f"    second half of the ingestion: {growth:+.0f} MiB "
        f"({100 * growth / half[1]:+.1f} %): {'flat' if flat else 'GROWING'}"
    )


def ratio_lines(keel: KeelFigures, evidently: Evidently | None) -> None:
    print("goals (issue 5)")
    single = _rate(keel.default.single)
    _goal(
        "keel rows/s, 1 producer",
        f"{single:,.0f}",
        f">= {GOAL_ROWS_PER_S:,}",
        single >= GOAL_ROWS_PER_S,
    )
    double = _rate(keel.default.double)
    _goal(
        "keel rows/s, 2 producers",
        f"{double:,.0f}",
        f">= {GOAL_ROWS_PER_S:,}",
        double >= GOAL_ROWS_PER_S,
    )
    if keel.floor.single:
        ceiling = [
            f.rows_per_s / k.rows_per_s
            for f, k in zip(keel.floor.single, keel.default.single, strict=True)
        ]
        print(
            f"  {'floor / keel rows/s, 1 producer (what the stream allows)':<52}"
            f"{median(ceiling):>13.1f}x  runs: {', '.join(f'{r:.1f}' for r in ceiling)}"
        )
    if evidently is not None:
        ratio = max(single, double) / evidently.rows_per_s
        _goal(
            "keel rows/s / evidently rows/s (best keel)",
            f"{ratio:.1f}x",
            f">= {GOAL_RATIO}x",
            ratio >= GOAL_RATIO,
        )
        if keel.windowless.single:
            best = max(_rate(keel.windowless.single), _rate(keel.windowless.double))
            ratio = best / evidently.rows_per_s
            _goal(
                "  the same, no join window (aggregates only)",
                f"{ratio:.1f}x",
                f">= {GOAL_RATIO}x",
                ratio >= GOAL_RATIO,
            )
    for verdict in keel.verdicts:
        p50 = percentile_ms(verdict.timings.seconds, 0.5)
        p90 = percentile_ms(verdict.timings.seconds, 0.9)
        _goal(
            f"verdict p50/p90, {verdict.label}",
            f"{p50:.2f}/{p90:.2f} ms",
            f"<= {GOAL_VERDICT_MS:g} ms",
            p90 <= GOAL_VERDICT_MS,
        )


def cpu_lines(keel: KeelFigures, evidently: Evidently | None) -> None:
    """CPU per 1,000 rows of each server, and what the machine's cores leave the monitor
    at the ratio the issue asks for."""
    print("CPU per 1,000 rows ingested (ms, medians over the runs of 1 and 2 producers)")
    measured = (
        ("default monitor (its processes)", keel.default),
        ("no join window", keel.windowless),
        ("floor (a bare grpc.aio server)", keel.floor),
    )
    for label, server in measured:
        if server.every and len(server.every_cpu) == len(server.every):
            spent = _ms_per_thousand(server.every, server.every_cpu, client=False)
            print(f"  {label:<52}{spent:>8.2f}")
    every_run = [run for _, server in measured for run in server.every]
    every_share = [share for _, server in measured for share in server.every_cpu]
    client = _ms_per_thousand(every_run, every_share, client=True) if every_share else 0.0
    print(f"  {'this client, sending':<52}{client:>8.2f}")
    if keel.storage is not None:
        cost = keel.storage
        print(
            f"  {'the join window storage alone, sqlite3':<52}{cost.per_thousand_rows_ms:>8.2f}"
            f"  ({cost.write_ms:.2f} written + {cost.checkpoint_ms:.2f} checkpointed per batch "
            f"of {cost.rows:,} rows and {cost.payload_bytes / 1024:.0f} KiB: a segment and its "
            "ids, the monitor's statements, 32 batches a transaction)"
        )
    if evidently is not None and every_share:
        cores = os.cpu_count() or 1
        target = GOAL_RATIO * evidently.rows_per_s
        budget = 1e6 * cores / target - client
        print(
            f"  at {GOAL_RATIO}x evidently ({target:,.0f} rows/s), {cores} cores busy all the "
            f"time leave the server {budget:.2f} ms (this client's share taken out)"
        )


def _keel_columns(answer: monitor_pb2.ComputeDriftResponse) -> dict[str, reports_pb2.FeatureDrift]:
    report = answer.report
    found = {f.feature: f for f in report.features}
    if report.HasField("prediction"):
        found["prediction"] = report.prediction
    return found


def verdict_lines(keel: KeelFigures | None, evidently: Evidently | None) -> None:
    """Per column: Keel's method, statistic and verdict beside Evidently's."""
    ours = _keel_columns(keel.verdicts[-1].timings.answer) if keel and keel.verdicts else {}
    theirs = evidently.verdicts() if evidently else {}
    print(f"drift verdicts (expected drifted: {', '.join(data.DRIFTED)})")
    numbers = f"{'statistic':>10}{'drifted':>9}"
    print(f"  {'column':<12}{'keel method':<14}{numbers}    {'evidently method':<31}{numbers}")
    agree = 0
    names = [*data.FEATURES, "prediction"]
    for name in names:
        k, e = ours.get(name), theirs.get(name)
        left = f"{'-':<14}{'-':>10}{'-':>9}"
        if k is not None:
            method = reports_pb2.DriftMethod.Name(k.method).removeprefix("DRIFT_METHOD_").lower()
            left = f"{method[:13]:<14}{k.statistic:>10.4f}{'yes' if k.drifted else 'no':>9}"
        right = f"{'-':<31}{'-':>10}{'-':>9}"
        if e is not None:
            right = (
                f"{e['method'][:30]:<31}{e['statistic']:>10.4f}{'yes' if e['drifted'] else 'no':>9}"
            )
        same = k is not None and e is not None and k.drifted == e["drifted"]
        agree += same
        differ = not same and k is not None and e is not None
        print(f"  {name:<12}{left}    {right}{'  !! differ' if differ else ''}")
    if ours and theirs:
        print(f"  the two agree on {agree} of {len(names)} columns")
