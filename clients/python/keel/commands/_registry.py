"""The registry calls the commands make beyond ``RegistryClient``'s methods (listing,
history, rollback, gates, approvals, audit, deployments), on the same stub, deadline,
identity and error translation, and the small parsers the registry commands share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from keel.client import Keel
from keel.client.objectives import format_objective
from keel.common.v1 import schema_pb2
from keel.registry.v1 import model_pb2, registry_pb2, registry_pb2_grpc

_T = TypeVar("_T")
PAGE_SIZE = 200

TASKS: dict[str, schema_pb2.Task.ValueType] = {
    "binary": schema_pb2.TASK_BINARY_CLASSIFICATION,
    "multiclass": schema_pb2.TASK_MULTICLASS_CLASSIFICATION,
    "regression": schema_pb2.TASK_REGRESSION,
}


class Registry:
    """``RegistryService`` calls through the client's ``RegistryClient``: its deadline,
    its ``x-keel-user`` identity, and its typed exceptions."""

    def __init__(self, keel: Keel) -> None:
        self._client = keel.registry
        self.stub: registry_pb2_grpc.RegistryServiceStub = self._client.stub

    def call(self, method: Callable[..., _T], request: Any) -> _T:
        return self._client.call(method, request)

    def pages(self, fetch: Callable[[str], tuple[list[_T], str]], limit: int = 0) -> Iterator[_T]:
        """Every item of a paged listing (at most ``limit``, 0 for all): ``fetch`` takes
        a page token and returns a page and the next token."""
        token, seen = "", 0
        while True:
            items, token = fetch(token)
            for item in items:
                yield item
                seen += 1
                if limit and seen >= limit:
                    return
            if not token:
                return

    def version_number(self, model: str, reference: str) -> int:
        """A version given as a number (``3``, ``v3``) or an alias (``production``)."""
        digits = reference.removeprefix("v")
        if digits.isdigit():
            return int(digits)
        resolved = self.call(
            self.stub.ResolveAlias,
            registry_pb2.ResolveAliasRequest(
                reference=f"{model}@{reference}", view=model_pb2.MODEL_VERSION_VIEW_BASIC
            ),
        )
        return int(resolved.model_version.version)


def parse_task(text: str) -> schema_pb2.Task.ValueType:
    key = text.strip().lower()
    for name, task in TASKS.items():
        if key in (name, schema_pb2.Task.Name(task).lower(), f"{name}_classification"):
            return task
    raise ValueError(f"task {text!r}: expected one of {', '.join(TASKS)}")


def parse_pairs(items: list[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` flags as a dict."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {item!r}: expected KEY=VALUE")
        pairs[key.strip()] = value.strip()
    return pairs


def task_text(task: schema_pb2.Task.ValueType) -> str:
    return schema_pb2.Task.Name(task).removeprefix("TASK_").lower()


def objectives_text(model: model_pb2.Model) -> str:
    return ", ".join(format_objective(o) for o in model.objectives)


def short_name(resource: str) -> str:
    """The last segment of a resource name (``churn`` for ``models/churn``)."""
    return resource.rsplit("/", 1)[-1]
