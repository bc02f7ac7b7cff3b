"""Use cases on aliases: compare-and-set moves through the gates, history, rollback,
resolution at a point in time, and approvals."""

from __future__ import annotations

import dataclasses

from services.common.errors import Conflict, FailedPrecondition, NotFound, PermissionDenied
from services.common.paging import Cursor, check_cursor, page_size, query_digest
from services.registry import gates
from services.registry.core import Core, invalid, require_model
from services.registry.models import require_version
from services.registry.ownership import check_owner
from services.registry.records import (
    LATEST,
    AliasMove,
    AliasRecord,
    ApprovalRecord,
    Caller,
    Change,
    ModelRecord,
    Status,
    VersionRecord,
    now_us,
)
from services.registry.store import Store

MAX_REASON = 1024
MAX_COMMENT = 4096


class GateRefused(FailedPrecondition):
    """A protected alias refused the move; ``report`` says why, check by check."""

    reason = "GATE_REFUSED"

    def __init__(self, report: gates.GateReport) -> None:
        super().__init__(
            f"alias '{report.alias}' cannot move to version {report.target_version}: "
            + "; ".join(report.failures())
        )
        self.report = report


def _check_not_latest(alias: str) -> None:
    if alias == LATEST:
        raise invalid("name", "'latest' is reserved: it always means the highest READY version")


def _cas(alias: AliasRecord | None, expected: int | None, resource: str) -> None:
    if expected is None:
        return
    held = alias.version if alias else 0
    if held != expected:
        raise Conflict(
            f"alias '{resource}' holds version {held}, expected {expected}",
            metadata={"current_version": str(held)},
        )


def _protected(model: ModelRecord, alias: AliasRecord) -> AliasRecord:
    return dataclasses.replace(alias, protected=alias.alias in model.policy.protected_aliases)


class Aliases:
    def __init__(self, core: Core) -> None:
        self.core = core

    def _report(
        self, store: Store, model: ModelRecord, alias: str, target: VersionRecord
    ) -> gates.GateReport:
        held = store.get_alias(model.name, alias)
        holder = store.get_version(model.name, held.version, profile=False) if held else None
        decisions = store.approvals(model.name, target.version, alias)
        return gates.evaluate(model, alias, target, holder, decisions, now_us())

    async def check(self, model_name: str, alias: str, version: int) -> gates.GateReport:
        _check_not_latest(alias)

        def work(store: Store) -> gates.GateReport:
            model = require_model(store, model_name)
            target = require_version(store, model_name, version, profile=False)
            return self._report(store, model, alias, target)

        return await self.core.read(work)

    def _move(
        self,
        store: Store,
        model: ModelRecord,
        before: AliasRecord | None,
        alias: str,
        to_version: int,
        kind: str,
        reason: str,
        caller: Caller,
    ) -> AliasRecord:
        now = now_us()
        after = AliasRecord(
            model.name,
            alias,
            to_version,
            before.version if before else 0,
            alias in model.policy.protected_aliases,
            caller.identity,
            reason,
            now,
        )
        store.put_alias(after, exists=before is not None)
        change_type = "ALIAS_ROLLED_BACK" if kind == "ROLLBACK" else "ALIAS_SET"
        sequence = store.record(
            Change(change_type, after.resource, model.name, after, before, ("version",), reason),
            caller,
        )
        store.add_move(
            AliasMove(
                model.name,
                alias,
                kind,
                after.previous_version,
                to_version,
                now,
                caller.identity,
                reason,
                sequence,
            )
        )
        return after

    async def set(
        self,
        model_name: str,
        alias: str,
        version: int,
        expected: int | None,
        reason: str,
        caller: Caller,
    ) -> tuple[AliasRecord, gates.GateReport]:
        _check_not_latest(alias)
        if len(reason) > MAX_REASON:
            raise invalid("reason", f"expected at most {MAX_REASON} characters")

        def work(store: Store) -> tuple[AliasRecord, gates.GateReport]:
            model = require_model(store, model_name, lock=True)
            check_owner(caller, model)
            target = require_version(store, model_name, version, profile=False)
            before = store.get_alias(model_name, alias)
            _cas(before, expected, f"models/{model_name}/aliases/{alias}")
            report = self._report(store, model, alias, target)
            if not report.allowed:
                raise GateRefused(report)
            if before is not None and before.version == version:
                return _protected(model, before), report
            return self._move(store, model, before, alias, version, "SET", reason, caller), report

        return await self.core.write(work)

    async def get(self, model_name: str, alias: str) -> AliasRecord:
        def work(store: Store) -> AliasRecord:
            model = require_model(store, model_name)
            return _protected(model, self._require(store, model_name, alias))

        return await self.core.read(work)

    def _require(self, store: Store, model_name: str, alias: str) -> AliasRecord:
        found = store.get_alias(model_name, alias)
        if found is None:
            raise NotFound(f"alias 'models/{model_name}/aliases/{alias}' not found")
        return found

    async def list_page(
        self, model_name: str, size: int, cursor: Cursor | None
    ) -> tuple[list[AliasRecord], Cursor | None]:
        limit = page_size(size)
        digest = query_digest("aliases", model_name)
        cursor = check_cursor(cursor, digest)

        def work(store: Store) -> list[AliasRecord]:
            model = require_model(store, model_name)
            found = store.list_aliases(model_name, cursor.last_key if cursor else "", limit + 1)
            return [_protected(model, a) for a in found]

        found = await self.core.read(work)
        more = len(found) > limit
        found = found[:limit]
        return found, Cursor(found[-1].alias, 0, digest) if more else None

    async def delete(
        self, model_name: str, alias: str, expected: int | None, reason: str, caller: Caller
    ) -> AliasRecord:
        def work(store: Store) -> AliasRecord:
            model = require_model(store, model_name, lock=True)
            check_owner(caller, model)
            before = self._require(store, model_name, alias)
            _cas(before, expected, before.resource)
            if alias in model.policy.protected_aliases and model.policy.require_approval:
                raise FailedPrecondition(
                    f"alias '{before.resource}' is protected; move it with SetAlias instead"
                )
            store.delete_alias(model_name, alias)
            gone = dataclasses.replace(before, version=0, previous_version=before.version)
            sequence = store.record(
                Change(
                    "ALIAS_DELETED", before.resource, model_name, gone, before, ("version",), reason
                ),
                caller,
            )
            store.add_move(
                AliasMove(
                    model_name,
                    alias,
                    "DELETE",
                    before.version,
                    0,
                    now_us(),
                    caller.identity,
                    reason,
                    sequence,
                )
            )
            return _protected(model, before)

        return await self.core.write(work)

    async def rollback(
        self, model_name: str, alias: str, expected: int | None, reason: str, caller: Caller
    ) -> AliasRecord:
        """Move the alias back to the version it held before its current one. Successive
        rollbacks walk further back through the SET history."""

        def work(store: Store) -> AliasRecord:
            model = require_model(store, model_name, lock=True)
            check_owner(caller, model)
            before = self._require(store, model_name, alias)
            _cas(before, expected, before.resource)
            target = self._rollback_target(store, model_name, alias, before.version)
            version = require_version(store, model_name, target, profile=False)
            if version.status != Status.READY:
                raise FailedPrecondition(
                    f"cannot roll '{before.resource}' back to version {target}: "
                    f"it is {version.status}"
                )
            return self._move(store, model, before, alias, target, "ROLLBACK", reason, caller)

        return await self.core.write(work)

    def _rollback_target(self, store: Store, model_name: str, alias: str, current: int) -> int:
        moves = [m for _, m in store.moves(model_name, alias, limit=100_000)]
        skip = 0  # rollbacks undo SETs one by one, newest first
        for move in moves:  # newest first
            if move.kind == "ROLLBACK":
                skip += 1
            elif move.kind == "SET":
                if skip == 0 and move.to_version == current and move.from_version:
                    return move.from_version
                if skip > 0:
                    skip -= 1
        raise FailedPrecondition(
            f"alias 'models/{model_name}/aliases/{alias}' has no earlier version to roll back to"
        )

    async def resolve(
        self, model_name: str, alias: str, as_of: int | None, *, profile: bool
    ) -> tuple[AliasRecord, VersionRecord]:
        def work(store: Store) -> tuple[AliasRecord, VersionRecord]:
            model = require_model(store, model_name)
            if alias == LATEST:
                if as_of is not None:
                    raise invalid("as_of", "not allowed with 'latest'")
                number = store.latest_ready(model_name)
                if number is None:
                    raise NotFound(f"model 'models/{model_name}' has no READY version")
                record = AliasRecord(model_name, LATEST, number)
            elif as_of is None:
                record = _protected(model, self._require(store, model_name, alias))
            else:
                record = self._as_of(store, model, alias, as_of)
            return record, require_version(store, model_name, record.version, profile=profile)

        return await self.core.read(work)

    def _as_of(self, store: Store, model: ModelRecord, alias: str, as_of: int) -> AliasRecord:
        moves = store.moves(model.name, alias, end=as_of + 1, limit=1)
        if not moves or moves[0][1].to_version == 0:
            raise NotFound(
                f"alias 'models/{model.name}/aliases/{alias}' pointed nowhere at that time"
            )
        move = moves[0][1]
        return AliasRecord(
            model.name,
            alias,
            move.to_version,
            move.from_version,
            alias in model.policy.protected_aliases,
            move.actor,
            move.reason,
            move.move_time,
        )

    async def history(
        self,
        model_name: str,
        alias: str,
        start: int | None,
        end: int | None,
        size: int,
        cursor: Cursor | None,
    ) -> tuple[list[AliasMove], Cursor | None]:
        limit = page_size(size)
        digest = query_digest("history", model_name, alias, start, end)
        cursor = check_cursor(cursor, digest)

        def work(store: Store) -> list[tuple[int, AliasMove]]:
            require_model(store, model_name)
            before_id = cursor.last_id if cursor else None
            return store.moves(
                model_name, alias, start=start, end=end, before_id=before_id, limit=limit + 1
            )

        found = await self.core.read(work)
        more = len(found) > limit
        found = found[:limit]
        return [m for _, m in found], Cursor("", found[-1][0], digest) if more else None

    async def decide(
        self, model_name: str, version: int, alias: str, decision: str, comment: str, caller: Caller
    ) -> ApprovalRecord:
        if len(comment) > MAX_COMMENT:
            raise invalid("comment", f"expected at most {MAX_COMMENT} characters")
        if decision == "REJECTED" and not comment.strip():
            raise invalid("comment", "a rejection needs a comment saying why")
        _check_not_latest(alias)

        def work(store: Store) -> ApprovalRecord:
            require_model(store, model_name, lock=True)
            target = require_version(store, model_name, version, profile=False)
            if target.author and target.author == caller.identity:
                raise PermissionDenied("the author of a version cannot approve or reject it")
            record = store.add_approval(
                ApprovalRecord(
                    0, model_name, version, alias, decision, comment, caller.identity, now_us()
                )
            )
            store.record(Change("APPROVAL_RECORDED", record.resource, model_name, record), caller)
            return record

        return await self.core.write(work)

    async def approvals(
        self, model_name: str, version: int, alias: str, size: int, cursor: Cursor | None
    ) -> tuple[list[ApprovalRecord], Cursor | None]:
        limit = page_size(size)
        digest = query_digest("approvals", model_name, version, alias)
        cursor = check_cursor(cursor, digest)

        def work(store: Store) -> list[ApprovalRecord]:
            require_version(store, model_name, version, profile=False)
            return store.approvals(model_name, version, alias)

        found = await self.core.read(work)
        if cursor is not None:
            found = [a for a in found if a.id < cursor.last_id]
        page = found[:limit]
        return page, Cursor("", page[-1].id, digest) if len(found) > limit else None
