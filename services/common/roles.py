"""Roles, and which of them may call each RPC of the three services.

A token carries one or more roles. Every RPC of every Keel service is in ``RPC_ROLES``
(a unit test checks the table against the services' descriptors), so a new RPC is
refused to everybody until someone decides who may call it. Model ownership (a writer
changes only its own team's models) is checked by the registry on top of this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

READER = "reader"  # read RPCs of the registry and the monitor, inference metadata
PREDICTOR = "predictor"  # inference only: ModelInfer, Explain, readiness
WRITER = "writer"  # models, versions, aliases, deployments, alert rules, prediction logs
APPROVER = "approver"  # approve or reject versions (never their own)
ADMIN = "admin"  # everything, on every team's models
ROLES = frozenset({READER, PREDICTOR, WRITER, APPROVER, ADMIN})

ANY = frozenset(ROLES)
READ = frozenset({READER, WRITER, APPROVER, ADMIN})
WRITE = frozenset({WRITER, ADMIN})
APPROVE = frozenset({APPROVER, ADMIN})
PREDICT = frozenset({PREDICTOR, ADMIN})
ADMIN_ONLY = frozenset({ADMIN})

REGISTRY = "keel.registry.v1.RegistryService"
MONITOR = "keel.monitor.v1.MonitorService"
OIP = "inference.GRPCInferenceService"
KEEL_INFERENCE = "keel.inference.v1.InferenceService"

Table = Mapping[str, Mapping[str, frozenset[str]]]

RPC_ROLES: Table = MappingProxyType(
    {
        REGISTRY: MappingProxyType(
            {
                "CreateModel": WRITE,
                "GetModel": READ,
                "UpdateModel": WRITE,
                "ListModels": READ,
                "ArchiveModel": WRITE,
                "DeleteModel": ADMIN_ONLY,
                "CreateModelVersion": WRITE,
                "GetModelVersion": READ,
                "ListModelVersions": READ,
                "SearchModelVersions": READ,
                "UpdateModelVersion": WRITE,
                "ArchiveModelVersion": WRITE,
                "UploadArtifact": WRITE,
                "DownloadArtifact": READ,
                "GetArtifact": READ,
                "SetAlias": WRITE,
                "GetAlias": READ,
                "ListAliases": READ,
                "DeleteAlias": WRITE,
                "ResolveAlias": READ,
                "ListAliasHistory": READ,
                "RollbackAlias": WRITE,
                "CheckPromotion": READ,
                "ApproveModelVersion": APPROVE,
                "RejectModelVersion": APPROVE,
                "ListApprovals": READ,
                "ListAuditEntries": READ,
                "CreateDeployment": WRITE,
                "GetDeployment": READ,
                "ListDeployments": READ,
                "UpdateDeployment": WRITE,
                "DeleteDeployment": WRITE,
                "ListDeploymentRevisions": READ,
                "AbortCanary": WRITE,
                "WatchEvents": READ,
            }
        ),
        MONITOR: MappingProxyType(
            {
                "LogPredictions": WRITE,
                "LogPredictionBatch": WRITE,
                "LogFeedback": WRITE,
                "GetPrediction": READ,
                "ComputeDrift": READ,
                "ComputeDataQuality": READ,
                "ComputePerformance": READ,
                "ComputeFairness": READ,
                "CompareVariants": READ,
                "CreateAlertRule": WRITE,
                "GetAlertRule": READ,
                "ListAlertRules": READ,
                "UpdateAlertRule": WRITE,
                "DeleteAlertRule": WRITE,
                "GetAlert": READ,
                "ListAlerts": READ,
                "AcknowledgeAlert": WRITE,
                "WatchAlerts": READ,
                "ExportAggregates": READ,
                "MergeAggregates": ADMIN_ONLY,
            }
        ),
        OIP: MappingProxyType(
            {
                "ServerLive": ANY,
                "ServerReady": ANY,
                "ModelReady": ANY,
                "ServerMetadata": ANY,
                "ModelMetadata": ANY,
                "ModelInfer": PREDICT,
                "ModelStatistics": READ,
                "RepositoryIndex": READ,
                "RepositoryModelLoad": ADMIN_ONLY,
                "RepositoryModelUnload": ADMIN_ONLY,
            }
        ),
        KEEL_INFERENCE: MappingProxyType(
            {
                "Explain": PREDICT,
                "GetServedModel": READ,
                "ListServedModels": READ,
            }
        ),
    }
)


def split_method(full: str) -> tuple[str, str]:
    """``("pkg.Service", "Method")`` of ``/pkg.Service/Method``; empty parts if malformed."""
    service, _, method = full.lstrip("/").partition("/")
    return (service, method) if service and method and "/" not in method else ("", "")


def allowed_roles(full_method: str, table: Table = RPC_ROLES) -> frozenset[str]:
    """The roles that may call ``/pkg.Service/Method``; none for a method not in the table."""
    service, method = split_method(full_method)
    return table.get(service, {}).get(method, frozenset())


def may_call(roles: frozenset[str], full_method: str, table: Table = RPC_ROLES) -> bool:
    return not roles.isdisjoint(allowed_roles(full_method, table))
