"""Evidently's side of the monitor benchmark, run in the .bench venv (Evidently 0.7.23
with pandas < 3) as a subprocess of ``bench.monitor``:

    .bench/bin/python -m bench.monitor_evidently REFERENCE_ROWS CURRENT_ROWS [COEF_JSON]

It builds the benchmark's reference and current frames from ``bench.monitor_data`` (the
same generator Keel's half uses), optionally with the model's score as a ``prediction``
column (COEF_JSON: ``{"coef": [...], "intercept": x}``), runs
``Report([DataDriftPreset()])`` with its defaults on them, turns the snapshot into a
dict, and prints one JSON object: seconds per step, peak RSS, and per column the method,
statistic, threshold and verdict.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import monitor_data as data


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _frames(
    reference_rows: int, current_rows: int, model: dict[str, Any] | None
) -> tuple[Any, Any]:
    pd: Any = importlib.import_module("pandas")
    reference, current = data.reference(reference_rows), data.current(current_rows)
    frames = []
    for matrix in (reference, current):
        frame = pd.DataFrame(matrix, columns=list(data.FEATURES))
        if model is not None:
            coef = np.asarray(model["coef"], dtype=np.float64)
            frame["prediction"] = data.scores(matrix, coef, float(model["intercept"]))
        frames.append(frame)
    return frames[0], frames[1]


def _verdicts(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per column: method, statistic, threshold, drifted (a p-value method drifts below
    its threshold, a distance at or above it)."""
    found: dict[str, dict[str, Any]] = {}
    for metric in snapshot["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        method, threshold, value = str(config["method"]), config["threshold"], metric["value"]
        drifted = value < threshold if "p_value" in method else value >= threshold
        found[str(config["column"])] = {
            "method": method,
            "statistic": float(value),
            "threshold": float(threshold),
            "drifted": bool(drifted),
        }
    return found


def run(reference_rows: int, current_rows: int, model: dict[str, Any] | None) -> dict[str, Any]:
    started = time.perf_counter()
    evidently: Any = importlib.import_module("evidently")
    presets: Any = importlib.import_module("evidently.presets")
    import_s = time.perf_counter() - started
    started = time.perf_counter()
    reference, current = _frames(reference_rows, current_rows, model)
    frames_s = time.perf_counter() - started
    rss_before = _rss_mb()
    report = evidently.Report([presets.DataDriftPreset()])
    started = time.perf_counter()
    snapshot = report.run(current, reference)
    run_s = time.perf_counter() - started
    started = time.perf_counter()
    result = snapshot.dict()
    dict_s = time.perf_counter() - started
    columns = _verdicts(result)
    return {
        "evidently": evidently.__version__,
        "pandas": importlib.import_module("pandas").__version__,
        "reference_rows": reference_rows,
        "current_rows": current_rows,
        "columns": len(reference.columns),
        "import_s": import_s,
        "frames_s": frames_s,
        "run_s": run_s,
        "dict_s": dict_s,
        "rss_before_run_mb": rss_before,
        "rss_end_mb": _rss_mb(),
        "peak_rss_mb": _peak_rss_mb(),
        "verdicts": columns,
        "drifted": sorted(name for name, v in columns.items() if v["drifted"]),
    }


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    model = json.loads(argv[2]) if len(argv) == 3 else None
    print(json.dumps(run(int(argv[0]), int(argv[1]), model)))


if __name__ == "__main__":
    main(sys.argv[1:])
