"""The monitor service: what ``keel monitor serve`` runs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from keel.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from keel.registry.v1 import registry_pb2_grpc
from services.common.bearer import with_service_token
from services.common.channels import create_channel
from services.common.db import Database, make_engine, upgrade
from services.common.jetstream import StreamNames
from services.common.server import ServerDeps, ServiceBinding
from services.common.service import ServiceSpec
from services.common.tls import channel_credentials
from services.monitor.actions import RegistryCanaries
from services.monitor.alert_metrics import AlertMetrics
from services.monitor.alerts import Alerting
from services.monitor.counting import Counting
from services.monitor.exchange import Exchange
from services.monitor.feedback import Keeping
from services.monitor.guards import DeploymentGuards
from services.monitor.ingest import EXPIRE_SEGMENTS, Ingestor, expire
from services.monitor.jetstream_consumer import JetStreamConsumer
from services.monitor.labels import Feedback
from services.monitor.predictions import Predictions
from services.monitor.rates import RowRates
from services.monitor.references import References
from services.monitor.reports import Reports
from services.monitor.scope import Aggregates
from services.monitor.servicer import MonitorServicer
from services.monitor.settings import MonitorSettings

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name
REGISTRY_SERVICE = "keel.registry.v1.RegistryService"
EXPIRE_EVERY_S = 60.0
log = logging.getLogger(__name__)


@dataclass
class Monitor:
    """Everything the monitor's servicer needs, wired from settings."""

    db: Database
    servicer: MonitorServicer
    alerting: Alerting
    guards: DeploymentGuards

    async def expire_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            try:
                await self.expire_due(time.time_ns())
            except Exception:  # noqa: BLE001 - retried at the next tick
                log.exception("expiring the join window failed")

    async def expire_due(self, now: int) -> int:
        """Forget what the join window no longer holds at ``now``, a bounded transaction
        at a time; returns the segments dropped."""
        dropped = 0
        while True:
            done = await self.db.write(lambda c: expire(c, now))
            dropped += done
            if done < EXPIRE_SEGMENTS:
                return dropped


def source_id(settings: MonitorSettings, url: str) -> str:
    return settings.instance_id or "monitor-" + hashlib.sha256(url.encode()).hexdigest()[:16]


def build_monitor(
    settings: MonitorSettings,
    registry: registry_pb2_grpc.RegistryServiceAsyncStub,
    tracer: Tracer | None = None,
) -> Monitor:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.database("monitor.db")
    engine = make_engine(url, page_size=settings.sqlite_page_size)
    upgrade(engine, MIGRATIONS)
    db = Database(engine)
    references = References(db, registry)
    aggregates = Aggregates(db, references, settings.bucket_s)
    metrics = AlertMetrics(aggregates, references)
    guards = DeploymentGuards(registry, settings.guard_refresh_s)
    alerting = Alerting(
        db,
        settings,
        check_rule=metrics.check,
        evaluate=metrics.evaluate,
        canaries=RegistryCanaries(registry),
        guarding_deployments=guards,
    )
    keeping = Keeping(settings.bucket_s, settings.join_window_s, settings.max_batch_rows)
    servicer = MonitorServicer(
        Ingestor(
            db,
            references,
            keeping,
            alerting.notify,
            tracer,
            Counting(in_process=not settings.count_process, ids=keeping.keeps_rows),
            group_limit=settings.max_in_flight_batches // 2,
        ),
        Feedback(db, references, keeping, alerting.notify),
        Reports(aggregates),
        Predictions(db, keeping.keeps_rows),
        Exchange(db, references, source_id(settings, url), settings.bucket_s),
        settings.max_in_flight_batches,
        alerting,
        RowRates(settings.max_rows_per_s, settings.max_batch_rows),
    )
    return Monitor(db, servicer, alerting, guards)


@asynccontextmanager
async def open_monitor(
    settings: MonitorSettings, provider: TracerProvider, metrics: CollectorRegistry
) -> AsyncIterator[ServerDeps]:
    channel = create_channel(
        settings.registry_address,
        tracer_provider=provider,
        services=[REGISTRY_SERVICE],
        credentials=channel_credentials(settings),
    )
    channel = with_service_token(channel, settings)
    monitor = build_monitor(
        settings,
        registry_pb2_grpc.RegistryServiceStub(channel),
        provider.get_tracer("keel.monitor"),
    )
    binding = ServiceBinding(
        SERVICE_NAME,
        lambda server: monitor_pb2_grpc.add_MonitorServiceServicer_to_server(
            monitor.servicer, server
        ),
    )
    await monitor.servicer.ingestor.start()
    monitor.guards.start()
    await monitor.alerting.start()
    expiry = asyncio.create_task(monitor.expire_forever())
    consuming = asyncio.Event()
    consumer = None
    if settings.nats_url:
        names = StreamNames(settings.nats_stream, settings.nats_subject)
        reader = JetStreamConsumer(
            settings.nats_url, names, settings.nats_durable, monitor.servicer.ingestor
        )
        consumer = asyncio.create_task(reader.run(consuming))
    try:
        yield ServerDeps("monitor", [binding], metrics)
    finally:
        consuming.set()
        if consumer is not None:
            await consumer
        expiry.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await expiry
        await monitor.alerting.stop()
        await monitor.guards.stop()
        await monitor.servicer.ingestor.aclose()
        await channel.close(None)
        await monitor.db.aclose()


SPEC = ServiceSpec(name="monitor", settings=MonitorSettings, open=open_monitor)
