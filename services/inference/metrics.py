"""Prometheus view of the inference service, read on each scrape: rows and model calls
per version, queue depth, time spent queued and computing, and the prediction log."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.inference.predictions import PredictionLog
from services.inference.serving import Server

NS = 1e-9


class InferenceCollector(Collector):
    def __init__(self, server: Server, predictions: PredictionLog) -> None:
        self._server = server
        self._predictions = predictions

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
        logged = CounterMetricFamily("keel_prediction_log_records", "Prediction records queued.")
        logged.add_metric([], self._predictions.accepted)
        yield logged
        dropped = CounterMetricFamily(
            "keel_prediction_log_dropped", "Prediction records dropped because the queue was full."
        )
        dropped.add_metric([], self._predictions.dropped)
        yield dropped
        waiting = GaugeMetricFamily("keel_prediction_log_pending", "Records waiting for delivery.")
        waiting.add_metric([], len(self._predictions))
        yield waiting
