"""The registry service: what ``keel registry serve`` runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from keel.registry.v1 import registry_pb2, registry_pb2_grpc
from services.common.db import Database, make_engine, upgrade
from services.common.events import SequenceHub
from services.common.server import ServerDeps, ServiceBinding
from services.common.service import ServiceSpec
from services.registry import convert
from services.registry.aliases import Aliases
from services.registry.artifacts import ArtifactStore
from services.registry.changes import Changes
from services.registry.core import Core
from services.registry.deployments import Deployments
from services.registry.models import Models
from services.registry.servicer import RegistryServicer
from services.registry.settings import RegistrySettings
from services.registry.uploads import Uploads

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


def build_servicer(core: Core) -> RegistryServicer:
    return RegistryServicer(
        Models(core), Aliases(core), Deployments(core), Changes(core), Uploads(core)
    )


def open_core(settings: RegistrySettings, tracer: Tracer | None = None) -> Core:
    """Database (migrated to the newest schema) and artifact store from settings."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database("registry.db"))
    upgrade(engine, MIGRATIONS)
    root = settings.artifact_root or str(Path(settings.data_dir, "artifacts").resolve())
    artifacts = ArtifactStore(root, settings.max_artifact_bytes)
    return Core(
        Database(engine),
        artifacts,
        convert.encode_change,
        SequenceHub(settings.event_poll_s),
        tracer,
    )


@asynccontextmanager
async def open_registry(
    settings: RegistrySettings, provider: TracerProvider, metrics: CollectorRegistry
) -> AsyncIterator[ServerDeps]:
    core = open_core(settings, provider.get_tracer("keel.registry"))
    servicer = build_servicer(core)
    binding = ServiceBinding(
        SERVICE_NAME,
        lambda server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, server),
    )
    try:
        yield ServerDeps("registry", [binding], metrics)
    finally:
        await core.db.aclose()


SPEC = ServiceSpec(name="registry", settings=RegistrySettings, open=open_registry)
