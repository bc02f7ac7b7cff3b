"""Shadow copies: a deployment's shadow targets get a copy of each live request, and their
answers are logged under their own variant, never returned.

A copy never touches the caller's path: it is started after the answer is ready and
never awaited, and it runs on threads of its own (not the live model calls' threads), so
a shadow that blocks cannot slow live traffic. At most ``max_in_flight`` copies run or
wait at once; a copy beyond that is skipped and counted (``keel_inference_shadow_skipped``)
rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Protocol

from services.inference.predictions import PredictionRecord
from services.inference.records import Features, ModelSignature, Outputs
from services.inference.serving import LoadedVersion
from services.inference.validation import TensorLike, to_features

log = logging.getLogger(__name__)


class PredictionSink(Protocol):
    """Where answered requests go (the prediction log)."""

    def put(self, record: PredictionRecord) -> None: ...


class Shadows:
    def __init__(self, sink: PredictionSink, *, threads: int = 1, max_in_flight: int = 64) -> None:
        self._sink = sink
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="shadow")
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.skipped = 0
        self.failed = 0

    def copy(
        self,
        record: PredictionRecord,
        shadow: LoadedVersion,
        tensors: Mapping[str, TensorLike],
        validated_for: ModelSignature,
    ) -> None:
        """Run ``shadow`` on the request behind ``record`` (whose features were validated
        for ``validated_for``) and log the answer as ``record`` says; returns at once."""
        if len(self._tasks) >= self._max_in_flight:
            self.skipped += 1
            if self.skipped == 1 or self.skipped % 1000 == 0:
                log.warning(
                    "shadow %s: %d copies still running; skipped %d so far",
                    record.variant,
                    len(self._tasks),
                    self.skipped,
                )
            return
        task = asyncio.create_task(self._run(record, shadow, tensors, validated_for))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        record: PredictionRecord,
        shadow: LoadedVersion,
        tensors: Mapping[str, TensorLike],
        validated_for: ModelSignature,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            features, outputs = await loop.run_in_executor(
                self._executor, _predict, shadow, record.features, validated_for, tensors
            )
        except Exception as error:  # noqa: BLE001 - a shadow never affects the caller
            self.failed += 1
            log.warning("shadow %s failed: %s", record.variant, error)
            return
        self._sink.put(replace(record, features=features, outputs=outputs.tensors))

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> int:
        return len(self._tasks)


def _predict(
    shadow: LoadedVersion,
    features: Features,
    validated_for: ModelSignature,
    tensors: Mapping[str, TensorLike],
) -> tuple[Features, Outputs]:
    """The shadow's answer; the inputs are validated again when its signature differs
    from the live version's (a shadow may serve another model)."""
    if shadow.info.signature != validated_for:
        features = to_features(shadow.info.signature, tensors)
    return features, shadow.predict(features)
