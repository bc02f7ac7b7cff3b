"""Prediction logs from NATS JetStream (``KEEL_MONITOR_NATS_URL``): a durable pull
consumer on the prediction stream, shared by every monitor replica (each message goes
to one of them). A message is acknowledged only once its batch is committed, refused
for good (``term``) when the batch is invalid, and handed back (``nak``, redelivered
later) when the store cannot commit now.

Batches are applied unsequenced (by prediction id): with several replicas pulling from
one consumer, a producer's batches may be applied out of order, which the per-producer
sequence mark would take for duplicates; ids recognise a redelivered batch just as well.
"""

from __future__ import annotations

import asyncio
import logging

import nats
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import Error as JetStreamError

from keel.monitor.v1 import ingest_pb2
from services.common.errors import DomainError, Unavailable
from services.common.jetstream import StreamNames, ensure_stream
from services.monitor.ingest import Ingestor

log = logging.getLogger(__name__)
FETCH = 32
ACK_WAIT_S = 30.0
RETRY_S = 1.0


class JetStreamConsumer:
    def __init__(self, url: str, names: StreamNames, durable: str, ingestor: Ingestor) -> None:
        self._url = url
        self._names = names
        self._durable = durable
        self._ingestor = ingestor
        self.applied_rows = 0
        self.duplicate_rows = 0
        self.refused_batches = 0

    async def run(self, stop: asyncio.Event) -> None:
        warned = False
        while not stop.is_set():
            try:
                await self._session(stop)
            except asyncio.CancelledError:
                raise
            except (NatsError, JetStreamError, OSError, TimeoutError) as error:
                if not warned:
                    log.warning("prediction log: NATS unreachable (%s); retrying", error)
                    warned = True
            try:
                await asyncio.wait_for(stop.wait(), RETRY_S)
            except TimeoutError:
                continue

    async def _session(self, stop: asyncio.Event) -> None:
        client = await nats.connect(
            self._url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0
        )
        try:
            js = client.jetstream()
            await ensure_stream(js, self._names)
            subscription = await js.pull_subscribe(
                self._names.subject,
                durable=self._durable,
                stream=self._names.stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S),
            )
            log.info("prediction log: consuming %s as %s", self._names.stream, self._durable)
            while not stop.is_set():
                try:
                    messages = await subscription.fetch(FETCH, timeout=1.0)
                except NatsTimeout:
                    continue
                await asyncio.gather(*(self._apply(m) for m in messages))
        finally:
            if not client.is_closed:
                await client.close()

    async def _apply(self, message: Msg) -> None:
        try:
            batch = ingest_pb2.PredictionBatch.FromString(message.data)
            batch.sequence = 0  # by prediction id; see the module's docstring
            result = await self._ingestor.submit(batch)
        except Unavailable as error:
            log.warning("prediction log: cannot commit now (%s); redelivered later", error)
            await message.nak(delay=RETRY_S)
            return
        except (DomainError, DecodeError) as error:  # an invalid batch: never valid later
            self.refused_batches += 1
            log.warning("prediction log: refused a batch from NATS: %s", error)
            await message.term()
            return
        self.applied_rows += result.applied_rows
        self.duplicate_rows += result.duplicate_rows
        await message.ack()
