"""``keel models list|show|create``: the registered models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from keel.client.objectives import parse_objectives
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
)
from keel.commands._registry import (
    Registry,
    objectives_text,
    parse_pairs,
    parse_task,
    short_name,
    task_text,
)
from keel.commands._render import enum_text, key_values, message_dict, messages, table, time_text
from keel.registry.v1 import alias_pb2, model_pb2, registry_pb2

app = typer.Typer(help="Registered models.", no_args_is_help=True)


@app.command("list")
def list_models(
    where: Annotated[
        str, typer.Option("--filter", help="Filter, e.g. 'owner_team = \"risk\"'.")
    ] = "",
    archived: Annotated[bool, typer.Option("--archived", help="Include archived models.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many; 0: all.")] = 0,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """List models by name."""
    with session(Target(registry, inference, monitor, user)) as keel:
        reg = Registry(keel)

        def fetch(token: str) -> tuple[list[model_pb2.Model], str]:
            request = registry_pb2.ListModelsRequest(
                filter=where, show_archived=archived, page_token=token
            )
            reply = reg.call(reg.stub.ListModels, request)
            return list(reply.models), reply.next_page_token

        found = list(reg.pages(fetch, limit))

    def render(console: Console) -> None:
        rows = [
            (
                short_name(m.name),
                task_text(m.task),
                m.owner_team,
                m.latest_version,
                enum_text(model_pb2.ModelState.DESCRIPTOR, m.state),
                objectives_text(m),
                time_text(m.create_time),
            )
            for m in found
        ]
        columns = ("MODEL", "TASK", "OWNER", "LATEST", "STATE", "OBJECTIVES", "CREATED")
        console.print(table(None, columns, rows))

    emit(as_json, {"models": messages(found)}, render)


@app.command("show")
def show_model(
    name: Annotated[str, typer.Argument(help="Model name.")],
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one model, its promotion policy and its aliases."""
    with session(Target(registry, inference, monitor, user)) as keel:
        reg = Registry(keel)
        model = keel.registry.get_model(name)

        def fetch(token: str) -> tuple[list[alias_pb2.Alias], str]:
            request = registry_pb2.ListAliasesRequest(parent=model.name, page_token=token)
            reply = reg.call(reg.stub.ListAliases, request)
            return list(reply.aliases), reply.next_page_token

        aliases = list(reg.pages(fetch))

    def render(console: Console) -> None:
        policy = model.promotion_policy
        console.print(
            key_values(
                model.name,
                [
                    ("task", task_text(model.task)),
                    ("state", enum_text(model_pb2.ModelState.DESCRIPTOR, model.state)),
                    ("owner team", model.owner_team),
                    ("description", model.description),
                    ("objectives", objectives_text(model)),
                    ("latest version", model.latest_version),
                    ("protected aliases", ", ".join(policy.protected_aliases)),
                    ("approval", _approval_text(policy)),
                    ("tags", ", ".join(f"{k}={v}" for k, v in sorted(model.tags.items()))),
                    ("created", f"{time_text(model.create_time)} by {model.created_by}"),
                ],
            )
        )
        rows = [
            (
                short_name(a.name),
                a.version,
                "yes" if a.protected else "",
                time_text(a.update_time),
                a.updated_by,
            )
            for a in aliases
        ]
        console.print(table("Aliases", ("ALIAS", "VERSION", "PROTECTED", "MOVED", "BY"), rows))

    emit(as_json, {"model": message_dict(model), "aliases": messages(aliases)}, render)


def _approval_text(policy: model_pb2.PromotionPolicy) -> str:
    if not policy.require_approval:
        return "not required"
    return f"{max(policy.min_approvals, 1)} approver(s) other than the author"


@app.command("create")
def create_model(
    name: Annotated[str, typer.Argument(help="Model name: 1-63 of a-z, 0-9 and '-'.")],
    task: Annotated[
        str, typer.Option("--task", help="binary, multiclass or regression.")
    ] = "binary",
    objective: Annotated[
        list[str] | None, typer.Option("--objective", help="Goal, e.g. 'f1 >= 0.80'; repeatable.")
    ] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    owner_team: Annotated[str, typer.Option("--owner-team")] = "",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE; repeatable.")] = None,
    protect: Annotated[
        list[str] | None,
        typer.Option("--protect", help="Alias that moves only through the gates; repeatable."),
    ] = None,
    require_approval: Annotated[
        bool, typer.Option("--require-approval", help="Protected moves need an approval.")
    ] = False,
    min_approvals: Annotated[int, typer.Option("--min-approvals", min=0)] = 0,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a new model (its versions come from `Keel.log_model`)."""
    with session(Target(registry, inference, monitor, user)) as keel:
        wanted = model_pb2.Model(
            task=parse_task(task),
            objectives=parse_objectives(objective or []),
            description=description,
            owner_team=owner_team,
            tags=parse_pairs(tag or [], "tag"),
        )
        if protect or require_approval or min_approvals:
            wanted.promotion_policy.CopyFrom(
                model_pb2.PromotionPolicy(
                    protected_aliases=protect or ["production"],
                    require_approval=require_approval or min_approvals > 0,
                    min_approvals=min_approvals,
                )
            )
        created = keel.registry.create_model(name, wanted)

    def render(console: Console) -> None:
        console.print(f"Created {created.name} ({task_text(created.task)}).")

    emit(as_json, {"model": message_dict(created)}, render)
