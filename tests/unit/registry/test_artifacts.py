"""The artifact store on the memory filesystem, a local folder and a file:// URL."""

from __future__ import annotations

import hashlib
import pickle
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import xgboost

from services.common.errors import InvalidArgument, NotFound, ResourceExhausted
from services.common.safe_load import ArtifactFormat, UnsafeArtifact
from services.registry import artifacts
from services.registry.artifacts import (
    ArtifactCorrupted,
    ArtifactStore,
    OffsetOutOfRange,
)

LIMIT = 1 << 20


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4))
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, (x[:, 0] > 0).astype(int))
    return bytes(model.get_booster().save_raw("json"))


@pytest.fixture(params=["memory", "folder", "file-url"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://keel-test-{uuid.uuid4().hex}"
    if request.param == "folder":
        return str(tmp_path / "artifacts")
    return f"file://{tmp_path}/artifacts"


@pytest.fixture
def store(root: str) -> ArtifactStore:
    return ArtifactStore(root, max_bytes=LIMIT)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_files(root: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(root)
    if not fs.exists(path):
        return []
    return sorted(p.removeprefix(path.rstrip("/")) for p in fs.find(path))


class Chunks:
    """An upload stream that records how far it was read."""

    def __init__(self, data: bytes, size: int = 1000) -> None:
        self.pieces = [data[i : i + size] for i in range(0, len(data), size)]
        self.sent = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.sent += 1
            yield piece


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def test_upload_stores_content_addressed_and_defers_the_xgboost_load(
    store: ArtifactStore, root: str, model_bytes: bytes
) -> None:
    sha = digest(model_bytes)

    stored = await store.put(sha, len(model_bytes), aiter(Chunks(model_bytes)))

    assert (stored.sha256, stored.size_bytes, stored.created) == (sha, len(model_bytes), True)
    assert stored.format is ArtifactFormat.XGBOOST_JSON
    assert stored.inspection is None  # loaded at the first registration, not here
    assert stored_files(root) == [f"/sha256/{sha[:2]}/{sha[2:]}"]
    assert store.exists(sha) and store.size(sha) == len(model_bytes)
    assert await store.read_all(sha) == model_bytes


async def test_a_local_folder_holds_the_layout_on_disk(tmp_path: Path, model_bytes: bytes) -> None:
    store = ArtifactStore(str(tmp_path), max_bytes=LIMIT)
    sha = digest(model_bytes)
    await store.put(sha, len(model_bytes), aiter(Chunks(model_bytes)))
    assert (tmp_path / "sha256" / sha[:2] / sha[2:]).read_bytes() == model_bytes


async def test_many_pieces_are_written_in_order(
    store: ArtifactStore, model_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "_WRITE_PIECE", 700)
    sha = digest(model_bytes)
    await store.put(sha, len(model_bytes), aiter(Chunks(model_bytes, size=333)))
    await store.verify(sha)


async def test_the_same_bytes_twice_are_stored_once(
    store: ArtifactStore, root: str, model_bytes: bytes
) -> None:
    sha = digest(model_bytes)
    await store.put(sha, len(model_bytes), aiter(Chunks(model_bytes)))

    again = await store.put(sha, len(model_bytes), aiter(Chunks(model_bytes, size=4096)))

    assert again.created is False
    assert again.format is ArtifactFormat.XGBOOST_JSON
    assert stored_files(root) == [f"/sha256/{sha[:2]}/{sha[2:]}"]


async def test_digest_mismatch_leaves_nothing_behind(
    store: ArtifactStore, root: str, model_bytes: bytes
) -> None:
    claimed = digest(b"something else")

    with pytest.raises(InvalidArgument) as refused:
        await store.put(claimed, len(model_bytes), aiter(Chunks(model_bytes)))

    assert refused.value.message == (
        f"sha256: expected {claimed}, got {digest(model_bytes)} for the bytes sent"
    )
    assert stored_files(root) == []
    assert not store.exists(claimed)


async def test_fewer_bytes_than_declared_are_refused(
    store: ArtifactStore, root: str, model_bytes: bytes
) -> None:
    with pytest.raises(InvalidArgument, match=rf"size_bytes: expected {len(model_bytes) + 1} "):
        await store.put(digest(model_bytes), len(model_bytes) + 1, aiter(Chunks(model_bytes)))
    assert stored_files(root) == []


async def test_more_bytes_than_declared_stop_the_upload_at_once(
    store: ArtifactStore, root: str, model_bytes: bytes
) -> None:
    chunks = Chunks(model_bytes + bytes(50_000))

    with pytest.raises(ResourceExhausted, match="more than the declared"):
        await store.put(digest(model_bytes), len(model_bytes), aiter(chunks))

    assert chunks.sent == len(model_bytes) // 1000 + 1 < len(chunks.pieces)
    assert stored_files(root) == []


@pytest.mark.parametrize(
    ("sha", "size", "error", "message"),
    [
        ("xyz", 10, InvalidArgument, "sha256: expected 64 lowercase hex digits, got 'xyz'"),
        ("A" * 64, 10, InvalidArgument, "sha256: expected 64 lowercase hex digits, got 'AAAA"),
        ("a" * 64, 0, InvalidArgument, "size_bytes: expected a positive number of bytes, got 0"),
        ("a" * 64, LIMIT + 1, ResourceExhausted, f"size_bytes: {LIMIT + 1} bytes is over"),
    ],
)
async def test_a_bad_header_is_refused_before_reading(
    store: ArtifactStore, root: str, sha: str, size: int, error: type[Exception], message: str
) -> None:
    chunks = Chunks(b"x" * 10)
    with pytest.raises(error) as refused:
        await store.put(sha, size, aiter(chunks))
    assert str(refused.value).startswith(message)
    assert chunks.sent == 0
    assert stored_files(root) == []


async def test_an_unsafe_artifact_is_never_stored(
    store: ArtifactStore, root: str, tmp_path: Path
) -> None:
    payload = pickle.dumps({"not": "a model"})

    with pytest.raises(UnsafeArtifact, match="a pickle stream is refused"):
        await store.put(digest(payload), len(payload), aiter(Chunks(payload)))

    assert stored_files(root) == []


async def test_read_streams_from_an_offset(store: ArtifactStore, model_bytes: bytes) -> None:
    sha = digest(model_bytes)
    await store.put(sha, len(model_bytes), aiter(Chunks(model_bytes)))

    pieces = [chunk async for chunk in store.read(sha, offset=100, chunk_size=512)]

    assert b"".join(pieces) == model_bytes[100:]
    assert {len(p) for p in pieces[:-1]} == {512}
    assert await collect(store.read(sha, offset=len(model_bytes))) == b""


async def test_read_past_the_end_or_of_nothing_is_refused(
    store: ArtifactStore, model_bytes: bytes
) -> None:
    sha = digest(model_bytes)
    with pytest.raises(NotFound, match=f"artifact {sha} not found"):
        await collect(store.read(sha))
    await store.put(sha, len(model_bytes), aiter(Chunks(model_bytes)))

    with pytest.raises(OffsetOutOfRange, match=f"offset: expected 0 to {len(model_bytes)}"):
        await collect(store.read(sha, offset=len(model_bytes) + 1))
    with pytest.raises(InvalidArgument):
        await collect(store.read(sha, offset=-1))


async def test_delete_removes_the_artifact(
    store: ArtifactStore, root: str, model_bytes: bytes
) -> None:
    sha = digest(model_bytes)
    await store.put(sha, len(model_bytes), aiter(Chunks(model_bytes)))

    store.delete(sha)

    assert not store.exists(sha)
    assert stored_files(root) == []
    for call in (lambda: store.delete(sha), lambda: store.size(sha)):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound):
        await store.read_all(sha)


async def test_verify_detects_tampering(
    store: ArtifactStore, root: str, model_bytes: bytes
) -> None:
    sha = digest(model_bytes)
    await store.put(sha, len(model_bytes), aiter(Chunks(model_bytes)))
    await store.verify(sha)

    fs, path = fsspec.core.url_to_fs(root)
    fs.pipe_file(f"{path}/sha256/{sha[:2]}/{sha[2:]}", model_bytes.replace(b"4", b"5", 1))

    with pytest.raises(ArtifactCorrupted, match=f"artifact {sha}: the stored bytes hash to"):
        await store.verify(sha)
    with pytest.raises(NotFound):
        await store.verify(digest(b"absent"))


def test_names_are_checked_everywhere(store: ArtifactStore) -> None:
    calls: Iterable[Any] = (store.exists, store.size, store.delete, store.path)
    for call in calls:
        with pytest.raises(InvalidArgument, match="sha256: expected 64 lowercase hex"):
            call("../../etc/passwd")
