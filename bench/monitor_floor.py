"""The monitor's floor: a bare grpc.aio ``LogPredictions`` that parses every message and
acknowledges every batch as applied at once. No validation, counting or storage, no Keel
plumbing (interceptors, health, reflection): what the benchmark's producers and the
stream itself cost at least, so the benchmark can say how far Keel's monitor is from
the transport it stands on.

``python -m bench.monitor_floor READY_FILE`` binds 127.0.0.1:0 and writes the port it
got to READY_FILE (the same JSON as Keel's ``--ready-file``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from bench.floor_server import serve_bare
from keel.monitor.v1 import ingest_pb2, monitor_pb2
from services.monitor.settings import MonitorSettings

SERVICE = "keel.monitor.v1.MonitorService"
# What the monitor announces by default, so that producers pace themselves the same way.
_DEFAULTS = MonitorSettings.model_fields
WINDOW: int = _DEFAULTS["max_in_flight_batches"].default
MAX_BATCH_ROWS: int = _DEFAULTS["max_batch_rows"].default
Request = monitor_pb2.LogPredictionsRequest
Response = monitor_pb2.LogPredictionsResponse


async def log_predictions(
    requests: AsyncIterator[Request], context: grpc.aio.ServicerContext[Request, Response]
) -> AsyncIterator[Response]:
    async for request in requests:
        if request.WhichOneof("kind") == "open":
            ready = ingest_pb2.LogStreamReady(
                max_in_flight_batches=WINDOW, max_batch_rows=MAX_BATCH_ROWS
            )
            yield Response(ready=ready)
            continue
        batch = request.batch
        yield Response(
            ack=ingest_pb2.BatchAck(
                producer_id=batch.producer_id,
                sequence=batch.sequence,
                outcome=ingest_pb2.BATCH_OUTCOME_APPLIED,
                applied_through_sequence=batch.sequence,
                applied_rows=batch.row_count,
            )
        )


async def serve(ready_file: Path) -> None:
    handler = grpc.stream_stream_rpc_method_handler(
        log_predictions,
        request_deserializer=Request.FromString,
        response_serializer=Response.SerializeToString,
    )
    await serve_bare("floor", SERVICE, {"LogPredictions": handler}, ready_file)


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
