"""``make bench``: ``python -m bench`` runs every benchmark in turn; ``python -m bench
floor`` or ``python -m bench registry`` runs one.

- floor: the plumbing floor, Keel's server stack against a bare grpc.aio server.
- registry: the registry service on SQLite and PostgreSQL against its goals and MLflow.
- inference: Keel's inference service against MLServer (default and best configuration,
  from .bench/) and a trivial grpc.aio floor, one 100-tree XGBoost model.
- monitor: Keel's monitor (ingestion rows/s, drift verdict latency, RSS) against
  Evidently's DataDriftPreset (from .bench/) on the same 13-feature data.
"""

from __future__ import annotations

import argparse

from bench import floor, inference, monitor, registry
from bench.stats import machine_note

BENCHMARKS = ("floor", "registry", "inference", "monitor")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("benchmark", nargs="?", choices=BENCHMARKS, help="default: all")
    parser.add_argument(
        "--runs",
        type=int,
        help=f"runs to take medians of (default: floor {floor.DEFAULT_RUNS}, "
        f"registry {registry.DEFAULT_RUNS}; --quick: 1)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help=f"floor: seconds per measurement (default {floor.DEFAULT_SECONDS:g}; --quick: 1)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run of everything")
    args = parser.parse_args()
    chosen = [args.benchmark] if args.benchmark else list(BENCHMARKS)
    print(machine_note())
    if "floor" in chosen:
        floor.run(
            args.runs or (1 if args.quick else floor.DEFAULT_RUNS),
            args.seconds or (1.0 if args.quick else floor.DEFAULT_SECONDS),
        )
    if "registry" in chosen:
        registry.run(args.runs or (1 if args.quick else registry.DEFAULT_RUNS), args.quick)
    if "inference" in chosen:
        inference.main([f"--runs={args.runs or 1}", *(["--quick"] if args.quick else [])])
    if "monitor" in chosen:
        monitor.run(args.runs or monitor.DEFAULT_RUNS, args.quick)


if __name__ == "__main__":
    main()
