"""``keel approve``: record an approval (or, with ``--reject``, a rejection) of a version
for an alias. The approver is the caller (``--user``/``KEEL_USER``), never the author."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

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
from keel.commands._render import enum_text, message_dict
from keel.registry.v1 import gate_pb2, registry_pb2


def approve(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version number (or alias).")],
    alias: Annotated[str, typer.Option("--alias", help="Alias the decision is for.")] = (
        "production"
    ),
    comment: Annotated[str, typer.Option("--comment", help="Why; required with --reject.")] = "",
    reject: Annotated[bool, typer.Option("--reject", help="Record a rejection instead.")] = False,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve VERSION of model NAME for an alias (or reject it with --reject)."""
    if reject and not comment.strip():
        usage_error("--reject needs a --comment saying why")
    with session(Target(registry, inference, monitor, user)) as keel:
        reg = Registry(keel)
        resource = f"models/{name}/versions/{reg.version_number(name, version)}"
        if reject:
            approval = reg.call(
                reg.stub.RejectModelVersion,
                registry_pb2.RejectModelVersionRequest(name=resource, alias=alias, comment=comment),
            ).approval
        else:
            approval = reg.call(
                reg.stub.ApproveModelVersion,
                registry_pb2.ApproveModelVersionRequest(
                    name=resource, alias=alias, comment=comment
                ),
            ).approval

    def render(console: Console) -> None:
        decision = enum_text(gate_pb2.ApprovalDecision.DESCRIPTOR, approval.decision).lower()
        console.print(f"{approval.approver} {decision} {resource} for {alias}.")

    emit(as_json, {"approval": message_dict(approval)}, render)
