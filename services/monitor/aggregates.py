"""The aggregate state of one bucket: fixed-size numpy arrays laid out by the version's
reference (``Layout``), so memory does not depend on how many rows were counted.

Merging is elementwise: counts and sums add, ``:min`` / ``:max`` arrays take the
minimum / maximum, and the frequent unseen values of each categorical column add and
keep the ``TOP_UNSEEN`` largest (approximate, as a frequent-items sketch is). Every
count is exact, so two monitors' buckets add up to one monitor's.

Serialised as ``keel.monitor.aggregate/1``: a 4-byte little-endian header length, a
JSON header (arrays in order with dtype and shape, the unseen values), then the arrays'
bytes, all compressed with zlib. Never pickle.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import numpy.typing as npt

from services.monitor.reference import TOP_UNSEEN, Layout

FORMAT = "keel.monitor.aggregate/1"


class StateFormatError(ValueError):
    """Bytes that are not a state of the expected format and layout."""


@dataclass
class State:
    arrays: dict[str, npt.NDArray[np.generic]]
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)

    @staticmethod
    def empty(layout: Layout) -> State:
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        for name, (dtype, shape) in layout.shapes.items():
            if name.endswith(":min"):
                arrays[name] = np.full(shape, np.inf)
            elif name.endswith(":max"):
                arrays[name] = np.full(shape, -np.inf)
            else:
                arrays[name] = np.zeros(shape, dtype=dtype)
        return State(arrays)

    def i8(self, name: str) -> npt.NDArray[np.int64]:
        array = self.arrays[name]
        assert array.dtype == np.int64
        return cast(npt.NDArray[np.int64], array)

    def f8(self, name: str) -> npt.NDArray[np.float64]:
        array = self.arrays[name]
        assert array.dtype == np.float64
        return cast(npt.NDArray[np.float64], array)

    def merge(self, other: State) -> None:
        """Add ``other`` into this state (same layout)."""
        for name, array in self.arrays.items():
            theirs = other.arrays[name]
            if name.endswith(":min"):
                np.fmin(array, theirs, out=array)
            elif name.endswith(":max"):
                np.fmax(array, theirs, out=array)
            else:
                np.add(array, theirs, out=array)
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
        header = {
            "format": FORMAT,
            "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in self.arrays.items()],
            "unseen": self.unseen,
        }
        head = json.dumps(header, separators=(",", ":")).encode()
        body = b"".join(np.ascontiguousarray(a).tobytes() for a in self.arrays.values())
        return zlib.compress(struct.pack("<I", len(head)) + head + body, 1)

    @staticmethod
    def from_bytes(data: bytes, layout: Layout) -> State:
        """Decode, checking that the arrays are exactly the layout's."""
        try:
            raw = zlib.decompress(data)
            (size,) = struct.unpack_from("<I", raw)
            header = json.loads(raw[4 : 4 + size])
        except (zlib.error, struct.error, ValueError) as error:
            raise StateFormatError(f"not a {FORMAT} state: {error}") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise StateFormatError(f"state format is not {FORMAT}")
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        offset = 4 + size
        for name, dtype, shape in header["arrays"]:
            expected = layout.shapes.get(name)
            if expected is None or np.dtype(expected[0]) != np.dtype(dtype):
                raise StateFormatError(f"state array '{name}' is not in this version's layout")
            if tuple(shape) != expected[1]:
                raise StateFormatError(f"state array '{name}' has shape {shape}")
            count = int(np.prod(shape))
            width = np.dtype(dtype).itemsize
            chunk = raw[offset : offset + count * width]
            if len(chunk) != count * width:
                raise StateFormatError(f"state array '{name}' is truncated")
            arrays[name] = np.frombuffer(chunk, dtype=dtype).reshape(shape).copy()
            offset += count * width
        if set(arrays) != set(layout.shapes):
            raise StateFormatError("state arrays differ from this version's layout")
        unseen = {
            str(k): {str(v): int(c) for v, c in d.items()} for k, d in header["unseen"].items()
        }
        return State(arrays, unseen)


def merged(states: Iterable[State], layout: Layout) -> State:
    total = State.empty(layout)
    for state in states:
        total.merge(state)
    return total
