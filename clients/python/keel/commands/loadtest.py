"""``keel loadtest``: load one of Keel's services and report throughput, latency
percentiles and errors by status code (see ``keel.loadtest`` and ``docs/loadtest.md``).

Exit codes: 0 when the run happened, whatever errors it counted; 1 when
``--max-error-rate`` is given and the share of failed requests exceeds it; 2 for a bad
flag or a model the target cannot be loaded with; 3/5 (by status, as every command) when
a setup call fails before the run (the model or alias does not exist, the service does
not answer).
"""

from __future__ import annotations

from typing import Annotated

import grpc
import typer

from keel.client import translate
from keel.commands._common import (
    DEFAULT_INFERENCE,
    DEFAULT_MONITOR,
    DEFAULT_REGISTRY,
    EXIT_CHECK_FAILED,
    InferenceOption,
    JsonOption,
    MonitorOption,
    RegistryOption,
    call_failed,
    emit,
    fail,
    usage_error,
    working,
)
from keel.loadtest import Bounds, LoadSpec, Options, Report, Target, run


def loadtest(
    target: Annotated[
        Target, typer.Argument(help="Service to load: inference, registry or monitor.")
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name.")],
    version: Annotated[
        str,
        typer.Option(
            help="inference: model_version sent (a number or alias; empty: the service's "
            "routing). monitor: the version logged for (number or alias; empty: --alias).",
        ),
    ] = "",
    alias: Annotated[
        str, typer.Option(help="Alias resolved by registry reads (and by monitor).")
    ] = "production",
    rows: Annotated[int, typer.Option(min=1, help="Rows per request (inference and monitor).")] = 1,
    clients: Annotated[
        int,
        typer.Option(
            "--clients",
            "-c",
            min=1,
            help="Closed loop: concurrent clients, each with its own channel. With --rate: "
            "channels the requests are spread over.",
        ),
    ] = 1,
    rate: Annotated[
        float,
        typer.Option(
            "--rate",
            "-r",
            min=0,
            help="Open loop at this many requests/s, latency from each request's intended "
            "send time (0: closed loop).",
        ),
    ] = 0.0,
    max_in_flight: Annotated[
        int, typer.Option(min=1, help="Open loop: most requests outstanding at once.")
    ] = 1024,
    duration: Annotated[
        float, typer.Option("--duration", "-d", help="Run at most this many seconds.")
    ] = 10.0,
    requests: Annotated[
        int,
        typer.Option(
            "--requests", "-n", min=0, help="Send at most this many requests (0: no bound)."
        ),
    ] = 0,
    timeout: Annotated[float, typer.Option(help="Deadline of each call, in seconds.")] = 10.0,
    max_error_rate: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Exit 1 when more than this share of requests failed (e.g. 0.01).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated data.")] = 0,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    as_json: JsonOption = False,
) -> None:
    """Load TARGET for a duration (or a number of requests) and report throughput,
    latency percentiles (p50/p90/p99/p99.9/max) and errors by status code."""
    try:
        spec = LoadSpec(
            target=target,
            options=Options(model, version, alias, rows, timeout, seed),
            bounds=Bounds(duration, requests),
            clients=clients,
            rate=rate,
            max_in_flight=max_in_flight,
            registry=registry,
            inference=inference,
            monitor=monitor,
        )
        with working(f"loading {target.value}…"):
            report = run(spec)
    except grpc.RpcError as error:
        call_failed(translate(error))
    except ValueError as error:
        usage_error(str(error))

    emit(as_json, report.as_dict(), report.render)
    _check(report, max_error_rate)


def _check(report: Report, max_error_rate: float | None) -> None:
    if max_error_rate is not None and report.error_rate > max_error_rate:
        fail(
            f"error rate {report.error_rate:.2%} exceeds --max-error-rate {max_error_rate:.2%}",
            EXIT_CHECK_FAILED,
        )
