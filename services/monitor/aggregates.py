"""The aggregate state of one bucket: fixed-size numpy arrays laid out by the version's
reference (``Layout``), so memory does not depend on how many rows were counted.

Merging is elementwise: counts and sums add, ``:min`` / ``:max`` arrays take the
minimum / maximum, and the frequent unseen values of each categorical column add and
keep the ``TOP_UNSEEN`` largest (approximate, as a frequent-items sketch is). Every
count is exact, so two monitors' buckets add up to one monitor's.

Serialised as ``keel.monitor.aggregate/1``: a 4-byte little-endian header length, a
JSON header (a digest of the layout, the four buffers' lengths, the unseen values), then
the buffers as little-endian int64 / float64, all compressed with zlib. Never pickle.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.monitor.reference import TOP_UNSEEN, Layout

FORMAT = "keel.monitor.aggregate/1"
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class StateFormatError(ValueError):
    """Bytes that are not a state of the expected format and layout."""


GROUPS = ("ints", "sums", "mins", "maxs")


@dataclass(frozen=True)
class Slots:
    """Where each array of a layout lives: one flat buffer per merge rule (counts,
    sums, minima, maxima), so merging two states is four numpy calls."""

    where: dict[str, tuple[int, int, int, tuple[int, ...]]]  # name -> group, start, end, shape
    sizes: tuple[int, int, int, int]
    digest: str

    @staticmethod
    def of(layout: Layout) -> Slots:
        where: dict[str, tuple[int, int, int, tuple[int, ...]]] = {}
        sizes = [0, 0, 0, 0]
        for name, (dtype, shape) in layout.shapes.items():
            group = (
                2
                if name.endswith(":min")
                else 3
                if name.endswith(":max")
                else (0 if dtype == "i8" else 1)
            )
            size = math.prod(shape)
            where[name] = (group, sizes[group], sizes[group] + size, shape)
            sizes[group] += size
        text = json.dumps(sorted((k, list(v[1])) for k, v in layout.shapes.items()))
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return Slots(where, (sizes[0], sizes[1], sizes[2], sizes[3]), digest)


def slots(layout: Layout) -> Slots:
    """The layout's slots, computed once per layout (kept on the layout itself)."""
    found = layout.__dict__.get("_slots")
    if found is None:
        found = Slots.of(layout)
        layout.__dict__["_slots"] = found
    assert isinstance(found, Slots)
    return found


@dataclass
class State:
    """A bucket's counts. ``buffers`` are the four flat arrays (int64 counts, float64
    sums, float64 minima, float64 maxima); each named array is a view into one of them."""

    layout: Layout
    buffers: tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
    ]
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)
    _views: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)  # asked for
    _every: dict[str, npt.NDArray[np.generic]] | None = None  # all, in the layout's order

    @staticmethod
    def empty(layout: Layout) -> State:
        ints, sums, mins, maxs = slots(layout).sizes
        return State(
            layout,
            (
                np.zeros(ints, dtype=np.int64),
                np.zeros(sums),
                np.full(mins, np.inf),
                np.full(maxs, -np.inf),
            ),
        )

    @property
    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Every named array of the layout, as a view (writes go to the buffers)."""
        if self._every is None:
            self._every = {name: self._view(name) for name in slots(self.layout).where}
        return self._every

    def i8(self, name: str) -> IntArray:
        return self._view(name)  # type: ignore[return-value]

    def f8(self, name: str) -> FloatArray:
        return self._view(name)  # type: ignore[return-value]

    def _view(self, name: str) -> npt.NDArray[np.generic]:
        """One named array's view, made when first asked for: a batch's state is read by
        name a few times, and making all of a layout's views cost more than counting."""
        found = self._views.get(name)
        if found is None:
            group, begin, end, shape = slots(self.layout).where[name]
            found = self._views[name] = self.buffers[group][begin:end].reshape(shape)
        return found

    def merge(self, other: State) -> None:
        """Add ``other`` into this state (same layout)."""
        ints, sums, mins, maxs = self.buffers
        np.add(ints, other.buffers[0], out=ints)
        np.add(sums, other.buffers[1], out=sums)
        np.fmin(mins, other.buffers[2], out=mins)
        np.fmax(maxs, other.buffers[3], out=maxs)
        for column, values in other.unseen.items():
            self.add_unseen(column, values)

    def add_unseen(self, column: str, values: Mapping[str, int]) -> None:
        if not values:
            return
        mine = self.unseen.setdefault(column, {})
        for value, count in values.items():
            mine[value] = mine.get(value, 0) + int(count)
        if len(mine) > TOP_UNSEEN:
            kept = sorted(mine.items(), key=lambda item: (-item[1], item[0]))[:TOP_UNSEEN]
            self.unseen[column] = dict(kept)

    def to_bytes(self) -> bytes:
        layout = slots(self.layout)
        header = {
            "format": FORMAT,
            "layout": layout.digest,
            "sizes": layout.sizes,
            "unseen": self.unseen,
        }
        head = json.dumps(header, separators=(",", ":")).encode()
        body = b"".join(
            buffer.astype(buffer.dtype.newbyteorder("<"), copy=False).tobytes()
            for buffer in self.buffers
        )
        return zlib.compress(struct.pack("<I", len(head)) + head + body, 1)

    @staticmethod
    def from_bytes(data: bytes, layout: Layout) -> State:
        """Decode, checking that the state has exactly this layout."""
        try:
            raw = zlib.decompress(data)
            (size,) = struct.unpack_from("<I", raw)
            header = json.loads(raw[4 : 4 + size])
        except (zlib.error, struct.error, ValueError) as error:
            raise StateFormatError(f"not a {FORMAT} state: {error}") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise StateFormatError(f"state format is not {FORMAT}")
        expected = slots(layout)
        if (
            header.get("layout") != expected.digest
            or tuple(header.get("sizes", ())) != expected.sizes
        ):
            raise StateFormatError("the state's arrays differ from this version's layout")
        body = np.frombuffer(raw, dtype=np.uint8, offset=4 + size)
        if body.size != 8 * sum(expected.sizes):
            raise StateFormatError("the state is truncated")
        words = body.view("<f8").copy()
        ints_end = expected.sizes[0]
        bounds = np.cumsum([0, *expected.sizes])
        buffers = (
            words[:ints_end].view(np.int64),
            words[bounds[1] : bounds[2]],
            words[bounds[2] : bounds[3]],
            words[bounds[3] : bounds[4]],
        )
        unseen = {
            str(k): {str(v): int(c) for v, c in d.items()} for k, d in header["unseen"].items()
        }
        return State(layout, buffers, unseen)
