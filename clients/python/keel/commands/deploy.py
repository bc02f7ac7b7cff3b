"""``keel deploy``: create a deployment, or change the one of that name.

Targets, for ``--route`` and ``--shadow``: ``3`` or ``v3`` (a version of the model),
``production`` (an alias of the model, followed as it moves), ``other@3`` or
``other@production`` (another model's, for shadows), or a full resource name.

``--route TARGET=WEIGHT[:VARIANT][:canary]``, repeatable: weights are whole percent and
sum to 100; a last segment ``canary`` marks the route as the canary that a guard alert
rolls back (``3=10:canary`` is a canary with the default variant ``v3``;
``3=10:canary:canary`` names the variant ``canary`` too). ``--shadow TARGET[:VARIANT]``
gets a copy of every request. On an existing deployment only the fields given change.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from keel.client import NotFound
from keel.commands._common import (
    DEFAULT_INFERENCE,
    DEFAULT_MONITOR,
    DEFAULT_REGISTRY,
    InferenceOption,
    JsonOption,
    MonitorOption,
    RegistryOption,
    Target,
    UserOption,
    emit,
    session,
    usage_error,
)
from keel.commands._registry import Registry
from keel.commands._render import message_dict, table
from keel.registry.v1 import deployment_pb2, registry_pb2


def target_name(model: str, text: str) -> str:
    """The resource name of a route or shadow target (see the module docstring)."""
    text = text.strip()
    if text.startswith("models/"):
        return text
    owner, sep, reference = text.rpartition("@")
    owner = owner if sep else model
    if not owner or not reference:
        raise ValueError(f"target {text!r}: expected 3, v3, an alias, or model@version")
    digits = reference.removeprefix("v")
    if digits.isdigit():
        return f"models/{owner}/versions/{int(digits)}"
    return f"models/{owner}/aliases/{reference}"


def parse_route(model: str, text: str) -> deployment_pb2.Route:
    """``TARGET=WEIGHT[:VARIANT][:canary]``."""
    target, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or not target.strip() or not parts[0].strip().isdigit() or len(parts) > 3:
        raise ValueError(f"route {text!r}: expected TARGET=WEIGHT[:VARIANT][:canary], e.g. 3=90")
    canary = len(parts) > 1 and parts[-1] == "canary"
    if canary:
        parts = parts[:-1]
    if len(parts) > 2:
        raise ValueError(f"route {text!r}: expected TARGET=WEIGHT[:VARIANT][:canary]")
    return deployment_pb2.Route(
        target=target_name(model, target),
        weight=int(parts[0]),
        variant=parts[1] if len(parts) == 2 else "",
        canary=canary,
    )


def parse_shadow(model: str, text: str) -> deployment_pb2.Shadow:
    """``TARGET[:VARIANT]``."""
    target, _, variant = text.partition(":")
    return deployment_pb2.Shadow(target=target_name(model, target), variant=variant)


def deploy(
    name: Annotated[str, typer.Argument(help="Deployment name (the served name).")],
    model: Annotated[
        str | None, typer.Option("--model", help="Model served; defaults to NAME.")
    ] = None,
    route: Annotated[
        list[str] | None,
        typer.Option("--route", help="TARGET=WEIGHT[:VARIANT][:canary]; repeatable."),
    ] = None,
    shadow: Annotated[
        list[str] | None, typer.Option("--shadow", help="TARGET[:VARIANT]; repeatable.")
    ] = None,
    clear_shadows: Annotated[bool, typer.Option("--clear-shadows")] = False,
    sticky: Annotated[
        str | None,
        typer.Option("--sticky", help="Request parameter that pins a caller to a route."),
    ] = None,
    guard: Annotated[
        list[str] | None,
        typer.Option("--guard", help="Monitor alert rule that aborts the canary; repeatable."),
    ] = None,
    clear_guards: Annotated[bool, typer.Option("--clear-guards")] = False,
    description: Annotated[str | None, typer.Option("--description")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the audit log.")] = "",
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create deployment NAME, or update the fields given of the existing one."""
    with session(Target(registry, inference, monitor, user)) as keel:
        reg = Registry(keel)
        existing = registry_pb2.GetDeploymentRequest(name=f"deployments/{name}")
        try:
            current: deployment_pb2.Deployment | None = reg.call(
                reg.stub.GetDeployment, existing
            ).deployment
        except NotFound:
            current = None
        served = model or (current.model.removeprefix("models/") if current else name)
        if current is not None and model and current.model != f"models/{model}":
            usage_error(f"deployment {name!r} serves {current.model}; its model cannot change")
        wanted = deployment_pb2.Deployment(
            name=f"deployments/{name}",
            model=f"models/{served}",
            routes=[parse_route(served, r) for r in route or []],
            shadows=[parse_shadow(served, s) for s in shadow or []],
            sticky_key_parameter=sticky or "",
            guard_alert_rules=guard or [],
            description=description or "",
        )
        paths = [
            path
            for path, given in (
                ("routes", bool(route)),
                ("shadows", bool(shadow) or clear_shadows),
                ("sticky_key_parameter", sticky is not None),
                ("guard_alert_rules", bool(guard) or clear_guards),
                ("description", description is not None),
            )
            if given
        ]
        if current is None:
            if not route:
                usage_error(f"deployment {name!r} does not exist: give at least one --route")
            request = registry_pb2.CreateDeploymentRequest(deployment=wanted, deployment_id=name)
            result = reg.call(reg.stub.CreateDeployment, request).deployment
        else:
            if not paths:
                usage_error("nothing to change: give --route, --shadow, --sticky or --guard")
            update = registry_pb2.UpdateDeploymentRequest(deployment=wanted, reason=reason)
            update.update_mask.paths.extend(paths)
            result = reg.call(reg.stub.UpdateDeployment, update).deployment

    def render(console: Console) -> None:
        _render_deployment(console, result, created=current is None)

    emit(as_json, {"created": current is None, "deployment": message_dict(result)}, render)


def _render_deployment(console: Console, d: deployment_pb2.Deployment, *, created: bool) -> None:
    verb = "Created" if created else "Updated"
    console.print(f"{verb} {d.name} (revision {d.revision}) serving {d.model}.")
    rows = [
        (r.variant, r.target, f"{r.weight}%", "yes" if r.canary else "", r.resolved_version)
        for r in d.routes
    ]
    console.print(table("Routes", ("VARIANT", "TARGET", "WEIGHT", "CANARY", "SERVES"), rows))
    if d.shadows:
        shadows = [(s.variant, s.target, s.resolved_version) for s in d.shadows]
        console.print(table("Shadows", ("VARIANT", "TARGET", "SERVES"), shadows))
    if d.sticky_key_parameter:
        console.print(f"sticky on parameter: {d.sticky_key_parameter}")
    if d.guard_alert_rules:
        console.print(f"guarded by: {', '.join(d.guard_alert_rules)}")
