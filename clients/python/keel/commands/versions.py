"""``keel versions list|show|compare``: the versions of a model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Annotated, Any

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
from keel.commands._render import (
    enum_text,
    key_values,
    message_dict,
    messages,
    number_text,
    table,
    time_text,
)
from keel.common.v1 import metric_pb2, schema_pb2
from keel.registry.v1 import model_pb2, registry_pb2

app = typer.Typer(help="Versions of a model.", no_args_is_help=True)

ModelArgument = Annotated[str, typer.Argument(help="Model name.")]
VersionArgument = Annotated[str, typer.Argument(help="Version number (3, v3) or alias.")]


def status_text(version: model_pb2.ModelVersion) -> str:
    return enum_text(model_pb2.ModelVersionStatus.DESCRIPTOR, version.status)


def flavor_text(version: model_pb2.ModelVersion) -> str:
    return enum_text(model_pb2.Flavor.DESCRIPTOR, version.flavor).lower()


def split_text(metric: metric_pb2.Metric) -> str:
    return enum_text(metric_pb2.MetricSplit.DESCRIPTOR, metric.split).lower()


def headline_metrics(version: model_pb2.ModelVersion) -> str:
    """The holdout metrics of the whole population, e.g. ``f1=0.91 accuracy=0.93``."""
    return " ".join(
        f"{m.name}={number_text(m.value, 3)}" for m in version.evaluation_metrics if not m.group
    )


@app.command("list")
def list_versions(
    name: ModelArgument,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many; 0: all.")] = 0,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a model's versions, newest first."""
    with session(Target(registry, inference, monitor, user)) as keel:
        reg = Registry(keel)

        def fetch(token: str) -> tuple[list[model_pb2.ModelVersion], str]:
            request = registry_pb2.ListModelVersionsRequest(
                parent=f"models/{name}", page_token=token
            )
            reply = reg.call(reg.stub.ListModelVersions, request)
            return list(reply.model_versions), reply.next_page_token

        found = list(reg.pages(fetch, limit))

    def render(console: Console) -> None:
        rows = [
            (
                v.version,
                status_text(v),
                flavor_text(v),
                ", ".join(v.aliases),
                headline_metrics(v),
                v.author,
                time_text(v.create_time),
            )
            for v in found
        ]
        columns = ("VERSION", "STATUS", "FLAVOR", "ALIASES", "HOLDOUT METRICS", "AUTHOR", "CREATED")
        console.print(table(f"models/{name}", columns, rows))

    emit(as_json, {"model": f"models/{name}", "versions": messages(found)}, render)


@app.command("show")
def show_version(
    name: ModelArgument,
    version: VersionArgument,
    full: Annotated[
        bool, typer.Option("--full", help="Include the reference profile and model card.")
    ] = False,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one version: status, artifact, signature, metrics, lineage."""
    view = model_pb2.MODEL_VERSION_VIEW_FULL if full else model_pb2.MODEL_VERSION_VIEW_BASIC
    with session(Target(registry, inference, monitor, user)) as keel:
        number = Registry(keel).version_number(name, version)
        found = keel.registry.get_model_version(name, number, view=view)

    def render(console: Console) -> None:
        _render_version(console, found)

    emit(as_json, {"model_version": message_dict(found)}, render)


def _render_version(console: Console, v: model_pb2.ModelVersion) -> None:
    artifact = v.artifact
    lineage = v.lineage
    console.print(
        key_values(
            v.name,
            [
                ("status", status_text(v) + (f" ({v.status_message})" if v.status_message else "")),
                ("flavor", f"{flavor_text(v)} {v.flavor_version}".strip()),
                ("artifact", f"sha256:{artifact.sha256} ({artifact.size_bytes} bytes)"),
                ("aliases", ", ".join(v.aliases)),
                ("author", v.author),
                ("created", time_text(v.create_time)),
                ("description", v.description),
                ("tags", ", ".join(f"{k}={val}" for k, val in sorted(v.tags.items()))),
                ("training data", lineage.training_dataset.name),
                ("code", " ".join(filter(None, [lineage.code_repository, lineage.code_revision]))),
            ],
        )
    )
    inputs = [
        (
            f.name,
            enum_text(schema_pb2.DataType.DESCRIPTOR, f.dtype),
            enum_text(schema_pb2.FeatureKind.DESCRIPTOR, f.kind).lower(),
            "yes" if f.required else "",
            "yes" if f.protected else "",
        )
        for f in v.signature.inputs
    ]
    console.print(table("Signature", ("INPUT", "TYPE", "KIND", "REQUIRED", "PROTECTED"), inputs))
    if v.signature.class_labels:
        console.print(f"classes: {', '.join(v.signature.class_labels)}")
    metrics = [*v.training_metrics, *v.cross_validation.metrics, *v.evaluation_metrics]
    console.print(table("Metrics", ("SPLIT", "METRIC", "VALUE", "STDDEV"), _metric_rows(metrics)))
    if v.fairness_metrics:
        rows = [(m.group, m.name, number_text(m.value)) for m in v.fairness_metrics]
        console.print(table("Fairness (holdout)", ("GROUP", "METRIC", "VALUE"), rows))


def _metric_rows(metrics: Iterable[metric_pb2.Metric]) -> list[tuple[Any, ...]]:
    return [
        (
            split_text(m) + (f" [{m.group}]" if m.group else ""),
            m.name,
            number_text(m.value),
            number_text(m.stddev) if m.HasField("stddev") else "",
        )
        for m in metrics
    ]


def _metric_values(version: model_pb2.ModelVersion) -> dict[tuple[str, str, str], float]:
    every = [
        *version.training_metrics,
        *version.cross_validation.metrics,
        *version.evaluation_metrics,
        *(m for m in version.fairness_metrics if "=" not in m.group),
    ]
    return {(split_text(m), m.name, m.group): m.value for m in every}


@dataclass(frozen=True)
class MetricPair:
    """One metric of two versions; ``delta`` is b - a when both have it."""

    split: str
    metric: str
    group: str
    a: float | None
    b: float | None
    delta: float | None


def compare_metrics(
    a: dict[tuple[str, str, str], float], b: dict[tuple[str, str, str], float]
) -> list[MetricPair]:
    pairs = []
    for key in sorted(a.keys() | b.keys()):
        value_a, value_b = a.get(key), b.get(key)
        delta = value_b - value_a if value_a is not None and value_b is not None else None
        pairs.append(MetricPair(*key, value_a, value_b, delta))
    return pairs


def compare_signatures(a: schema_pb2.Signature, b: schema_pb2.Signature) -> dict[str, Any]:
    """Inputs added, removed and changed from ``a`` to ``b``."""
    old = {f.name: f for f in a.inputs}
    new = {f.name: f for f in b.inputs}
    changed = []
    for name in old.keys() & new.keys():
        before, after = old[name], new[name]
        for field in ("dtype", "kind", "required"):
            if getattr(before, field) != getattr(after, field):
                changed.append(
                    {
                        "feature": name,
                        "field": field,
                        "a": message_dict(before)[field],
                        "b": message_dict(after)[field],
                    }
                )
    return {
        "added": [f for f in new if f not in old],
        "removed": [f for f in old if f not in new],
        "changed": sorted(changed, key=lambda c: (c["feature"], c["field"])),
        "class_labels_changed": list(a.class_labels) != list(b.class_labels),
    }


@app.command("compare")
def compare_versions(
    name: ModelArgument,
    a: Annotated[str, typer.Argument(help="First version (number or alias).")],
    b: Annotated[str, typer.Argument(help="Second version (number or alias).")],
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare two versions: every metric side by side (B - A) and signature changes."""
    basic = model_pb2.MODEL_VERSION_VIEW_BASIC
    with session(Target(registry, inference, monitor, user)) as keel:
        reg = Registry(keel)
        first = keel.registry.get_model_version(name, reg.version_number(name, a), view=basic)
        second = keel.registry.get_model_version(name, reg.version_number(name, b), view=basic)
    rows = compare_metrics(_metric_values(first), _metric_values(second))
    signature = compare_signatures(first.signature, second.signature)
    document = {
        "model": f"models/{name}",
        "a": {"version": first.version, "status": status_text(first), "aliases": [*first.aliases]},
        "b": {
            "version": second.version,
            "status": status_text(second),
            "aliases": [*second.aliases],
        },
        "metrics": [asdict(r) for r in rows],
        "signature": signature,
    }

    def render(console: Console) -> None:
        columns = ("SPLIT", "METRIC", f"v{first.version}", f"v{second.version}", "DELTA")
        cells = [
            (
                r.split + (f" [{r.group}]" if r.group else ""),
                r.metric,
                number_text(r.a),
                number_text(r.b),
                "-" if r.delta is None else f"{r.delta:+.4g}",
            )
            for r in rows
        ]
        title = f"models/{name}: v{first.version} vs v{second.version}"
        console.print(table(title, columns, cells))
        changes = [
            *(f"+ {f} (added)" for f in signature["added"]),
            *(f"- {f} (removed)" for f in signature["removed"]),
            *(f"~ {c['feature']}: {c['field']} {c['a']} -> {c['b']}" for c in signature["changed"]),
        ]
        if signature["class_labels_changed"]:
            changes.append("~ class labels changed")
        console.print("Signature: " + ("same inputs" if not changes else ""))
        for line in changes:
            console.print(f"  {line}")

    emit(as_json, document, render)
