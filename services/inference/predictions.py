"""A prediction as the inference service logs it, and the ids that name its rows.

A request's prediction id is the request's ``id`` when the caller set one, else a
time-ordered id generated here; the response's ``id`` carries it either way. A request
of N > 1 rows logs rows ``{id}/0`` … ``{id}/{N-1}``; a one-row request logs ``{id}``.
Feedback labels are sent to the monitor under these ids. A shadow logs its answer
under ``{id}@{variant}``, so it is counted beside the live row, not as its duplicate.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.inference.records import Features, ModelSignature


@dataclass(frozen=True)
class PredictionRecord:
    """One answered request (or one shadow copy), waiting to be sealed into a batch."""

    prediction_id: str
    model: str
    version: int
    deployment: str  # '' when the request named a model
    variant: str
    signature: ModelSignature
    features: Features
    outputs: dict[str, npt.NDArray[np.generic]]
    trace_id: int = 0  # W3C trace id of the request, 0 when untraced
    span_id: int = 0  # span of the request in this service
    time_ns: int = field(default_factory=time.time_ns)

    @property
    def rows(self) -> int:
        return self.features.rows


# The random bits of ids come from a generator of this process's own, seeded from the
# OS and again in a forked child: one system call per answer cost more than the rest of
# the id, and the module's shared generator can be re-seeded by anyone (a test, a library).
_bits = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _bits.seed(os.urandom(32)))


def new_prediction_id() -> str:
    """A UUIDv7-style id (RFC 9562): 48-bit millisecond time then random bits, as 32 hex
    digits; ids sort by creation time."""
    millis = time.time_ns() // 1_000_000
    value = (millis << 80) | _bits.getrandbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return f"{value:032x}"


def row_ids(prediction_id: str, rows: int) -> list[str]:
    """The ids under which the rows of one request are logged."""
    if rows == 1:
        return [prediction_id]
    return [f"{prediction_id}/{i}" for i in range(rows)]


def shadow_id(prediction_id: str, variant: str) -> str:
    return f"{prediction_id}@{variant}"
