"""The prediction log's NATS JetStream transport, as both ends see it: one stream
(``KEEL_PREDICTIONS`` by default) whose messages are serialized ``PredictionBatch``es,
one per message, published by inference processes and read by monitors through one
durable pull consumer with explicit acks.

A message carries ``Nats-Msg-Id: {producer}/{sequence}``, so a batch published again
(after a lost publish ack) is dropped by the server within its duplicate window; a
message redelivered to a monitor (after a lost consumer ack, or to another replica) is
recognised by its prediction ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError

DEFAULT_STREAM = "KEEL_PREDICTIONS"
DEFAULT_SUBJECT = "keel.predictions"
DUPLICATE_WINDOW_S = 600.0


@dataclass(frozen=True)
class StreamNames:
    stream: str = DEFAULT_STREAM
    subject: str = DEFAULT_SUBJECT


async def ensure_stream(js: JetStreamContext, names: StreamNames) -> None:
    """Create the stream unless it exists: a work queue (a message is deleted once a
    monitor acknowledged it), file storage."""
    try:
        await js.stream_info(names.stream)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=names.stream,
                subjects=[names.subject],
                retention=RetentionPolicy.WORK_QUEUE,
                duplicate_window=DUPLICATE_WINDOW_S,
            )
        )


def message_id(producer_id: str, sequence: int) -> str:
    return f"{producer_id}/{sequence}"
