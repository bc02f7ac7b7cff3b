"""``keel audit``: the registry's append-only audit log, newest first."""

from __future__ import annotations

import json
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
)
from keel.commands._registry import Registry
from keel.commands._render import enum_text, messages, parse_time, table, time_text
from keel.registry.v1 import event_pb2, registry_pb2


def audit_filter(
    *,
    model: str = "",
    actions: list[str] | None = None,
    actor: str = "",
    since: str = "",
    until: str = "",
    extra: str = "",
) -> str:
    """The ListAuditEntries filter for the flags given (terms joined with AND)."""
    terms = []
    if model:
        terms.append(f"model = {json.dumps(model)}")
    if actions:
        names = [a.strip().upper().removeprefix("CHANGE_TYPE_") for a in actions]
        terms.append(f"action IN ({', '.join(json.dumps(n) for n in names)})")
    if actor:
        terms.append(f"actor = {json.dumps(actor)}")
    for text, op in ((since, ">="), (until, "<")):
        if text:
            when = parse_time(text).isoformat().replace("+00:00", "Z")
            terms.append(f"time {op} {json.dumps(when)}")
    if extra:
        terms.append(f"({extra})")
    return " AND ".join(terms)


def audit(
    model: Annotated[str, typer.Option("--model", help="Only this model's changes.")] = "",
    action: Annotated[
        list[str] | None,
        typer.Option("--action", help="Only this kind, e.g. ALIAS_SET; repeatable."),
    ] = None,
    actor: Annotated[str, typer.Option("--actor", help="Only this caller's changes.")] = "",
    since: Annotated[str, typer.Option("--since", help="From: RFC 3339 or a span ago (24h).")] = "",
    until: Annotated[str, typer.Option("--until", help="Before: RFC 3339 or a span ago.")] = "",
    where: Annotated[
        str, typer.Option("--filter", help="A filter expression ANDed with the flags above.")
    ] = "",
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many; 0: all.")] = 50,
    oldest_first: Annotated[bool, typer.Option("--oldest-first")] = False,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Who changed what in the registry, and when (newest first)."""
    with session(Target(registry, inference, monitor, user)) as keel:
        reg = Registry(keel)
        expression = audit_filter(
            model=model, actions=action, actor=actor, since=since, until=until, extra=where
        )
        order = "sequence" if oldest_first else "sequence desc"

        def fetch(token: str) -> tuple[list[event_pb2.AuditEntry], str]:
            request = registry_pb2.ListAuditEntriesRequest(
                filter=expression, order_by=order, page_token=token
            )
            reply = reg.call(reg.stub.ListAuditEntries, request)
            return list(reply.entries), reply.next_page_token

        entries = list(reg.pages(fetch, limit))

    def render(console: Console) -> None:
        rows = [
            (
                e.sequence,
                time_text(e.time),
                e.actor,
                enum_text(event_pb2.ChangeType.DESCRIPTOR, e.action),
                e.resource,
                ", ".join(e.changed_fields.paths),
                e.reason,
            )
            for e in entries
        ]
        columns = ("SEQ", "TIME", "ACTOR", "ACTION", "RESOURCE", "CHANGED", "REASON")
        console.print(table(None, columns, rows))

    emit(as_json, {"entries": messages(entries)}, render)
