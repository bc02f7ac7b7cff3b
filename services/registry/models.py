"""Use cases on models and versions."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from services.common.errors import AlreadyExists, Conflict, FailedPrecondition, NotFound
from services.common.paging import Cursor, check_cursor, page_size, query_digest
from services.common.safe_load import check_signature
from services.registry import filter_sql
from services.registry.artifacts import check_sha256
from services.registry.core import Core, check_id, invalid, require_model
from services.registry.ownership import check_new_owner, check_owner, owner_for_new_model
from services.registry.records import (
    CANONICAL_METRICS,
    Caller,
    Change,
    DeploymentRecord,
    ModelRecord,
    Objective,
    Policy,
    Route,
    Shadow,
    Status,
    VersionRecord,
    now_us,
)
from services.registry.store import VERSIONS, Store
from services.registry.uploads import Uploads, inspection_from_dict

TASKS = ("BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION", "REGRESSION")
MODEL_PATHS = ("description", "owner_team", "objectives", "tags", "promotion_policy")
POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(Policy))
VERSION_PATHS = ("description", "tags", "model_card")
FLAVORS = ("XGBOOST", "SKLEARN")


def check_objectives(objectives: Sequence[Objective], field: str = "objectives") -> None:
    for i, objective in enumerate(objectives):
        if objective.metric not in CANONICAL_METRICS:
            known = ", ".join(sorted(CANONICAL_METRICS))
            raise invalid(
                f"{field}[{i}].metric", f"unknown metric '{objective.metric}'; known: {known}"
            )
        if objective.comparator not in (">=", ">", "<=", "<"):
            raise invalid(f"{field}[{i}].comparator", "expected a comparator")


def check_policy(policy: Policy) -> None:
    for alias in policy.protected_aliases:
        check_id("promotion_policy.protected_aliases", alias)
    if policy.primary_metric and policy.primary_metric not in CANONICAL_METRICS:
        raise invalid(
            "promotion_policy.primary_metric", f"unknown metric '{policy.primary_metric}'"
        )
    if policy.champion_tolerance < 0:
        raise invalid("promotion_policy.champion_tolerance", "expected 0 or more")
    if policy.min_approvals < 0:
        raise invalid("promotion_policy.min_approvals", "expected 0 or more")


def check_etag(resource: str, etag: str, revision: int) -> None:
    if etag and etag != str(revision):
        raise Conflict(f"{resource}: etag {etag!r} is stale, the current one is '{revision}'")


class Models:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.uploads = Uploads(core)

    # models -------------------------------------------------------------------------
    async def create_model(self, model: ModelRecord, caller: Caller) -> ModelRecord:
        check_id("model_id", model.name)
        if model.task not in TASKS:
            raise invalid("model.task", f"expected one of {', '.join(TASKS)}, got {model.task!r}")
        check_objectives(model.objectives, "model.objectives")
        check_policy(model.policy)
        now = now_us()
        model = dataclasses.replace(
            model,
            owner_team=owner_for_new_model(caller, model.owner_team, model.resource),
            state="ACTIVE",
            latest_version=0,
            revision=1,
            created_by=caller.identity,
            create_time=now,
            update_time=now,
        )

        def work(store: Store) -> ModelRecord:
            if store.get_model(model.name) is not None:
                raise AlreadyExists(f"model 'models/{model.name}' already exists")
            if store.get_deployment(model.name) is not None:
                raise AlreadyExists(f"'{model.name}' is already the name of a deployment")
            store.insert_model(model)
            store.record(Change("MODEL_CREATED", model.resource, model.name, model), caller)
            return model

        return await self.core.write(work)

    async def get_model(self, name: str) -> ModelRecord:
        return await self.core.read(lambda store: require_model(store, name))

    async def update_model(
        self, name: str, patch: ModelRecord, paths: Sequence[str], etag: str, caller: Caller
    ) -> ModelRecord:
        if not paths:
            raise invalid("update_mask", f"expected one or more of {', '.join(MODEL_PATHS)}")
        policy_paths = []
        for path in paths:
            head, _, sub = path.partition(".")
            if head not in MODEL_PATHS or (
                sub and (head != "promotion_policy" or sub not in POLICY_FIELDS)
            ):
                raise invalid(
                    "update_mask", f"cannot update '{path}'; allowed: {', '.join(MODEL_PATHS)}"
                )
            if head == "promotion_policy":
                policy_paths.append(sub)
        if "objectives" in paths:
            check_objectives(patch.objectives, "model.objectives")

        def work(store: Store) -> ModelRecord:
            before = require_model(store, name, lock=True)
            check_owner(caller, before)
            if "owner_team" in paths:
                check_new_owner(caller, patch.owner_team, before.resource)
            check_etag(before.resource, etag, before.revision)
            if before.state == "ARCHIVED":
                raise FailedPrecondition(f"model '{before.resource}' is archived")
            after = dataclasses.replace(before, update_time=now_us(), revision=before.revision + 1)
            for path in paths:
                head = path.partition(".")[0]
                if head != "promotion_policy":
                    setattr(after, head, getattr(patch, head))
            if policy_paths:
                fields = POLICY_FIELDS if "" in policy_paths else policy_paths
                after.policy = dataclasses.replace(
                    before.policy, **{f: getattr(patch.policy, f) for f in fields}
                )
                check_policy(after.policy)
            store.save_model(after)
            change = Change("MODEL_UPDATED", after.resource, name, after, before, tuple(paths))
            store.record(change, caller)
            return after

        return await self.core.write(work)

    async def list_models(
        self, filter_text: str, show_archived: bool, size: int, cursor: Cursor | None
    ) -> tuple[list[ModelRecord], Cursor | None]:
        limit = page_size(size)
        digest = query_digest("models", filter_text, show_archived)
        cursor = check_cursor(cursor, digest)
        where = filter_sql.model_filter(filter_text)
        if not show_archived:
            archived = filter_sql.model_filter('state = "ACTIVE"')
            where = archived if where is None else (where & archived)
        after = cursor.last_key if cursor else ""
        models = await self.core.read(lambda store: store.list_models(where, after, limit + 1))
        more = len(models) > limit
        models = models[:limit]
        next_cursor = Cursor(models[-1].name, 0, digest) if more else None
        return models, next_cursor

    async def archive_model(self, name: str, caller: Caller) -> ModelRecord:
        def work(store: Store) -> ModelRecord:
            before = require_model(store, name, lock=True)
            check_owner(caller, before)
            if before.state == "ARCHIVED":
                return before
            after = dataclasses.replace(
                before, state="ARCHIVED", revision=before.revision + 1, update_time=now_us()
            )
            store.save_model(after)
            change = Change("MODEL_ARCHIVED", after.resource, name, after, before, ("state",))
            store.record(change, caller)
            return after

        return await self.core.write(work)

    async def delete_model(self, name: str, etag: str, caller: Caller) -> int:
        def work(store: Store) -> tuple[int, list[str]]:
            before = require_model(store, name, lock=True)
            check_owner(caller, before)
            check_etag(before.resource, etag, before.revision)
            aliases, deployments = store.models_referenced(name)
            if aliases or deployments:
                held = [f"alias '{a}'" for a in aliases] + [
                    f"deployment '{d}'" for d in deployments
                ]
                raise FailedPrecondition(
                    f"model '{before.resource}' is still referenced by {', '.join(held)}"
                )
            deleted = store.delete_model(name)
            store.record(Change("MODEL_DELETED", before.resource, name, before, before), caller)
            garbage = store.unreferenced_artifacts()
            for sha256 in garbage:
                store.delete_artifact(sha256)
            return deleted, garbage

        deleted, garbage = await self.core.write(work)
        for sha256 in garbage:
            self.core.artifacts.delete(sha256)
        return deleted

    # versions -----------------------------------------------------------------------
    async def create_version(self, version: VersionRecord, caller: Caller) -> VersionRecord:
        if version.flavor not in FLAVORS:
            raise invalid(
                "model_version.flavor", f"expected XGBOOST or SKLEARN, got {version.flavor!r}"
            )
        if not version.inputs:
            raise invalid("model_version.signature.inputs", "expected at least one input feature")
        if len(version.request_id) > 64:
            raise invalid("request_id", "expected at most 64 characters")
        check_sha256(version.sha256, "model_version.artifact.sha256")
        names = [feature.name for feature in version.inputs]
        if len(set(names)) != len(names):
            raise invalid("model_version.signature.inputs", "feature names must be unique")

        # An XGBoost file is loaded (safely) at its first registration, outside the lock.
        await self.uploads.inspected(version.sha256)

        def work(store: Store) -> VersionRecord:
            if version.request_id:  # a retry returns the first registration, no new number
                check_owner(caller, require_model(store, version.model, lock=True))
                earlier = store.version_by_request(version.model, version.request_id)
                if earlier is not None:
                    return earlier
            # Lock the model and take the number in one statement; any refusal below rolls
            # the number back with the rest, so numbers stay dense.
            taken = store.take_version_number(version.model)
            if taken is None:
                raise NotFound(f"model 'models/{version.model}' not found")
            model, number = taken
            check_owner(caller, model)
            if model.state == "ARCHIVED":
                raise FailedPrecondition(f"model '{model.resource}' is archived")
            artifact = store.get_artifact(version.sha256)
            if artifact is None:
                raise FailedPrecondition(
                    f"artifact 'artifacts/{version.sha256}' is not uploaded; "
                    "call UploadArtifact first"
                )
            inspected = artifact.inspection
            if inspected.get("flavor", "").upper() != version.flavor:
                raise invalid(
                    "model_version.flavor",
                    f"the artifact is a {inspected.get('flavor')} model, "
                    f"not {version.flavor.lower()}",
                )
            check_signature(inspection_from_dict(inspected), names)
            now = now_us()
            created = dataclasses.replace(
                version,
                artifact_size=artifact.size_bytes,
                artifact_format=artifact.format,
                artifact_time=artifact.create_time,
                version=number,
                status=Status.READY,
                status_message="",
                author=caller.identity,
                create_time=now,
                update_time=now,
                revision=1,
            )
            created.id = store.insert_version(created)
            store.record_all(
                [
                    Change("MODEL_VERSION_CREATED", created.resource, created.model, created),
                    Change("MODEL_VERSION_READY", created.resource, created.model, created),
                ],
                caller,
            )
            return created

        return await self.core.write(work)

    async def get_version(self, model: str, version: int, *, profile: bool = True) -> VersionRecord:
        return await self.core.read(
            lambda store: require_version(store, model, version, profile=profile)
        )

    async def list_versions(
        self, model: str, size: int, cursor: Cursor | None, *, profile: bool
    ) -> tuple[list[VersionRecord], Cursor | None]:
        limit = page_size(size)
        digest = query_digest("versions", model)
        cursor = check_cursor(cursor, digest)
        where = [VERSIONS.c.model == model]
        if cursor is not None:
            where.append(VERSIONS.c.version < cursor.last_id)

        def work(store: Store) -> list[VersionRecord]:
            require_model(store, model)
            return store.select_versions(
                where, [VERSIONS.c.version.desc()], limit + 1, 0, profile=profile
            )

        versions = await self.core.read(work)
        more = len(versions) > limit
        versions = versions[:limit]
        return versions, Cursor("", versions[-1].version, digest) if more else None

    async def search_versions(
        self, filter_text: str, order_text: str, size: int, cursor: Cursor | None, *, profile: bool
    ) -> tuple[list[VersionRecord], Cursor | None]:
        limit = page_size(size)
        digest = query_digest("search", filter_text, order_text)
        cursor = check_cursor(cursor, digest)
        where = filter_sql.version_filter(filter_text)
        order = filter_sql.version_order(order_text)
        offset = cursor.last_id if cursor else 0
        conditions = [] if where is None else [where]
        versions = await self.core.read(
            lambda store: store.select_versions(
                conditions, order, limit + 1, offset, profile=profile
            )
        )
        more = len(versions) > limit
        return versions[:limit], Cursor("", offset + limit, digest) if more else None

    async def update_version(
        self,
        model: str,
        number: int,
        patch: VersionRecord,
        paths: Sequence[str],
        etag: str,
        caller: Caller,
    ) -> VersionRecord:
        if not paths or any(p not in VERSION_PATHS for p in paths):
            raise invalid(
                "update_mask", f"expected only {', '.join(VERSION_PATHS)}, got {list(paths)}"
            )

        def work(store: Store) -> VersionRecord:
            check_owner(caller, require_model(store, model))
            before = require_version(store, model, number, lock=True)
            check_etag(before.resource, etag, before.revision)
            after = dataclasses.replace(before, revision=before.revision + 1, update_time=now_us())
            if "description" in paths:
                after.description = patch.description
            if "tags" in paths:
                after.tags = dict(patch.tags)
            if "model_card" in paths:
                after.model_card = patch.model_card
            store.save_version(after)
            change = Change(
                "MODEL_VERSION_UPDATED", after.resource, model, after, before, tuple(paths)
            )
            store.record(change, caller)
            return after

        return await self.core.write(work)

    async def archive_version(
        self, model: str, number: int, reason: str, caller: Caller
    ) -> VersionRecord:
        def work(store: Store) -> VersionRecord:
            check_owner(caller, require_model(store, model, lock=True))
            before = require_version(store, model, number)
            if before.status == Status.ARCHIVED:
                return before
            if before.aliases:
                raise FailedPrecondition(
                    f"version '{before.resource}' is held by alias(es) {', '.join(before.aliases)}"
                )
            users = [d.name for d in store.list_deployments(model, "", 1000) if uses(d, number)]
            if users:
                raise FailedPrecondition(
                    f"version '{before.resource}' is routed to by deployment(s) {', '.join(users)}"
                )
            after = dataclasses.replace(
                before, status=Status.ARCHIVED, revision=before.revision + 1, update_time=now_us()
            )
            store.save_version(after)
            change = Change(
                "MODEL_VERSION_ARCHIVED", after.resource, model, after, before, ("status",), reason
            )
            store.record(change, caller)
            return after

        return await self.core.write(work)


def uses(deployment: DeploymentRecord, version: int) -> bool:
    """Whether a route or shadow of ``deployment`` serves ``version`` now or by name."""
    targets: list[Route | Shadow] = [*deployment.routes, *deployment.shadows]
    return any(
        t.resolved_version == version or t.target.endswith(f"/versions/{version}") for t in targets
    )


def require_version(
    store: Store, model: str, version: int, *, profile: bool = True, lock: bool = False
) -> VersionRecord:
    record = store.get_version(model, version, profile=profile, lock=lock)
    if record is None:
        if store.get_model(model) is None:
            raise NotFound(f"model 'models/{model}' not found", metadata={"model": model})
        raise NotFound(f"version 'models/{model}/versions/{version}' not found")
    return record
