"""The prediction log through NATS JetStream (``PREDICTION_LOG_TRANSPORT=nats``): each
spooled batch is published to the stream in sequence order and forgotten once the
server has stored it (its publish ack); monitors read the stream at their own pace
(``services/monitor/jetstream_consumer.py``). While NATS is unreachable, batches wait in
the spool exactly as they do for the gRPC transport.
"""

from __future__ import annotations

import asyncio

import nats
from nats.errors import ConnectionClosedError, NoServersError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import Error as JetStreamError

from services.common.jetstream import StreamNames, ensure_stream, message_id
from services.inference.delivery import Sender, sequenced
from services.inference.spool import Spool

PUBLISH_TIMEOUT_S = 5.0
READ_AHEAD = 64


class JetStreamDelivery(Sender):
    unreachable = (
        NatsError,
        JetStreamError,
        NoServersError,
        ConnectionClosedError,
        NatsTimeout,
        OSError,
        TimeoutError,
    )

    def __init__(
        self,
        url: str,
        names: StreamNames,
        spool: Spool,
        producer_id: str,
        *,
        retry_s: float = 0.5,
        max_retry_s: float = 5.0,
    ) -> None:
        super().__init__(spool, producer_id, retry_s=retry_s, max_retry_s=max_retry_s)
        self._url = url
        self._names = names

    async def _session(self) -> None:
        client = await nats.connect(
            self._url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0
        )
        try:
            js = client.jetstream()
            await ensure_stream(js, self._names)
            self.connected = True
            while True:
                self._more.clear()
                batches = await asyncio.to_thread(self.spool.read, 0, READ_AHEAD)
                if not batches:
                    try:
                        await asyncio.wait_for(self._more.wait(), 1.0)
                    except TimeoutError:
                        if client.is_closed or not client.is_connected:
                            raise ConnectionClosedError from None
                    continue
                for spooled in batches:
                    ack = await js.publish(
                        self._names.subject,
                        sequenced(spooled.payload, spooled.sequence),
                        timeout=PUBLISH_TIMEOUT_S,
                        headers={"Nats-Msg-Id": message_id(self.producer_id, spooled.sequence)},
                    )
                    if ack.duplicate:
                        self.duplicate_rows += spooled.rows
                    else:
                        self.delivered_rows += spooled.rows
                    await asyncio.to_thread(self.spool.acknowledge, spooled.sequence)
        finally:
            self.connected = False
            if not client.is_closed:
                await client.close()
