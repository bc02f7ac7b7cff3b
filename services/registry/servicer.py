"""RegistryService over gRPC: protobuf in, one use-case call, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator

from opentelemetry import trace

from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc
from services.common.errors import InvalidArgument
from services.common.identity import principal
from services.common.rpc import Context
from services.registry import convert
from services.registry.aliases import Aliases, GateRefused
from services.registry.changes import Changes, Heartbeat
from services.registry.core import alias_ref, check_id, invalid, model_id, parse_name, version_ref
from services.registry.deployments import Deployments
from services.registry.models import Models
from services.registry.records import Caller
from services.registry.uploads import Uploads


def caller(context: Context) -> Caller:
    """Who is calling (the token's subject when auth is on, else ``x-keel-user``), and the
    trace the call belongs to."""
    span = trace.get_current_span().get_span_context()
    trace_id = format(span.trace_id, "032x") if span.is_valid else ""
    who = principal(context)
    roles = tuple(sorted(who.roles))
    return Caller(who.subject, roles, trace_id, who.team, who.authenticated)


def _full(view: int, default_full: bool) -> bool:
    return view == 2 or (view == 0 and default_full)


def _deployment_id(field: str, name: str) -> str:
    return check_id(field, parse_name(field, name, "deployments")[0])


def _artifact_id(field: str, name: str) -> str:
    return parse_name(field, name, "artifacts")[0]


class RegistryServicer(pb_grpc.RegistryServiceServicer):
    def __init__(
        self,
        models: Models,
        aliases: Aliases,
        deployments: Deployments,
        changes: Changes,
        uploads: Uploads,
    ) -> None:
        self.models, self.aliases, self.deployments = models, aliases, deployments
        self.changes, self.uploads = changes, uploads

    # models -------------------------------------------------------------------------
    async def CreateModel(
        self, request: pb.CreateModelRequest, context: Context
    ) -> pb.CreateModelResponse:
        record = convert.model_record(request.model, request.model_id)
        created = await self.models.create_model(record, caller(context))
        return pb.CreateModelResponse(model=convert.model_message(created))

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:
        found = await self.models.get_model(model_id("name", request.name))
        return pb.GetModelResponse(model=convert.model_message(found))

    async def UpdateModel(
        self, request: pb.UpdateModelRequest, context: Context
    ) -> pb.UpdateModelResponse:
        name = model_id("model.name", request.model.name)
        patch = convert.model_record(request.model, name)
        updated = await self.models.update_model(
            name, patch, list(request.update_mask.paths), request.model.etag, caller(context)
        )
        return pb.UpdateModelResponse(model=convert.model_message(updated))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        found, nxt = await self.models.list_models(
            request.filter,
            request.show_archived,
            request.page_size,
            convert.cursor(request.page_token),
        )
        return pb.ListModelsResponse(
            models=[convert.model_message(m) for m in found], next_page_token=convert.token(nxt)
        )

    async def ArchiveModel(
        self, request: pb.ArchiveModelRequest, context: Context
    ) -> pb.ArchiveModelResponse:
        archived = await self.models.archive_model(model_id("name", request.name), caller(context))
        return pb.ArchiveModelResponse(model=convert.model_message(archived))

    async def DeleteModel(
        self, request: pb.DeleteModelRequest, context: Context
    ) -> pb.DeleteModelResponse:
        deleted = await self.models.delete_model(
            model_id("name", request.name), request.etag, caller(context)
        )
        return pb.DeleteModelResponse(deleted_versions=deleted)

    # versions -----------------------------------------------------------------------
    async def CreateModelVersion(
        self, request: pb.CreateModelVersionRequest, context: Context
    ) -> pb.CreateModelVersionResponse:
        model = model_id("parent", request.parent)
        record = convert.version_record(request.model_version, model, request.request_id)
        created = await self.models.create_version(record, caller(context))
        return pb.CreateModelVersionResponse(model_version=convert.version_message(created))

    async def GetModelVersion(
        self, request: pb.GetModelVersionRequest, context: Context
    ) -> pb.GetModelVersionResponse:
        model, number = version_ref("name", request.name)
        full = _full(request.view, True)
        found = await self.models.get_version(model, number, profile=full)
        return pb.GetModelVersionResponse(model_version=convert.version_message(found, full=full))

    async def ListModelVersions(
        self, request: pb.ListModelVersionsRequest, context: Context
    ) -> pb.ListModelVersionsResponse:
        full = _full(request.view, False)
        found, nxt = await self.models.list_versions(
            model_id("parent", request.parent),
            request.page_size,
            convert.cursor(request.page_token),
            profile=full,
        )
        return pb.ListModelVersionsResponse(
            model_versions=[convert.version_message(v, full=full) for v in found],
            next_page_token=convert.token(nxt),
        )

    async def SearchModelVersions(
        self, request: pb.SearchModelVersionsRequest, context: Context
    ) -> pb.SearchModelVersionsResponse:
        full = _full(request.view, False)
        found, nxt = await self.models.search_versions(
            request.filter,
            request.order_by,
            request.page_size,
            convert.cursor(request.page_token),
            profile=full,
        )
        return pb.SearchModelVersionsResponse(
            model_versions=[convert.version_message(v, full=full) for v in found],
            next_page_token=convert.token(nxt),
        )

    async def UpdateModelVersion(
        self, request: pb.UpdateModelVersionRequest, context: Context
    ) -> pb.UpdateModelVersionResponse:
        model, number = version_ref("model_version.name", request.model_version.name)
        updated = await self.models.update_version(
            model,
            number,
            convert.version_patch(request.model_version),
            list(request.update_mask.paths),
            request.model_version.etag,
            caller(context),
        )
        return pb.UpdateModelVersionResponse(model_version=convert.version_message(updated))

    async def ArchiveModelVersion(
        self, request: pb.ArchiveModelVersionRequest, context: Context
    ) -> pb.ArchiveModelVersionResponse:
        model, number = version_ref("name", request.name)
        archived = await self.models.archive_version(model, number, request.reason, caller(context))
        return pb.ArchiveModelVersionResponse(
            model_version=convert.version_message(archived, full=False)
        )

    # artifacts ----------------------------------------------------------------------
    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.UploadArtifactRequest], context: Context
    ) -> pb.UploadArtifactResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("content") != "header":
            raise invalid("header", "the first message of an upload must be the header")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("content") != "chunk":
                    raise invalid("header", "only the first message may be a header")
                yield message.chunk

        stored, created = await self.uploads.upload(
            first.header.sha256, first.header.size_bytes, chunks()
        )
        return pb.UploadArtifactResponse(
            artifact=convert.artifact_message(stored), already_existed=not created
        )

    async def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: Context
    ) -> AsyncIterator[pb.DownloadArtifactResponse]:
        record, chunks = await self.uploads.download(
            _artifact_id("name", request.name), request.offset
        )
        yield pb.DownloadArtifactResponse(artifact=convert.artifact_message(record))
        async for chunk in chunks:
            yield pb.DownloadArtifactResponse(chunk=chunk)

    async def GetArtifact(
        self, request: pb.GetArtifactRequest, context: Context
    ) -> pb.GetArtifactResponse:
        found = await self.uploads.get(_artifact_id("name", request.name))
        return pb.GetArtifactResponse(artifact=convert.artifact_message(found))

    # aliases ------------------------------------------------------------------------
    async def SetAlias(self, request: pb.SetAliasRequest, context: Context) -> pb.SetAliasResponse:
        model, alias = alias_ref("name", request.name)
        expected = request.expected_version if request.HasField("expected_version") else None
        try:
            moved, report = await self.aliases.set(
                model, alias, request.version, expected, request.reason, caller(context)
            )
        except GateRefused as refused:
            refused.details = (convert.gate_report(refused.report),)
            raise
        return pb.SetAliasResponse(
            alias=convert.alias_message(moved), gate_report=convert.gate_report(report)
        )

    async def GetAlias(self, request: pb.GetAliasRequest, context: Context) -> pb.GetAliasResponse:
        found = await self.aliases.get(*alias_ref("name", request.name))
        return pb.GetAliasResponse(alias=convert.alias_message(found))

    async def ListAliases(
        self, request: pb.ListAliasesRequest, context: Context
    ) -> pb.ListAliasesResponse:
        found, nxt = await self.aliases.list_page(
            model_id("parent", request.parent),
            request.page_size,
            convert.cursor(request.page_token),
        )
        return pb.ListAliasesResponse(
            aliases=[convert.alias_message(a) for a in found], next_page_token=convert.token(nxt)
        )

    async def DeleteAlias(
        self, request: pb.DeleteAliasRequest, context: Context
    ) -> pb.DeleteAliasResponse:
        model, alias = alias_ref("name", request.name)
        expected = request.expected_version if request.HasField("expected_version") else None
        gone = await self.aliases.delete(model, alias, expected, request.reason, caller(context))
        return pb.DeleteAliasResponse(alias=convert.alias_message(gone))

    async def ResolveAlias(
        self, request: pb.ResolveAliasRequest, context: Context
    ) -> pb.ResolveAliasResponse:
        model, _, alias = request.reference.partition("@")
        if not alias:
            raise invalid("reference", f"expected 'model@alias', got {request.reference!r}")
        check_id("reference", model)
        check_id("reference", alias)
        as_of = convert.micros(request.as_of, "as_of") if request.HasField("as_of") else None
        full = _full(request.view, True)
        held, version = await self.aliases.resolve(model, alias, as_of, profile=full)
        return pb.ResolveAliasResponse(
            alias=convert.alias_message(held),
            model_version=convert.version_message(version, full=full),
        )

    async def ListAliasHistory(
        self, request: pb.ListAliasHistoryRequest, context: Context
    ) -> pb.ListAliasHistoryResponse:
        has = request.HasField
        start = convert.micros(request.start_time, "start_time") if has("start_time") else None
        end = convert.micros(request.end_time, "end_time") if has("end_time") else None
        found, nxt = await self.aliases.history(
            model_id("parent", request.parent),
            request.alias,
            start,
            end,
            request.page_size,
            convert.cursor(request.page_token),
        )
        return pb.ListAliasHistoryResponse(
            moves=[convert.move_message(m) for m in found], next_page_token=convert.token(nxt)
        )

    async def RollbackAlias(
        self, request: pb.RollbackAliasRequest, context: Context
    ) -> pb.RollbackAliasResponse:
        model, alias = alias_ref("name", request.name)
        expected = request.expected_version if request.HasField("expected_version") else None
        moved = await self.aliases.rollback(model, alias, expected, request.reason, caller(context))
        return pb.RollbackAliasResponse(alias=convert.alias_message(moved))

    async def CheckPromotion(
        self, request: pb.CheckPromotionRequest, context: Context
    ) -> pb.CheckPromotionResponse:
        model, alias = alias_ref("alias", request.alias)
        report = await self.aliases.check(model, alias, request.version)
        return pb.CheckPromotionResponse(gate_report=convert.gate_report(report))

    async def ApproveModelVersion(
        self, request: pb.ApproveModelVersionRequest, context: Context
    ) -> pb.ApproveModelVersionResponse:
        model, number = version_ref("name", request.name)
        check_id("alias", request.alias)
        record = await self.aliases.decide(
            model, number, request.alias, "APPROVED", request.comment, caller(context)
        )
        return pb.ApproveModelVersionResponse(approval=convert.approval_message(record))

    async def RejectModelVersion(
        self, request: pb.RejectModelVersionRequest, context: Context
    ) -> pb.RejectModelVersionResponse:
        model, number = version_ref("name", request.name)
        check_id("alias", request.alias)
        record = await self.aliases.decide(
            model, number, request.alias, "REJECTED", request.comment, caller(context)
        )
        return pb.RejectModelVersionResponse(approval=convert.approval_message(record))

    async def ListApprovals(
        self, request: pb.ListApprovalsRequest, context: Context
    ) -> pb.ListApprovalsResponse:
        model, number = version_ref("parent", request.parent)
        found, nxt = await self.aliases.approvals(
            model, number, request.alias, request.page_size, convert.cursor(request.page_token)
        )
        return pb.ListApprovalsResponse(
            approvals=[convert.approval_message(a) for a in found],
            next_page_token=convert.token(nxt),
        )

    # audit and events ---------------------------------------------------------------
    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Context
    ) -> pb.ListAuditEntriesResponse:
        found, nxt = await self.changes.audit(
            request.filter, request.order_by, request.page_size, convert.cursor(request.page_token)
        )
        return pb.ListAuditEntriesResponse(
            entries=[convert.audit_message(e) for e in found], next_page_token=convert.token(nxt)
        )

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Context
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        after = request.after_sequence if request.HasField("after_sequence") else None
        if after is not None and after < 0:
            raise invalid("after_sequence", f"expected 0 or more, got {after}")
        models = [model_id("models", name) for name in request.models]
        interval = convert.seconds(request.heartbeat_interval, "heartbeat_interval") or 15.0
        stream = self.changes.watch(
            after, models, convert.change_types(request.types), max(interval, 1.0)
        )
        async for item in stream:
            if isinstance(item, Heartbeat):
                beat = pb.Heartbeat(
                    latest_sequence=item.latest_sequence,
                    server_time=convert.timestamp(item.server_time),
                )
                yield pb.WatchEventsResponse(heartbeat=beat)
            else:
                yield pb.WatchEventsResponse(event=convert.event_message(item))

    # deployments --------------------------------------------------------------------
    async def CreateDeployment(
        self, request: pb.CreateDeploymentRequest, context: Context
    ) -> pb.CreateDeploymentResponse:
        record = convert.deployment_record(request.deployment, request.deployment_id)
        if not record.model:
            raise invalid("deployment.model", "expected the model it serves, 'models/{model}'")
        created = await self.deployments.create(record, caller(context))
        return pb.CreateDeploymentResponse(deployment=convert.deployment_message(created))

    async def GetDeployment(
        self, request: pb.GetDeploymentRequest, context: Context
    ) -> pb.GetDeploymentResponse:
        found = await self.deployments.get(_deployment_id("name", request.name))
        return pb.GetDeploymentResponse(deployment=convert.deployment_message(found))

    async def ListDeployments(
        self, request: pb.ListDeploymentsRequest, context: Context
    ) -> pb.ListDeploymentsResponse:
        model = model_id("model", request.model) if request.model else ""
        found, nxt = await self.deployments.list_page(
            model, request.page_size, convert.cursor(request.page_token)
        )
        return pb.ListDeploymentsResponse(
            deployments=[convert.deployment_message(d) for d in found],
            next_page_token=convert.token(nxt),
        )

    async def UpdateDeployment(
        self, request: pb.UpdateDeploymentRequest, context: Context
    ) -> pb.UpdateDeploymentResponse:
        name = _deployment_id("deployment.name", request.deployment.name)
        patch = convert.deployment_record(request.deployment, name)
        updated = await self.deployments.update(
            name,
            patch,
            list(request.update_mask.paths),
            request.deployment.etag,
            request.reason,
            caller(context),
        )
        return pb.UpdateDeploymentResponse(deployment=convert.deployment_message(updated))

    async def DeleteDeployment(
        self, request: pb.DeleteDeploymentRequest, context: Context
    ) -> pb.DeleteDeploymentResponse:
        gone = await self.deployments.delete(
            _deployment_id("name", request.name), request.etag, caller(context)
        )
        return pb.DeleteDeploymentResponse(deployment=convert.deployment_message(gone))

    async def ListDeploymentRevisions(
        self, request: pb.ListDeploymentRevisionsRequest, context: Context
    ) -> pb.ListDeploymentRevisionsResponse:
        found, nxt = await self.deployments.revisions(
            _deployment_id("name", request.name),
            request.page_size,
            convert.cursor(request.page_token),
        )
        return pb.ListDeploymentRevisionsResponse(
            revisions=[convert.deployment_message(d) for d in found],
            next_page_token=convert.token(nxt),
        )

    async def AbortCanary(
        self, request: pb.AbortCanaryRequest, context: Context
    ) -> pb.AbortCanaryResponse:
        updated, changed = await self.deployments.abort_canary(
            _deployment_id("name", request.name),
            request.alert_rule,
            request.reason,
            request.etag,
            caller(context),
        )
        return pb.AbortCanaryResponse(
            deployment=convert.deployment_message(updated), changed=changed
        )


__all__ = ["RegistryServicer", "InvalidArgument"]
