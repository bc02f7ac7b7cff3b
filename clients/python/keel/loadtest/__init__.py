"""``keel loadtest``: a load generator for Keel's three services.

Closed loop (N clients, each waiting for its answer before the next request) or open
loop (a fixed request rate, latency measured from each request's intended send time,
free of coordinated omission), bounded by a duration and a number of requests.
Latencies go into a log-linear (HDR-style) histogram; failures are counted by gRPC
status code. See ``docs/loadtest.md``.
"""

from keel.loadtest.histogram import LogLinearHistogram
from keel.loadtest.recorder import OperationStats, Recorder, Sink
from keel.loadtest.report import Report
from keel.loadtest.runner import LoadSpec, Target, run, run_load
from keel.loadtest.scheduler import Bounds, RunTime, Workload, closed_loop, open_loop
from keel.loadtest.workloads import Options

__all__ = [
    "Bounds",
    "LoadSpec",
    "LogLinearHistogram",
    "OperationStats",
    "Options",
    "Recorder",
    "Report",
    "RunTime",
    "Sink",
    "Target",
    "Workload",
    "closed_loop",
    "open_loop",
    "run",
    "run_load",
]
