"""The prediction log of one inference process, put together: a spool directory of its
own (claimed with a lock, so worker processes sharing ``data_dir`` each get one and a
restarted process takes over a dead one's), a stable producer id, the shipper that seals
records into the spool, and the delivery that streams the spool to the monitor.

On shutdown the last records are sealed, delivery gets ``drain_s`` to empty the spool,
and whatever is left stays on disk for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider

from services.common.bearer import with_service_token
from services.common.channels import create_channel
from services.common.jetstream import StreamNames
from services.common.tls import channel_credentials
from services.inference import delivery
from services.inference.delivery import Delivery, Sender
from services.inference.jetstream_delivery import JetStreamDelivery
from services.inference.settings import InferenceSettings
from services.inference.shipping import Shipper
from services.inference.spool import Spool, claim_directory, producer_id, write_once

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictionLog:
    shipper: Shipper
    spool: Spool
    delivery: Sender


def pii_key(settings: InferenceSettings) -> bytes:
    """The key of PII digests: the setting, else a random key kept in ``data_dir``
    (replicas on several hosts must share one setting for equal values to match)."""
    configured = settings.pii_hash_key.get_secret_value()
    if configured:
        return configured.encode()
    stored = write_once(settings.data_dir / "pii.key", lambda: secrets.token_hex(32), mode=0o600)
    return stored.strip().encode()


@asynccontextmanager
async def open_prediction_log(
    settings: InferenceSettings, provider: TracerProvider
) -> AsyncIterator[PredictionLog]:
    directory, claim = claim_directory(settings.data_dir / "spool")
    spool = Spool(
        directory,
        max_bytes=settings.prediction_log_spool_bytes,
        sync=settings.prediction_log_spool_sync,
    )
    producer = producer_id(directory)
    channel = None
    sender: Sender
    if settings.prediction_log_transport == "nats":
        names = StreamNames(settings.nats_stream, settings.nats_subject)
        sender = JetStreamDelivery(
            settings.nats_url, names, spool, producer, retry_s=settings.prediction_log_retry_s
        )
    else:
        channel = create_channel(
            settings.monitor_address,
            tracer_provider=provider,
            services=[delivery.SERVICE],
            streaming_methods=delivery.STREAMS,
            credentials=channel_credentials(settings),
        )
        channel = with_service_token(channel, settings)
        sender = Delivery(
            channel,
            spool,
            producer,
            description=f"keel-inference on {socket.gethostname()} pid {os.getpid()}",
            retry_s=settings.prediction_log_retry_s,
        )
    shipper = Shipper(
        spool,
        producer,
        pii_key=pii_key(settings),
        batch_rows=settings.prediction_log_batch_rows,
        flush_s=settings.prediction_log_flush_s,
        max_waiting_rows=settings.prediction_log_max_waiting_rows,
        on_sealed=sender.wake,
    )
    log.info("prediction log: producer %s, spool %s", producer, directory)
    sealing, delivering = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(shipper.run(sealing)),
        asyncio.create_task(sender.run(delivering)),
    ]
    try:
        yield PredictionLog(shipper, spool, sender)
    finally:
        sealing.set()
        await tasks[0]
        if sender.connected and not await sender.drain(settings.prediction_log_drain_s):
            log.warning(
                "prediction log: %d batches (%d predictions) stay in the spool for the next start",
                spool.pending_batches,
                spool.pending_rows,
            )
        delivering.set()
        tasks[1].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[1]
        if channel is not None:
            await channel.close(None)
        spool.close()
        claim.release()
