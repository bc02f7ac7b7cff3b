"""MonitorService over gRPC: ingestion, feedback, reports and aggregate exchange (the
alert RPCs come from ``AlertRpcs``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import monitor_pb2_grpc as pb_grpc
from services.common.errors import (
    Conflict,
    DomainError,
    InvalidArgument,
    Unavailable,
    status_code_for,
)
from services.common.rpc import Context
from services.monitor.alerts import Alerting
from services.monitor.alerts_servicer import AlertRpcs
from services.monitor.exchange import Exchange
from services.monitor.ingest import DUPLICATE, BatchResult, Ingestor
from services.monitor.labels import Feedback
from services.monitor.predictions import Predictions
from services.monitor.rates import RowRates
from services.monitor.reports import Reports


def ack(batch: ingest_pb2.PredictionBatch, result: BatchResult, window: int) -> ingest_pb2.BatchAck:
    return ingest_pb2.BatchAck(
        producer_id=batch.producer_id,
        sequence=batch.sequence,
        outcome=ingest_pb2.BATCH_OUTCOME_DUPLICATE
        if result.outcome == DUPLICATE
        else ingest_pb2.BATCH_OUTCOME_APPLIED,
        applied_through_sequence=result.applied_through,
        applied_rows=result.applied_rows,
        duplicate_rows=result.duplicate_rows,
        ignored_columns=result.ignored_columns,
        max_in_flight_batches=window,
    )


def rejected(
    batch: ingest_pb2.PredictionBatch, error: DomainError, mark: int, window: int
) -> ingest_pb2.BatchAck:
    return ingest_pb2.BatchAck(
        producer_id=batch.producer_id,
        sequence=batch.sequence,
        outcome=ingest_pb2.BATCH_OUTCOME_REJECTED,
        applied_through_sequence=mark,
        error_code=status_code_for(error).value[0],
        error_message=error.message,
        max_in_flight_batches=window,
    )


class Streams:
    """The open LogPredictions stream of each producer: a newer one takes over."""

    def __init__(self) -> None:
        self._owners: dict[str, object] = {}

    def take(self, producer: str) -> object:
        token = object()
        self._owners[producer] = token
        return token

    def owns(self, producer: str, token: object) -> bool:
        return self._owners.get(producer) is token

    def release(self, producer: str, token: object) -> None:
        if self._owners.get(producer) is token:
            del self._owners[producer]


class MonitorRpcs(pb_grpc.MonitorServiceServicer):
    def __init__(
        self,
        ingestor: Ingestor,
        feedback: Feedback,
        reports: Reports,
        predictions: Predictions,
        exchange: Exchange,
        window: int,
        rates: RowRates | None = None,
    ) -> None:
        self.ingestor, self.feedback, self.reports = ingestor, feedback, reports
        self.predictions, self.exchange = predictions, exchange
        self.window = window
        self.rates = rates or RowRates(0, 0)
        self.streams = Streams()

    async def LogPredictions(
        self, request_iterator: AsyncIterator[pb.LogPredictionsRequest], context: Context
    ) -> AsyncIterator[pb.LogPredictionsResponse]:
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("kind") != "open":
            raise InvalidArgument("the first message of LogPredictions must be 'open'")
        producer = first.open.producer_id
        if not 1 <= len(producer) <= 128:
            raise InvalidArgument("open.producer_id: expected 1-128 characters")
        token = self.streams.take(producer)
        mark = await self.ingestor.applied_through(producer)
        yield pb.LogPredictionsResponse(
            ready=ingest_pb2.LogStreamReady(
                applied_through_sequence=mark,
                max_in_flight_batches=self.window,
                max_batch_rows=self.ingestor.max_batch_rows,
            )
        )
        # The reader stops reading when `window` batches are unacknowledged, so HTTP/2
        # flow control holds the producer back instead of this queue growing.
        queue: asyncio.Queue[tuple[ingest_pb2.PredictionBatch, asyncio.Future[BatchResult]] | None]
        queue = asyncio.Queue(maxsize=self.window)
        reader = asyncio.create_task(self._read(request_iterator, producer, queue))
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if not self.streams.owns(producer, token):
                    raise _Aborted(producer)
                batch, task = item
                try:
                    result = await task
                except DomainError as error:
                    if isinstance(error, Unavailable):
                        raise
                    mark = await self.ingestor.applied_through(producer)
                    yield pb.LogPredictionsResponse(ack=rejected(batch, error, mark, self.window))
                    continue
                yield pb.LogPredictionsResponse(ack=ack(batch, result, self.window))
            await reader
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            self.streams.release(producer, token)

    async def _read(
        self,
        requests: AsyncIterator[pb.LogPredictionsRequest],
        producer: str,
        queue: asyncio.Queue[tuple[ingest_pb2.PredictionBatch, asyncio.Future[BatchResult]] | None],
    ) -> None:
        try:
            async for message in requests:
                if message.WhichOneof("kind") != "batch":
                    raise InvalidArgument("LogPredictions: 'open' may only be the first message")
                if message.batch.producer_id != producer:
                    raise InvalidArgument(
                        f"batch.producer_id: expected '{producer}' (named in open), "
                        f"got '{message.batch.producer_id}'"
                    )
                # Over the producer's rate: not read further until its rows are due.
                pause = self.rates.reserve(producer, message.batch.row_count)
                if pause > 0:
                    await asyncio.sleep(pause)
                # Prepared here, one batch at a time, so batches are applied in stream order.
                try:
                    reference = await self.ingestor.prepare(message.batch)
                except DomainError as error:
                    failed: asyncio.Future[BatchResult]
                    failed = asyncio.get_running_loop().create_future()
                    failed.set_exception(error)
                    await queue.put((message.batch, failed))
                    continue
                await queue.put((message.batch, self.ingestor.enqueue(message.batch, reference)))
        except Exception:
            # The writer waits on the queue: wake it, and it raises this from `await reader`.
            await queue.put(None)
            raise
        await queue.put(None)

    async def LogPredictionBatch(
        self, request: pb.LogPredictionBatchRequest, context: Context
    ) -> pb.LogPredictionBatchResponse:
        self.rates.take_now(request.batch.producer_id, request.batch.row_count)
        result = await self.ingestor.submit(request.batch)
        return pb.LogPredictionBatchResponse(ack=ack(request.batch, result, self.window))

    async def LogFeedback(
        self, request: pb.LogFeedbackRequest, context: Context
    ) -> pb.LogFeedbackResponse:
        counts = await self.feedback.log(request)
        return pb.LogFeedbackResponse(
            matched_count=counts.matched,
            unmatched_count=counts.unmatched,
            late_count=counts.late,
            duplicate_count=counts.duplicate,
        )

    async def GetPrediction(
        self, request: pb.GetPredictionRequest, context: Context
    ) -> pb.GetPredictionResponse:
        return await self.predictions.get(request)

    async def ComputeDrift(
        self, request: pb.ComputeDriftRequest, context: Context
    ) -> pb.ComputeDriftResponse:
        return await self.reports.drift(request)

    async def ComputeDataQuality(
        self, request: pb.ComputeDataQualityRequest, context: Context
    ) -> pb.ComputeDataQualityResponse:
        return await self.reports.quality(request)

    async def ComputePerformance(
        self, request: pb.ComputePerformanceRequest, context: Context
    ) -> pb.ComputePerformanceResponse:
        return await self.reports.performance(request)

    async def ComputeFairness(
        self, request: pb.ComputeFairnessRequest, context: Context
    ) -> pb.ComputeFairnessResponse:
        return await self.reports.fairness(request)

    async def CompareVariants(
        self, request: pb.CompareVariantsRequest, context: Context
    ) -> pb.CompareVariantsResponse:
        return await self.reports.compare(request)

    async def ExportAggregates(
        self, request: pb.ExportAggregatesRequest, context: Context
    ) -> AsyncIterator[pb.ExportAggregatesResponse]:
        async for buckets in self.exchange.export(request):
            yield pb.ExportAggregatesResponse(buckets=buckets)

    async def MergeAggregates(
        self, request: pb.MergeAggregatesRequest, context: Context
    ) -> pb.MergeAggregatesResponse:
        return await self.exchange.merge(request)


class _Aborted(Conflict):
    reason = "STREAM_TAKEN_OVER"

    def __init__(self, producer: str) -> None:
        super().__init__(f"a newer LogPredictions stream of producer '{producer}' took over")


class MonitorServicer(AlertRpcs, MonitorRpcs):
    """Every RPC of MonitorService."""

    def __init__(
        self,
        ingestor: Ingestor,
        feedback: Feedback,
        reports: Reports,
        predictions: Predictions,
        exchange: Exchange,
        window: int,
        alerting: Alerting,
        rates: RowRates | None = None,
    ) -> None:
        super().__init__(ingestor, feedback, reports, predictions, exchange, window, rates)
        self.alerting = alerting
