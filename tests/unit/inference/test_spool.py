"""The prediction-log spool: order, acknowledgement, restarts, the size bound, torn tails."""

from __future__ import annotations

import logging
import re
import socket
import threading
import zlib
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from services.inference.spool import HEADER, Spool, Spooled, claim_directory, producer_id

pytestmark = pytest.mark.unit


def payload(sequence: int, size: int = 100) -> bytes:
    return (f"batch {sequence} ".encode() * size)[:size]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def drop_event(message: str) -> tuple[int, int, int, int]:
    """(batches, predictions, first sequence, last sequence) of a drop warning."""
    pattern = (
        r"prediction-log spool full: dropped (\d+) batches \((\d+) predictions\), "
        r"sequences (\d+)\.\.(\d+)"
    )
    match = re.fullmatch(pattern, message)
    assert match is not None, message
    batches, predictions, low, high = (int(group) for group in match.groups())
    return batches, predictions, low, high


def disk_usage(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.iterdir())


def test_read_returns_batches_after_a_sequence_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    assert [spool.append(rows, payload(rows)) for rows in range(1, 6)] == [1, 2, 3, 4, 5]

    assert spool.read(0, 10) == [Spooled(n, n, payload(n)) for n in range(1, 6)]
    assert spool.read(2, 2) == [Spooled(3, 3, payload(3)), Spooled(4, 4, payload(4))]
    assert spool.read(5, 10) == []
    assert (spool.pending_batches, spool.pending_rows, spool.pending_bytes) == (5, 15, 500)


def test_acknowledge_forgets_batches_and_deletes_their_segments(tmp_path: Path) -> None:
    record = HEADER.size + 100
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=2 * record)
    for sequence in range(1, 8):
        spool.append(10, payload(sequence))
    assert [path.name for path in segments(tmp_path)] == [
        "00000000000000000001.seg",
        "00000000000000000003.seg",
        "00000000000000000005.seg",
        "00000000000000000007.seg",
    ]

    spool.acknowledge(3)
    assert [batch.sequence for batch in spool.read(0, 10)] == [4, 5, 6, 7]
    assert [path.name for path in segments(tmp_path)] == [
        "00000000000000000003.seg",
        "00000000000000000005.seg",
        "00000000000000000007.seg",
    ]
    assert (spool.pending_batches, spool.pending_rows, spool.pending_bytes) == (4, 40, 400)

    spool.acknowledge(2)  # below the mark: nothing changes
    spool.acknowledge(3)
    assert [batch.sequence for batch in spool.read(0, 10)] == [4, 5, 6, 7]

    spool.acknowledge(7)  # including the segment being written
    assert segments(tmp_path) == []
    assert spool.read(0, 10) == []
    assert (spool.pending_batches, spool.pending_rows, spool.pending_bytes) == (0, 0, 0)

    assert spool.append(1, b"next") == 8
    assert spool.read(7, 10) == [Spooled(8, 1, b"next")]
    assert [path.name for path in segments(tmp_path)] == ["00000000000000000008.seg"]


def test_unacknowledged_batches_and_sequences_survive_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300, sync=True)
    for sequence in range(1, 6):
        spool.append(sequence, payload(sequence))
    spool.acknowledge(1)
    spool.close()

    reopened = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    assert reopened.last_sequence == 5
    assert reopened.read(1, 10) == [Spooled(n, n, payload(n)) for n in range(2, 6)]
    assert reopened.append(6, payload(6)) == 6
    assert [batch.sequence for batch in reopened.read(4, 10)] == [5, 6]


def test_sequences_continue_after_everything_was_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for sequence in range(1, 4):
        spool.append(1, payload(sequence))
    spool.acknowledge(3)
    spool.close()
    assert segments(tmp_path) == []

    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert reopened.last_sequence == 3
    assert reopened.pending_batches == 0
    assert reopened.append(1, b"after restart") == 4


def test_a_full_spool_drops_the_oldest_batches_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    max_bytes = 10_000
    spool = Spool(tmp_path, max_bytes=max_bytes)  # 4 MiB segments are clamped to max_bytes // 4
    rows = {sequence: sequence % 7 + 1 for sequence in range(1, 201)}
    with caplog.at_level(logging.WARNING, logger="services.inference.spool"):
        for sequence, count in rows.items():
            spool.append(count, payload(sequence, 300))
            assert disk_usage(tmp_path) <= max_bytes + max_bytes // 4

    kept = spool.read(0, 1000)
    first = kept[0].sequence
    assert [batch.sequence for batch in kept] == list(range(first, 201))
    assert all(batch.payload == payload(batch.sequence, 300) for batch in kept)
    assert spool.dropped_batches == first - 1 > 0
    assert spool.dropped_rows == sum(rows[sequence] for sequence in range(1, first))
    assert spool.pending_rows == sum(rows[sequence] for sequence in range(first, 201))

    events = [drop_event(record.getMessage()) for record in caplog.records]
    assert len(events) > 1  # one warning per drop, not one per batch
    assert sum(batches for batches, _, _, _ in events) == spool.dropped_batches
    assert sum(predictions for _, predictions, _, _ in events) == spool.dropped_rows
    assert all(batches == high - low + 1 for batches, _, low, high in events)
    ranges = [(low, high) for _, _, low, high in events]
    assert ranges[0][0] == 1 and ranges[-1][1] == first - 1
    assert all(high + 1 == low for (_, high), (low, _) in pairwise(ranges))


def test_a_batch_larger_than_the_spool_is_dropped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    with caplog.at_level(logging.WARNING, logger="services.inference.spool"):
        assert spool.append(7, bytes(2000)) == 1
    assert (spool.dropped_batches, spool.dropped_rows) == (1, 7)
    assert spool.read(0, 10) == []
    assert segments(tmp_path) == []
    assert "dropped 1 batches (7 predictions), sequences 1..1" in caplog.text

    assert spool.append(2, b"small") == 2
    assert spool.read(0, 10) == [Spooled(2, 2, b"small")]


def _cut_five_bytes(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5])


def _append_garbage(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\xff" * 64)


def _flip_a_payload_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _rewind_a_sequence(path: Path) -> None:
    data = bytearray(path.read_bytes())
    HEADER.pack_into(data, 2 * (HEADER.size + 100), 100, 1, 3, zlib.crc32(payload(3)))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "survivors", "cut"),
    [
        (_cut_five_bytes, [1, 2], HEADER.size + 100 - 5),
        (_append_garbage, [1, 2, 3], 64),
        (_flip_a_payload_byte, [1, 2], HEADER.size + 100),
        (_rewind_a_sequence, [1, 2], HEADER.size + 100),
    ],
)
def test_a_torn_tail_is_cut_on_reopen(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
    survivors: list[int],
    cut: int,
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for sequence in range(1, 4):
        spool.append(sequence, payload(sequence))
    spool.close()
    damage(segments(tmp_path)[-1])

    with caplog.at_level(logging.WARNING, logger="services.inference.spool"):
        reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert f"cut {cut} torn or corrupt bytes" in caplog.text
    assert reopened.read(0, 10) == [Spooled(n, n, payload(n)) for n in survivors]
    assert segments(tmp_path)[-1].stat().st_size == len(survivors) * (HEADER.size + 100)

    following = reopened.append(9, b"after repair")
    assert following == survivors[-1] + 1
    reopened.close()
    assert Spool(tmp_path, max_bytes=1 << 20).read(survivors[-1], 10) == [
        Spooled(following, 9, b"after repair")
    ]


def test_appends_from_many_threads_get_distinct_sequences(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 24, segment_bytes=4096)
    assigned: list[int] = []

    def produce(worker: int) -> None:
        for index in range(200):
            sequence = spool.append(worker, f"{worker}:{index}".encode())
            assigned.append(sequence)

    threads = [threading.Thread(target=produce, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(assigned) == list(range(1, 801))
    batches = spool.read(0, 1000)
    assert [batch.sequence for batch in batches] == list(range(1, 801))
    assert spool.pending_rows == 200 * (0 + 1 + 2 + 3)
    per_worker = {worker: [b.payload for b in batches if b.rows == worker] for worker in range(4)}
    assert all(
        sent == [f"{worker}:{index}".encode() for index in range(200)]
        for worker, sent in per_worker.items()
    )


def test_claims_lock_distinct_directories_and_a_released_one_is_reused(tmp_path: Path) -> None:
    first, first_claim = claim_directory(tmp_path)
    second, second_claim = claim_directory(tmp_path)  # another open of the same lock file
    assert (first, second) == (tmp_path / "0", tmp_path / "1")
    assert (first / "lock").exists()

    first_claim.release()
    again, again_claim = claim_directory(tmp_path)
    assert again == tmp_path / "0"

    third, third_claim = claim_directory(tmp_path)
    assert third == tmp_path / "2"
    for claim in (second_claim, again_claim, third_claim):
        claim.release()
    again_claim.release()  # idempotent


def test_producer_id_is_created_once_and_kept(tmp_path: Path) -> None:
    identity = producer_id(tmp_path)
    assert re.fullmatch(rf"{re.escape(socket.gethostname()[:115])}/[0-9a-f]{{12}}", identity)
    assert len(identity) <= 128
    assert producer_id(tmp_path) == identity
    assert (tmp_path / "producer").read_text() == identity
    assert [path.name for path in tmp_path.iterdir()] == ["producer"]  # no temporary left

    other = tmp_path / "other"
    other.mkdir()
    assert producer_id(other) != identity
