"""A content-addressed artifact store over fsspec: ``<root>/sha256/ab/cdef…``.

An upload streams to a temporary object under ``<root>/tmp/`` while it is hashed, is
checked against the declared size and digest and inspected safely (``safe_load``), and
only then moved into place: a refused upload leaves nothing behind. Blocking file I/O
runs in worker threads, in pieces of a few MiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Any

import fsspec

from services.common.errors import (
    DataLoss,
    FieldViolation,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)
from services.common.safe_load import (
    ArtifactFormat,
    ModelInspection,
    accepted_format,
    inspect_artifact,
)

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_WRITE_PIECE = 4 << 20  # bytes gathered before one write in a worker thread
_HASH_PIECE = 8 << 20  # bytes read per step when re-hashing a stored artifact


class ArtifactNotFound(NotFound):
    reason = "ARTIFACT_NOT_FOUND"


class OffsetOutOfRange(OutOfRange):
    """A download offset beyond the end of the artifact (the contract's OUT_OF_RANGE)."""

    reason = "OUT_OF_RANGE"


class ArtifactCorrupted(DataLoss):
    """The stored bytes no longer hash to their name (the contract's DATA_LOSS)."""

    reason = "DATA_LOSS"


class ArtifactStoreFull(ResourceExhausted):
    """The store's filesystem has no room left for an upload."""

    reason = "ARTIFACT_STORE_FULL"


class ArtifactStoreUnavailable(Unavailable):
    """The store cannot be written now (read-only, permissions, I/O error)."""

    reason = "ARTIFACT_STORE_UNAVAILABLE"


@dataclass(frozen=True)
class StoredArtifact:
    """An artifact the store holds, with what its safe inspection found."""

    sha256: str
    size_bytes: int
    created: bool
    format: ArtifactFormat
    # None for XGBoost files: parsing a large one costs seconds, so it is loaded (safely)
    # when a version first registers it, not while the upload is acknowledged.
    inspection: ModelInspection | None


def check_sha256(sha256: object, field: str = "sha256") -> str:
    """``sha256`` if it is 64 lowercase hex digits, else InvalidArgument naming ``field``."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        shown = repr(sha256)[:80]
        description = f"expected 64 lowercase hex digits, got {shown}"
        raise InvalidArgument(
            f"{field}: {description}", violations=[FieldViolation(field, description)]
        )
    return sha256


class ArtifactStore:
    """Artifacts on a local folder or any fsspec URL (``memory://…``, ``file:///…``)."""

    def __init__(self, root: str, max_bytes: int) -> None:
        fs, path = fsspec.core.url_to_fs(root)
        self._fs: Any = fs
        self._root = str(path).rstrip("/")
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> str:
        """Where an artifact lives: ``<root>/sha256/ab/cdef…``."""
        check_sha256(sha256)
        return f"{self._root}/sha256/{sha256[:2]}/{sha256[2:]}"

    async def put(
        self, expected_sha256: str, expected_size: int, chunks: AsyncIterator[bytes]
    ) -> StoredArtifact:
        """Store the streamed bytes if they match the header and their format is accepted.

        Pickles and anything unrecognised are refused here and never loaded; skops files
        are inspected here (untrusted types refused); XGBoost files are loaded when a
        version first registers them (``inspection`` None)."""
        check_sha256(expected_sha256)
        self._check_size(expected_size)
        tmp = f"{self._root}/tmp/{uuid.uuid4().hex}"
        done = False
        try:
            handle = await asyncio.to_thread(self._open_tmp, tmp)
        except OSError as error:
            raise _write_failed(error) from None
        try:
            sha256, size = await self._receive(handle, chunks, expected_size)
            await asyncio.to_thread(handle.close)
            _check_received(expected_sha256, expected_size, sha256, size)
            head = await asyncio.to_thread(self._read_head, tmp)
            fmt = accepted_format(head)
            inspection = None
            if fmt is None or fmt == ArtifactFormat.SKOPS:
                data = await asyncio.to_thread(self._read_bytes, tmp)
                inspection = await asyncio.to_thread(inspect_artifact, data)
                fmt = inspection.format
                del data
            created = await asyncio.to_thread(self._commit, tmp, self.path(sha256))
            done = True
        except OSError as error:
            raise _write_failed(error) from None
        finally:
            if not done:
                self._discard(handle, tmp)
        return StoredArtifact(sha256, size, created, fmt, inspection)

    async def read(
        self, sha256: str, offset: int = 0, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """The artifact's bytes from ``offset`` on, in chunks of ``chunk_size``."""
        total = self.size(sha256)
        if chunk_size <= 0:
            raise InvalidArgument(f"chunk_size: expected a positive size, got {chunk_size}")
        if offset < 0:
            raise InvalidArgument(
                f"offset: expected 0 or more, got {offset}",
                violations=[FieldViolation("offset", "expected 0 or more")],
            )
        if offset > total:
            raise OffsetOutOfRange(
                f"offset: expected 0 to {total} (the artifact's size), got {offset}",
                violations=[FieldViolation("offset", f"expected 0 to {total}")],
            )
        handle = await asyncio.to_thread(self._open_at, self.path(sha256), offset)
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def read_all(self, sha256: str) -> bytes:
        """The whole artifact in memory (for loading a model)."""
        path = self.path(sha256)
        try:
            return await asyncio.to_thread(self._read_bytes, path)
        except FileNotFoundError:
            raise _not_found(sha256) from None

    async def verify(self, sha256: str) -> None:
        """Re-hash a stored artifact; ArtifactCorrupted when it no longer matches its name."""
        path = self.path(sha256)
        try:
            actual = await asyncio.to_thread(self._hash_file, path)
        except FileNotFoundError:
            raise _not_found(sha256) from None
        if actual != sha256:
            raise ArtifactCorrupted(
                f"artifact {sha256}: the stored bytes hash to {actual}; the stored copy is "
                f"corrupt and will not be served"
            )

    def exists(self, sha256: str) -> bool:
        return bool(self._fs.exists(self.path(sha256)))

    def size(self, sha256: str) -> int:
        """The stored size in bytes; ArtifactNotFound when absent."""
        try:
            return int(self._fs.size(self.path(sha256)))
        except FileNotFoundError:
            raise _not_found(sha256) from None

    def delete(self, sha256: str) -> None:
        """Remove an artifact (garbage collection); ArtifactNotFound when absent."""
        try:
            self._fs.rm_file(self.path(sha256))
        except FileNotFoundError:
            raise _not_found(sha256) from None

    # --- helpers ---------------------------------------------------------------------

    def _check_size(self, size: object) -> None:
        if not isinstance(size, int) or size <= 0:
            description = f"expected a positive number of bytes, got {size!r}"
            raise InvalidArgument(
                f"size_bytes: {description}",
                violations=[FieldViolation("size_bytes", description)],
            )
        if size > self.max_bytes:
            raise ResourceExhausted(
                f"size_bytes: {size} bytes is over the artifact size limit of "
                f"{self.max_bytes} bytes",
                violations=[FieldViolation("size_bytes", f"at most {self.max_bytes} bytes")],
            )

    async def _receive(
        self, handle: IO[bytes], chunks: AsyncIterator[bytes], expected_size: int
    ) -> tuple[str, int]:
        hasher = hashlib.sha256()
        pending: list[bytes] = []
        pending_size = size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > expected_size:
                raise ResourceExhausted(
                    f"artifact: more than the declared {expected_size} bytes arrived",
                    violations=[FieldViolation("size_bytes", f"{expected_size} bytes declared")],
                )
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= _WRITE_PIECE:
                await asyncio.to_thread(_write, handle, hasher, pending)
                pending, pending_size = [], 0
        await asyncio.to_thread(_write, handle, hasher, pending)
        return hasher.hexdigest(), size

    def _open_tmp(self, tmp: str) -> IO[bytes]:
        self._fs.makedirs(f"{self._root}/tmp", exist_ok=True)
        handle: IO[bytes] = self._fs.open(tmp, "wb")
        return handle

    def _open_at(self, path: str, offset: int) -> IO[bytes]:
        handle: IO[bytes] = self._fs.open(path, "rb")
        handle.seek(offset)
        return handle

    def _read_head(self, path: str) -> bytes:
        with self._fs.open(path, "rb") as handle:
            return bytes(handle.read(64))

    def _read_bytes(self, path: str) -> bytes:
        with self._fs.open(path, "rb") as handle:
            data: bytes = handle.read()
        return data

    def _hash_file(self, path: str) -> str:
        hasher = hashlib.sha256()
        with self._fs.open(path, "rb") as handle:
            while piece := handle.read(_HASH_PIECE):
                hasher.update(piece)
        return hasher.hexdigest()

    def _commit(self, tmp: str, final: str) -> bool:
        """Move ``tmp`` to ``final``; False (and ``tmp`` removed) when already stored."""
        if self._fs.exists(final):
            self._fs.rm_file(tmp)
            return False
        self._fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        self._fs.mv(tmp, final)
        return True

    def _discard(self, handle: IO[bytes], tmp: str) -> None:
        """Drop a refused upload's temporary object (on the loop: failure paths only)."""
        with contextlib.suppress(Exception):
            handle.close()
        try:
            if self._fs.exists(tmp):
                self._fs.rm_file(tmp)
        except Exception:
            logger.exception("could not remove the temporary upload %s", tmp)


def _write(handle: IO[bytes], hasher: Any, pieces: list[bytes]) -> None:
    for piece in pieces:
        hasher.update(piece)
        handle.write(piece)


def _check_received(expected_sha256: str, expected_size: int, sha256: str, size: int) -> None:
    if size != expected_size:
        raise InvalidArgument(
            f"size_bytes: expected {expected_size} bytes, got {size}",
            violations=[FieldViolation("size_bytes", f"{size} bytes arrived")],
        )
    if sha256 != expected_sha256:
        raise InvalidArgument(
            f"sha256: expected {expected_sha256}, got {sha256} for the bytes sent",
            violations=[FieldViolation("sha256", "does not match the bytes sent")],
        )


def _write_failed(error: OSError) -> ArtifactStoreFull | ArtifactStoreUnavailable:
    """What the uploader is told when the store's filesystem fails under an upload (the
    operator gets the path and the error in the log; the caller gets neither)."""
    logger.warning("artifact store: an upload failed and was discarded: %s", error)
    cause = error.strerror or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ArtifactStoreFull(
            f"artifact store: no room left for the upload ({cause}); it was discarded"
        )
    return ArtifactStoreUnavailable(
        f"artifact store: the upload cannot be written now ({cause}); it was discarded, retry later"
    )


def _not_found(sha256: str) -> ArtifactNotFound:
    return ArtifactNotFound(f"artifact {sha256} not found")
