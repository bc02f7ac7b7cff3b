"""The suite's commands, added to ``keel`` through the ``keel.commands`` entry points:
``keel up`` and ``keel <service> serve``."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.common.service import Listening, ServiceSpec, run, write_ready_file
from services.common.supervisor import Child, Supervisor, run_until_signalled

# Every service of the suite, in start order (a service after those it calls), with the
# issue that builds it.
SERVICES = {"registry": 3, "monitor": 5, "inference": 4}
EXIT_NOTHING_TO_RUN = 3
EXIT_BAD_SETTINGS = 2  # as for a bad command-line flag

PortOption = Annotated[int | None, typer.Option("--port", help="gRPC port; 0 picks a free one.")]
HostOption = Annotated[str | None, typer.Option("--host", help="Interface to listen on.")]
MetricsOption = Annotated[
    int | None, typer.Option("--metrics-port", help="Prometheus port; 0 turns metrics off.")
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder for embedded defaults.")
]
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers", min=1, help="Processes serving one port (SO_REUSEPORT); metrics on the first."
    ),
]
ReadyOption = Annotated[
    Path | None,
    typer.Option("--ready-file", help="Write the bound address here as JSON once serving."),
]


def service_spec(name: str) -> ServiceSpec[Any] | None:
    """The spec of a service that is built, else None (its module does not exist yet)."""
    module = f"services.{name}.service"
    if importlib.util.find_spec(module) is None:
        return None
    spec: ServiceSpec[Any] = importlib.import_module(module).SPEC
    return spec


def serve_app(name: str) -> typer.Typer:
    """``keel <name> serve``; says which issue brings the service while it is not built."""
    app = typer.Typer(help=f"The {name} service.", no_args_is_help=True)

    @app.command("serve")
    def serve(
        port: PortOption = None,
        host: HostOption = None,
        metrics_port: MetricsOption = None,
        data_dir: DataDirOption = None,
        ready_file: ReadyOption = None,
        workers: WorkersOption = 1,
    ) -> None:
        """Start the service and run until SIGTERM or Ctrl-C."""
        spec = service_spec(name)
        if spec is None:
            typer.echo(
                f"keel: the {name} service is not built yet (issue #{SERVICES[name]})", err=True
            )
            raise typer.Exit(EXIT_NOTHING_TO_RUN)
        flags: dict[str, Any] = {"port": port, "host": host, "data_dir": data_dir}
        if metrics_port is not None:
            flags["metrics_port"] = metrics_port or None
        overrides = {
            key: value for key, value in flags.items() if key == "metrics_port" or value is not None
        }
        try:
            settings = spec.settings(**overrides)
        except ValidationError as error:
            for line in settings_errors(spec.settings, error):
                typer.echo(f"keel {name} serve: {line}", err=True)
            raise typer.Exit(EXIT_BAD_SETTINGS) from None
        if workers > 1:
            raise typer.Exit(run_workers(name, workers, settings, ready_file))
        run(spec, settings, ready_file)

    return app


def settings_errors(settings: type[BaseSettings], error: ValidationError) -> list[str]:
    """One line per invalid setting, named as the environment variable that sets it."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    lines = []
    for problem in error.errors():
        message = str(problem["msg"]).removeprefix("Value error, ")
        where = [str(part) for part in problem["loc"]]
        named = f"{prefix}{where[0]}".upper() + ": " if where else ""
        if problem["type"] != "value_error":  # a validator of ours says what came
            message += f", got {problem['input']!r}"
        lines.append(f"{named}{message}")
    return lines


def up(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Folder for databases and artifacts.")
    ] = Path(".keel"),
    registry_port: Annotated[int, typer.Option("--registry-port")] = 50051,
    inference_port: Annotated[int, typer.Option("--inference-port")] = 50052,
    monitor_port: Annotated[int, typer.Option("--monitor-port")] = 50053,
    demo: Annotated[
        bool, typer.Option("--demo", help="Register a demo model once the registry is up.")
    ] = False,
) -> None:
    """Start every service that is built, each as its own process; Ctrl-C stops them all."""
    ports = {"registry": registry_port, "inference": inference_port, "monitor": monitor_port}
    built = [name for name in SERVICES if service_spec(name) is not None]
    if not built:
        pending = ", ".join(f"{name} (issue #{issue})" for name, issue in SERVICES.items())
        typer.echo(f"keel: no service is built yet; still to come: {pending}", err=True)
        raise typer.Exit(EXIT_NOTHING_TO_RUN)
    data_dir = data_dir.resolve()
    children = [
        Child(
            name=name,
            argv=[
                sys.executable,
                "-m",
                "keel",
                name,
                "serve",
                "--port",
                str(ports[name]),
                "--data-dir",
                str(data_dir / name),
                "--ready-file",
                str(data_dir / "run" / f"{name}.json"),
                # Services on free ports (tests, several suites side by side) keep
                # metrics off rather than fight over the fixed metrics ports.
                *(["--metrics-port", "0"] if ports[name] == 0 else []),
            ],
            ready_file=data_dir / "run" / f"{name}.json",
            env_from=_peer_addresses,
        )
        for name in built
    ]
    hook = _demo if demo and "registry" in built else None
    raise typer.Exit(asyncio.run(run_until_signalled(Supervisor(children), hook)))


async def _demo(listening: Mapping[str, Listening]) -> None:
    """Register the demo model, then let it play traffic in the background."""
    from services.demo import Demo

    def say(message: str) -> None:
        print(f"keel: {message}", flush=True)

    if not {"registry", "inference", "monitor"} <= set(listening):
        say("demo skipped: it needs the registry, inference and monitor")
        return
    demo = Demo(*(listening[name].address for name in ("registry", "inference", "monitor")))
    try:
        await asyncio.to_thread(demo.start, say)
    except Exception as error:  # noqa: BLE001 - the suite keeps running without a demo
        say(f"demo model not loaded: {error}")


def _peer_addresses(started: Any) -> dict[str, str]:
    """Tell each later service where the earlier ones listen (``KEEL_<SVC>_<PEER>_ADDRESS``)."""
    env: dict[str, str] = {}
    for consumer in SERVICES:
        for peer, listening in started.items():
            env[f"KEEL_{consumer.upper()}_{peer.upper()}_ADDRESS"] = listening.address
    return env


def run_workers(name: str, count: int, settings: Any, ready_file: Path | None) -> int:
    """``count`` processes of one service on one port: the first binds (``--port 0``
    picks), the others join it with SO_REUSEPORT and the kernel spreads connections."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"keel-{name}-workers-"))
    prefix = f"KEEL_{name.upper()}_"
    base = [
        sys.executable,
        "-m",
        "keel",
        name,
        "serve",
        "--host",
        settings.host,
        "--data-dir",
        str(settings.data_dir),
    ]
    env = {f"{prefix}REUSE_PORT": "1"}

    def same_port(started: Mapping[str, Listening]) -> dict[str, str]:
        return {f"{prefix}PORT": str(started[f"{name}-1"].port)}

    children = []
    for index in range(1, count + 1):
        ready = run_dir / f"{index}.json"
        argv = [*base, "--ready-file", str(ready)]
        if index == 1:
            argv += [
                "--port",
                str(settings.port),
                "--metrics-port",
                str(settings.metrics_port or 0),
            ]
        else:
            argv += ["--metrics-port", "0"]
        children.append(
            Child(
                f"{name}-{index}", argv, ready, env=env, env_from=None if index == 1 else same_port
            )
        )

    async def announce(started: Mapping[str, Listening]) -> None:
        first = started[f"{name}-1"]
        listening = Listening(name, first.host, first.port, first.metrics_port, os.getpid())
        print(listening.line(), flush=True)
        if ready_file is not None:
            write_ready_file(ready_file, listening)

    return asyncio.run(run_until_signalled(Supervisor(children), announce))
