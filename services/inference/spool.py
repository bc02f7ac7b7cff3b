"""A bounded on-disk spool of sealed prediction-log batches, for one producer.

The inference service appends serialized ``PredictionBatch`` bytes; a sender reads them back in
sequence order, streams them to the monitor and acknowledges what the monitor applied. Records
live in segment files named by their first sequence, so lexical order is sequence order::

    <u32 payload length> <u64 sequence> <u32 rows> <u32 crc32 of payload> <payload>

Only an index (sequence, rows, offset, length) is kept in memory. When the files exceed
``max_bytes`` the oldest whole segment is deleted and its batches are counted and logged as
dropped, never silently. On open, a torn or corrupt tail (a crash mid-write) is cut.

Sequences continue across restarts: the highest one assigned is the largest found in the
segments or in the ``mark`` file, written before any segment is deleted. Acknowledgements are
not persisted: after a restart the batches still on disk are sent again, and the monitor
discards the sequences it already applied.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby, islice
from pathlib import Path
from uuid import uuid4

log = logging.getLogger(__name__)
HEADER = struct.Struct("<IQII")  # payload length, sequence, rows, crc32 of payload
SUFFIX = ".seg"
MARK = "mark"


@dataclass(frozen=True)
class Spooled:
    """One batch read back from the spool."""

    sequence: int
    rows: int  # predictions in the batch
    payload: bytes


@dataclass(frozen=True)
class _Entry:
    sequence: int
    rows: int
    offset: int  # of the payload in its segment
    length: int


@dataclass(eq=False)
class _Segment:
    path: Path
    size: int = 0
    entries: deque[_Entry] = field(default_factory=deque)  # not yet acknowledged


class Spool:
    """Batches in sequence order on disk, at most ``max_bytes`` of them; thread-safe."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int = 4 * 1024 * 1024,
        sync: bool = False,
    ) -> None:
        """Opens or recovers the spool in ``directory``, cutting any torn or corrupt tail.

        Segments are at most ``max_bytes // 4``, so that dropping one frees a bounded share.
        With ``sync`` every append is fsynced before it returns.
        """
        if max_bytes <= 0:
            raise ValueError(f"max_bytes: expected a positive size, got {max_bytes}")
        directory.mkdir(parents=True, exist_ok=True)
        self._directory = directory
        self._max_bytes = max_bytes
        self._segment_bytes = max(1, min(segment_bytes, max_bytes // 4))
        self._sync = sync
        self._lock = threading.Lock()
        self._segments: deque[_Segment] = deque()
        self._writing: _Segment | None = None  # the last segment, while it is appended to
        self._fd = -1
        self._disk_bytes = 0
        self._pending_batches = 0
        self._pending_rows = 0
        self._pending_bytes = 0  # payloads only
        self._dropped_batches = 0
        self._dropped_rows = 0
        mark = directory / MARK
        self._last = int(mark.read_text()) if mark.exists() else 0
        for path in sorted(directory.glob("*" + SUFFIX)):
            self._recover(path)

    def _recover(self, path: Path) -> None:
        data = memoryview(path.read_bytes())
        segment = _Segment(path)
        previous = self._segments[-1].entries[-1].sequence if self._segments else 0
        while segment.size + HEADER.size <= len(data):
            length, sequence, rows, crc = HEADER.unpack_from(data, segment.size)
            start = segment.size + HEADER.size
            payload = data[start : start + length]
            if len(payload) < length or zlib.crc32(payload) != crc or sequence <= previous:
                break
            segment.entries.append(_Entry(sequence, rows, start, length))
            self._count_pending(segment.entries[-1], 1)
            segment.size, previous = start + length, sequence
        if segment.size < len(data):
            log.warning(
                "prediction-log spool: cut %d torn or corrupt bytes at the end of %s",
                len(data) - segment.size,
                path,
            )
            os.truncate(path, segment.size)
        if not segment.entries:
            path.unlink()
            return
        self._segments.append(segment)
        self._disk_bytes += segment.size
        self._last = max(self._last, previous)

    @property
    def last_sequence(self) -> int:
        """The highest sequence ever assigned by this spool, across restarts."""
        with self._lock:
            return self._last

    @property
    def pending_batches(self) -> int:
        """Batches not yet acknowledged."""
        with self._lock:
            return self._pending_batches

    @property
    def pending_rows(self) -> int:
        """Predictions in the batches not yet acknowledged."""
        with self._lock:
            return self._pending_rows

    @property
    def pending_bytes(self) -> int:
        """Payload bytes of the batches not yet acknowledged."""
        with self._lock:
            return self._pending_bytes

    @property
    def dropped_batches(self) -> int:
        """Batches dropped by this process because the spool was full."""
        with self._lock:
            return self._dropped_batches

    @property
    def dropped_rows(self) -> int:
        """Predictions in the batches dropped by this process."""
        with self._lock:
            return self._dropped_rows

    def append(self, rows: int, payload: bytes) -> int:
        """Stores one batch and returns its sequence; drops the oldest batches if full.

        A batch larger than the whole spool is dropped (counted and logged), not written.
        """
        crc = zlib.crc32(payload)
        with self._lock:
            self._last += 1
            sequence = self._last
            record = HEADER.pack(len(payload), sequence, rows, crc) + payload
            if len(record) > self._max_bytes:
                oversized = _Entry(sequence, rows, 0, len(payload))
                self._count_dropped("batch larger than the spool", [oversized])
                return sequence
            segment = self._segment_for(len(record), sequence)
            try:
                if os.write(self._fd, record) != len(record):
                    raise OSError(f"short write to {segment.path}")
                if self._sync:
                    os.fsync(self._fd)
            except OSError:
                os.ftruncate(self._fd, segment.size)  # no half record left behind
                raise
            segment.entries.append(_Entry(sequence, rows, segment.size + HEADER.size, len(payload)))
            self._count_pending(segment.entries[-1], 1)
            segment.size += len(record)
            self._disk_bytes += len(record)
            full: list[_Segment] = []
            while self._disk_bytes > self._max_bytes and len(self._segments) > 1:
                full.append(self._pop_oldest())
            self._discard(full)
            dropped = [entry for oldest in full for entry in oldest.entries]
            if dropped:
                self._count_dropped("spool full", dropped)
            return sequence

    def read(self, after: int, limit: int) -> list[Spooled]:
        """Up to ``limit`` unacknowledged batches with a sequence above ``after``, in order."""
        with self._lock:
            wanted = ((s, e) for s in self._segments for e in s.entries if e.sequence > after)
            batches: list[Spooled] = []
            for segment, pairs in groupby(islice(wanted, limit), key=lambda pair: pair[0]):
                with segment.path.open("rb") as file:
                    for _, entry in pairs:
                        file.seek(entry.offset)
                        payload = file.read(entry.length)
                        batches.append(Spooled(entry.sequence, entry.rows, payload))
            return batches

    def acknowledge(self, through: int) -> None:
        """Forgets the batches up to ``through`` and deletes the segments holding only those."""
        with self._lock:
            emptied: list[_Segment] = []
            while self._segments:
                entries = self._segments[0].entries
                while entries and entries[0].sequence <= through:
                    self._count_pending(entries.popleft(), -1)
                if entries:
                    break
                emptied.append(self._pop_oldest())
            self._discard(emptied)

    def close(self) -> None:
        """Closes the segment being written; the files stay for the next process."""
        with self._lock:
            self._close_writing()

    def _segment_for(self, size: int, sequence: int) -> _Segment:
        if self._writing is not None and self._writing.size + size > self._segment_bytes:
            self._close_writing()
        if self._writing is None:
            path = self._directory / f"{sequence:020d}{SUFFIX}"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            self._writing = _Segment(path)
            self._segments.append(self._writing)
            if self._sync:
                _fsync_directory(self._directory)
        return self._writing

    def _close_writing(self) -> None:
        if self._writing is not None:
            os.close(self._fd)
            self._writing, self._fd = None, -1

    def _pop_oldest(self) -> _Segment:
        segment = self._segments.popleft()
        if segment is self._writing:
            self._close_writing()
        self._disk_bytes -= segment.size
        for entry in segment.entries:
            self._count_pending(entry, -1)
        return segment

    def _discard(self, segments: list[_Segment]) -> None:
        """Deletes segments taken out of the index, once the last sequence is on disk."""
        if segments:
            temporary = _write_temporary(self._directory, str(self._last))
            os.replace(temporary, self._directory / MARK)
            _fsync_directory(self._directory)
            for segment in segments:
                segment.path.unlink(missing_ok=True)

    def _count_pending(self, entry: _Entry, sign: int) -> None:
        self._pending_batches += sign
        self._pending_rows += sign * entry.rows
        self._pending_bytes += sign * entry.length

    def _count_dropped(self, reason: str, entries: list[_Entry]) -> None:
        rows = sum(entry.rows for entry in entries)
        self._dropped_batches += len(entries)
        self._dropped_rows += rows
        log.warning(
            "prediction-log %s: dropped %d batches (%d predictions), sequences %d..%d",
            reason,
            len(entries),
            rows,
            entries[0].sequence,
            entries[-1].sequence,
        )


class Claim:
    """An exclusive lock on one spool directory, held until ``release`` or process exit."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        """Unlocks the directory so that another process may claim it; idempotent."""
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def claim_directory(root: Path) -> tuple[Path, Claim]:
    """The first of ``root/0``, ``root/1``, … that no other open lock holds, now locked."""
    index = 0
    while True:
        directory = root / str(index)
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            index += 1
            continue
        return directory, Claim(fd)


def producer_id(directory: Path) -> str:
    """The producer identity stored in ``directory/producer``, created on first use."""
    return write_once(
        directory / "producer", lambda: f"{socket.gethostname()[:115]}/{uuid4().hex[:12]}"
    )


def write_once(path: Path, make: Callable[[], str], *, mode: int = 0o644) -> str:
    """The text stored at ``path``; the first caller stores ``make()`` there (written
    whole and fsynced under a temporary name, with ``mode``, then linked), and a later or
    concurrent caller reads what the first stored, never replacing it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = _write_temporary(path.parent, make(), mode)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_text()


def _write_temporary(directory: Path, text: str, mode: int = 0o644) -> Path:
    temporary = directory / f".{uuid4().hex}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    return temporary


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
