"""The registry benchmark's printout: one block per backend, each figure with its goal
and its ratio against MLflow's figure on this machine."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench import mlflow_reference as mlflow
from bench.registry_load import Loop
from bench.registry_phases import PAGE_SIZE, SEARCH, Plan, RunFigures
from bench.stats import CpuShare, median, percentile_ms

MB = 1e6
LABEL = 44


def _med(runs: Sequence[RunFigures], value: Callable[[RunFigures], float]) -> float:
    return median([value(run) for run in runs])


def _versus(ours: float, reference: mlflow.Reference, *, unit: str, higher: bool) -> str:
    if reference.value is None:
        return f"MLflow: {reference.note}"
    ratio = ours / reference.value if higher else reference.value / ours
    return f"MLflow server here: {reference.value:g}{unit}, {reference.note} → {ratio:.1f}x"


def _goal(met: bool, text: str) -> str:
    return f"goal {text}: {'met' if met else 'NOT met'}"


def _line(label: str, figure: str, *notes: str) -> None:
    print(f"  {label:<{LABEL}} {figure}  ({'; '.join(notes)})")


def report(
    backend: str, runs: Sequence[RunFigures], plan: Plan, upload_note: str, safe_load_s: float
) -> None:
    print(
        f"\nregistry on {backend}: median of {len(runs)} run(s), a fresh registry process per "
        f"run, clients in this process (grpc.aio)"
    )
    _registrations(runs, plan, sqlite=backend == "SQLite")
    _reads(runs, plan)
    _upload(runs, upload_note, safe_load_s)
    failed = [run.failures() for run in runs]
    count = sum(n for n, _ in failed)
    first = next((text for _, text in failed if text), "")
    print(f"  failed calls: {count}" + (f" (first: {first})" if first else ""))


def _registrations(runs: Sequence[RunFigures], plan: Plan, *, sqlite: bool) -> None:
    rate = _med(runs, lambda r: r.metadata.rate)
    _line(
        f"registrations/s, metadata only, {plan.clients} clients",
        f"{rate:.0f}",
        _goal(rate >= 660, "≥ 660") if sqlite else "the goal of ≥ 660 is set for SQLite",
        _versus(rate, mlflow.REGISTRATIONS_PER_S, unit="/s", higher=True),
    )
    full = _med(runs, lambda r: r.full.rate)
    _line(
        f"registrations/s, upload + register, {plan.clients} clients",
        f"{full:.0f}",
        "no goal; a new 6 KB XGBoost JSON model each",
    )
    _calls("metadata only", [r.metadata for r in runs], [r.metadata_cpu for r in runs])
    _calls("upload + register", [r.full for r in runs], [r.full_cpu for r in runs])


def _calls(name: str, loops: Sequence[Loop], cpus: Sequence[CpuShare]) -> None:
    p50 = median([percentile_ms(loop.latencies, 0.5) for loop in loops])
    p99 = median([percentile_ms(loop.latencies, 0.99) for loop in loops])
    server = median([cpu.server if cpu.server is not None else float("nan") for cpu in cpus])
    client = median([cpu.client for cpu in cpus])
    print(
        f"    {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms per call; CPU: server "
        f"{100 * server:.0f}%, client {100 * client:.0f}% of one core (2 cores here)"
    )


def _reads(runs: Sequence[RunFigures], plan: Plan) -> None:
    p50 = _med(runs, lambda r: percentile_ms(r.resolve.latencies, 0.5))
    p99 = _med(runs, lambda r: percentile_ms(r.resolve.latencies, 0.99))
    _line(
        "alias resolve p50 / p99, 1 client",
        f"{p50:.2f} / {p99:.2f} ms",
        _goal(p99 <= 3, "p99 ≤ 3 ms"),
        _versus(p50, mlflow.RESOLVE_P50_MS, unit=" ms", higher=False),
    )
    versions = int(_med(runs, lambda r: r.versions))
    p50 = _med(runs, lambda r: percentile_ms(r.search.latencies, 0.5))
    p99 = _med(runs, lambda r: percentile_ms(r.search.latencies, 0.99))
    _line(
        f"search p50 / p99 over {versions:,} versions",
        f"{p50:.1f} / {p99:.1f} ms",
        _goal(p99 <= 50, "≤ 50 ms at p99"),
        _versus(p50, mlflow.SEARCH_P50_MS, unit=" ms", higher=False),
    )
    hits = int(_med(runs, lambda r: r.search_hits))
    seeded = int(_med(runs, lambda r: len(r.seed.latencies)))
    seed_s = _med(runs, lambda r: r.seed.seconds)
    alongside = int(_med(runs, lambda r: r.seed_alongside))
    print(
        f"    search: {SEARCH.format(model='m<k>')}, page_size {PAGE_SIZE}, first page "
        f"{hits} versions; seeding: {seeded:,} versions topped up in {seed_s:.1f} s "
        f"({seeded / seed_s if seed_s else 0:.0f}/s, {plan.clients} clients"
        + (f", {alongside} registries seeded at once" if alongside > 1 else "")
        + "), the rest registered by the phases above"
    )


def _upload(runs: Sequence[RunFigures], note: str, safe_load_s: float) -> None:
    size = _med(runs, lambda r: r.upload_bytes)
    speed = _med(runs, lambda r: r.upload_bytes / MB / r.upload_s)
    _line(
        f"upload {size / MB:.0f} MB XGBoost JSON, end to end",
        f"{speed:.0f} MB/s",
        _goal(speed >= 200, "≥ 200 MB/s"),
        _versus(speed, mlflow.UPLOAD_MB_S, unit=" MB/s", higher=True),
    )
    ubj = _med(runs, lambda r: r.ubj_bytes / MB / r.ubj_upload_s)
    ubj_size = _med(runs, lambda r: r.ubj_bytes)
    _line(
        f"upload the same model as UBJSON ({ubj_size / MB:.0f} MB)",
        f"{ubj:.0f} MB/s",
        _goal(ubj >= 200, "≥ 200 MB/s"),
    )
    refused = _med(runs, lambda r: r.upload_bytes / MB / r.refused_upload_s)
    total = _med(runs, lambda r: r.upload_s)
    print(
        f"    model: {note}. Of the JSON upload's {total:.2f} s, transfer + hash + write + "
        f"read-back alone run at {refused:.0f} MB/s (as many bytes, refused by the format "
        f"check); the safe-load check (XGBoost parses the JSON) takes {safe_load_s:.2f} s "
        f"in this process"
    )
