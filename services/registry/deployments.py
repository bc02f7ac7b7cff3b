"""Use cases on deployments: named serving configurations, revisioned."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from services.common.errors import AlreadyExists, DomainError, NotFound
from services.common.paging import Cursor, check_cursor, page_size, query_digest
from services.registry.core import (
    Core,
    alias_ref,
    check_id,
    invalid,
    is_number,
    parse_name,
    require_model,
)
from services.registry.models import check_etag
from services.registry.ownership import check_owner
from services.registry.records import (
    Caller,
    Change,
    DeploymentRecord,
    Route,
    Shadow,
    Status,
    now_us,
)
from services.registry.store import Store

DEPLOYMENT_PATHS = ("description", "routes", "shadows", "sticky_key_parameter", "guard_alert_rules")


def _target_version(store: Store, field: str, target: str) -> tuple[str, int]:
    """The model and version a target serves now; INVALID_ARGUMENT/NOT_FOUND if it can't."""
    parts = target.split("/")
    if len(parts) == 4 and parts[2] == "aliases":
        model, alias = alias_ref(field, target)
        held = store.get_alias(model, alias)
        if held is None:
            raise NotFound(f"{field}: alias '{target}' not found")
        return model, held.version
    model, number = parse_name(field, target, "models", "versions")
    check_id(field, model)
    if not is_number(number):
        raise invalid(field, f"expected a version number, got {number!r}")
    version = store.get_version(model, int(number), profile=False)
    if version is None:
        raise NotFound(f"{field}: version '{target}' not found")
    if version.status != Status.READY:
        raise invalid(field, f"version '{target}' is {version.status}, expected READY")
    return model, int(number)


def _check_owner(store: Store, caller: Caller, model_name: str) -> None:
    """The caller may change the deployments of ``model_name`` (ownership.py)."""
    model = store.get_model(model_name)
    if model is not None:
        check_owner(caller, model)


def _default_variant(target: str) -> str:
    kind, last = target.split("/")[-2:]
    return f"v{last}" if kind == "versions" else last


def _resolve(store: Store, d: DeploymentRecord) -> DeploymentRecord:
    """Fill in each target's current version (output only)."""

    def current(target: str) -> int:
        try:
            return _target_version(store, "target", target)[1]
        except DomainError:  # a target deleted or archived since: it serves nothing
            return 0

    routes = tuple(dataclasses.replace(r, resolved_version=current(r.target)) for r in d.routes)
    shadows = tuple(dataclasses.replace(s, resolved_version=current(s.target)) for s in d.shadows)
    return dataclasses.replace(d, routes=routes, shadows=shadows)


def _validate(store: Store, d: DeploymentRecord) -> DeploymentRecord:
    if not d.routes:
        raise invalid("deployment.routes", "expected at least one route")
    routes = []
    for i, route in enumerate(d.routes):
        field = f"deployment.routes[{i}]"
        model, _ = _target_version(store, f"{field}.target", route.target)
        if model != d.model:
            raise invalid(
                f"{field}.target", f"expected a target of '{d.model}', got {route.target!r}"
            )
        if not 0 <= route.weight <= 100:
            raise invalid(f"{field}.weight", f"expected 0 to 100, got {route.weight}")
        routes.append(
            dataclasses.replace(route, variant=route.variant or _default_variant(route.target))
        )
    total = sum(r.weight for r in routes)
    if total != 100:
        raise invalid("deployment.routes", f"weights must sum to 100, got {total}")
    shadows = []
    for i, shadow in enumerate(d.shadows):
        _target_version(store, f"deployment.shadows[{i}].target", shadow.target)
        shadows.append(
            dataclasses.replace(shadow, variant=shadow.variant or _default_variant(shadow.target))
        )
    variants = [r.variant for r in routes] + [s.variant for s in shadows]
    for variant in variants:
        check_id("deployment.routes.variant", variant)
    if len(set(variants)) != len(variants):
        raise invalid("deployment.routes", f"variants must be unique, got {variants}")
    return dataclasses.replace(d, routes=tuple(routes), shadows=tuple(shadows))


class Deployments:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def create(self, d: DeploymentRecord, caller: Caller) -> DeploymentRecord:
        check_id("deployment_id", d.name)

        def work(store: Store) -> DeploymentRecord:
            check_owner(caller, require_model(store, d.model, lock=True))
            if store.get_deployment(d.name) is not None:
                raise AlreadyExists(f"deployment 'deployments/{d.name}' already exists")
            if d.name != d.model and store.get_model(d.name) is not None:
                raise AlreadyExists(f"'{d.name}' is already the name of another model")
            now = now_us()
            created = dataclasses.replace(
                _validate(store, d),
                revision=1,
                updated_by=caller.identity,
                create_time=now,
                update_time=now,
            )
            store.put_deployment(created, exists=False)
            store.record(
                Change("DEPLOYMENT_CREATED", created.resource, d.model, _resolve(store, created)),
                caller,
            )
            return _resolve(store, created)

        return await self.core.write(work)

    def _require(self, store: Store, name: str, *, lock: bool = False) -> DeploymentRecord:
        found = store.get_deployment(name, lock=lock)
        if found is None:
            raise NotFound(f"deployment 'deployments/{name}' not found")
        return found

    async def get(self, name: str) -> DeploymentRecord:
        return await self.core.read(lambda store: _resolve(store, self._require(store, name)))

    async def list_page(
        self, model: str, size: int, cursor: Cursor | None
    ) -> tuple[list[DeploymentRecord], Cursor | None]:
        limit = page_size(size)
        digest = query_digest("deployments", model)
        cursor = check_cursor(cursor, digest)
        after = cursor.last_key if cursor else ""

        def work(store: Store) -> list[DeploymentRecord]:
            return [_resolve(store, d) for d in store.list_deployments(model, after, limit + 1)]

        found = await self.core.read(work)
        more = len(found) > limit
        found = found[:limit]
        return found, Cursor(found[-1].name, 0, digest) if more else None

    async def update(
        self,
        name: str,
        patch: DeploymentRecord,
        paths: Sequence[str],
        etag: str,
        reason: str,
        caller: Caller,
    ) -> DeploymentRecord:
        if not paths or any(p not in DEPLOYMENT_PATHS for p in paths):
            raise invalid(
                "update_mask", f"expected some of {', '.join(DEPLOYMENT_PATHS)}, got {list(paths)}"
            )

        def work(store: Store) -> DeploymentRecord:
            before = self._require(store, name, lock=True)
            _check_owner(store, caller, before.model)
            check_etag(before.resource, etag, before.revision)
            after = dataclasses.replace(before, **{p: getattr(patch, p) for p in paths})
            after = dataclasses.replace(
                _validate(store, after),
                revision=before.revision + 1,
                updated_by=caller.identity,
                update_time=now_us(),
            )
            store.put_deployment(after, exists=True)
            change = Change(
                "DEPLOYMENT_UPDATED",
                after.resource,
                after.model,
                _resolve(store, after),
                before,
                tuple(paths),
                reason,
            )
            store.record(change, caller)
            return _resolve(store, after)

        return await self.core.write(work)

    async def delete(self, name: str, etag: str, caller: Caller) -> DeploymentRecord:
        def work(store: Store) -> DeploymentRecord:
            before = self._require(store, name, lock=True)
            _check_owner(store, caller, before.model)
            check_etag(before.resource, etag, before.revision)
            store.delete_deployment(name)
            store.record(
                Change("DEPLOYMENT_DELETED", before.resource, before.model, before, before), caller
            )
            return _resolve(store, before)

        return await self.core.write(work)

    async def revisions(
        self, name: str, size: int, cursor: Cursor | None
    ) -> tuple[list[DeploymentRecord], Cursor | None]:
        limit = page_size(size)
        digest = query_digest("revisions", name)
        cursor = check_cursor(cursor, digest)

        def work(store: Store) -> list[DeploymentRecord]:
            current = self._require(store, name)
            below = cursor.last_id if cursor else current.revision + 1
            return store.deployment_revisions(name, below, limit + 1, current.create_time)

        found = await self.core.read(work)
        more = len(found) > limit
        found = found[:limit]
        return found, Cursor("", found[-1].revision, digest) if more else None

    async def abort_canary(
        self, name: str, alert_rule: str, reason: str, etag: str, caller: Caller
    ) -> tuple[DeploymentRecord, bool]:
        def work(store: Store) -> tuple[DeploymentRecord, bool]:
            before = self._require(store, name, lock=True)
            _check_owner(store, caller, before.model)
            check_etag(before.resource, etag, before.revision)
            freed = sum(r.weight for r in before.routes if r.canary)
            others = [r for r in before.routes if not r.canary]
            if freed == 0 or not others:
                return _resolve(store, before), False
            routes = _share_out(before.routes, freed)
            after = dataclasses.replace(
                before,
                routes=routes,
                revision=before.revision + 1,
                updated_by=caller.identity,
                update_time=now_us(),
            )
            store.put_deployment(after, exists=True)
            why = reason or (f"guard alert rule '{alert_rule}' fired" if alert_rule else "")
            change = Change(
                "DEPLOYMENT_CANARY_ABORTED",
                after.resource,
                after.model,
                _resolve(store, after),
                before,
                ("routes",),
                why,
            )
            store.record(change, caller)
            return _resolve(store, after), True

        return await self.core.write(work)


def _share_out(routes: tuple[Route, ...], freed: int) -> tuple[Route, ...]:
    """Canary routes to 0; their weight to the others in proportion (whole percent,
    remainders to the largest), so the sum stays 100."""
    others = [r for r in routes if not r.canary]
    base = sum(r.weight for r in others)
    shares = {
        r.variant: (freed * r.weight // base if base else freed // len(others)) for r in others
    }
    left = freed - sum(shares.values())
    for r in sorted(others, key=lambda r: -r.weight)[:left]:
        shares[r.variant] += 1
    return tuple(
        dataclasses.replace(r, weight=0)
        if r.canary
        else dataclasses.replace(r, weight=r.weight + shares[r.variant])
        for r in routes
    )


__all__ = ["Deployments", "Shadow"]
