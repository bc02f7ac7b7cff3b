"""MLflow's timings on this machine, printed beside Keel's as the reference figure.

Source: research notes on model registries (``shared/reference/registry.md`` beside the repository),
section 1.7 "Timing anchor (MLflow 3.17.2, SQLite, 2 vCPU Xeon @2.5 GHz, same machine)":
``mlflow server`` (uvicorn, 4 workers) on SQLite, driven by MLflow's Python client.
Copied here, not re-run; a figure the notes do not have is None.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    value: float | None
    note: str


# "concurrent registration, one model … 32×25: 800 ok, 0 errors, 65.9/s"
REGISTRATIONS_PER_S = Reference(65.9, "32 clients x 25, one model")
# "resolve alias (get_model_version_by_alias) … p50 52 ms (Python client)"
RESOLVE_P50_MS = Reference(52.0, "p50, Python client")
# "search tag filter → 500 hits … p50 325 ms" (over 1,000 versions)
SEARCH_P50_MS = Reference(325.0, "p50, tag filter over 1,000 versions")
# No upload figure: the REST runs registered dummy s3:// sources.
UPLOAD_MB_S = Reference(None, "no figure (MLflow's run used dummy s3:// sources)")
