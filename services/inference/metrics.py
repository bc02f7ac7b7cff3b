"""Prometheus view of the inference service, read on each scrape: rows and model calls
per version, queue depth, time spent queued and computing, and the prediction log."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.inference.prediction_log import PredictionLog
from services.inference.serving import Server
from services.inference.shadows import Shadows

NS = 1e-9


class InferenceCollector(Collector):
    def __init__(self, server: Server, shadows: Shadows, log: PredictionLog | None) -> None:
        self._server = server
        self._shadows = shadows
        self._log = log

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "version"]
        rows = CounterMetricFamily("keel_inference_rows", "Rows predicted.", labels=labels)
        calls = CounterMetricFamily(
            "keel_inference_model_calls",
            "Model calls (a call may batch several requests).",
            labels=labels,
        )
        queued = CounterMetricFamily(
            "keel_inference_queue_seconds", "Time requests waited for a model call.", labels=labels
        )
        compute = CounterMetricFamily(
            "keel_inference_compute_seconds", "Time in model calls, per request.", labels=labels
        )
        failed = CounterMetricFamily(
            "keel_inference_failed_requests", "Requests that failed or were refused.", labels=labels
        )
        depth = GaugeMetricFamily(
            "keel_inference_queue_depth", "Requests waiting for a model call now.", labels=labels
        )
        for (model, number), loaded in sorted(self._server.loaded.items()):
            key = [model, str(number)]
            stats = loaded.batcher.statistics()
            rows.add_metric(key, stats.inference_count)
            calls.add_metric(key, stats.execution_count)
            queued.add_metric(key, stats.queue.ns * NS)
            compute.add_metric(key, stats.compute_infer.ns * NS)
            failed.add_metric(key, stats.fail.count)
            depth.add_metric(key, stats.pending)
        yield from (rows, calls, queued, compute, failed, depth)
        skipped = CounterMetricFamily(
            "keel_inference_shadow_skipped",
            "Shadow copies skipped because too many were still running.",
        )
        skipped.add_metric([], self._shadows.skipped)
        failed_shadows = CounterMetricFamily(
            "keel_inference_shadow_failed", "Shadow copies whose model call failed."
        )
        failed_shadows.add_metric([], self._shadows.failed)
        yield from (skipped, failed_shadows)
        if self._log is not None:
            yield from _prediction_log(self._log)


def _prediction_log(log: PredictionLog) -> Iterator[Metric]:
    shipper, spool, delivery = log.shipper, log.spool, log.delivery
    figures = [
        ("keel_prediction_log_rows", "Predictions logged (rows).", shipper.logged_rows),
        (
            "keel_prediction_log_dropped_rows",
            "Predictions dropped from the log: the spool was full (oldest first) or sealing "
            "fell behind.",
            spool.dropped_rows + shipper.dropped_rows,
        ),
        (
            "keel_prediction_log_delivered_rows",
            "Predictions the monitor acknowledged as applied.",
            delivery.delivered_rows,
        ),
        (
            "keel_prediction_log_duplicate_rows",
            "Predictions the monitor recognised as already counted (resent after a break).",
            delivery.duplicate_rows,
        ),
        (
            "keel_prediction_log_rejected_rows",
            "Predictions in batches the monitor refused.",
            delivery.rejected_rows,
        ),
    ]
    for name, text, value in figures:
        counter = CounterMetricFamily(name, text)
        counter.add_metric([], value)
        yield counter
    gauges = [
        (
            "keel_prediction_log_spooled_rows",
            "Predictions in the spool, not yet acknowledged.",
            spool.pending_rows,
        ),
        ("keel_prediction_log_spooled_bytes", "Bytes of the spool.", spool.pending_bytes),
        (
            "keel_prediction_log_waiting_rows",
            "Predictions waiting to be sealed.",
            shipper.waiting_rows,
        ),
        (
            "keel_prediction_log_connected",
            "1 while a stream to the monitor is open.",
            int(delivery.connected),
        ),
    ]
    for name, text, value in gauges:
        gauge = GaugeMetricFamily(name, text)
        gauge.add_metric([], value)
        yield gauge
