"""Prediction ids: UUIDv7-style, time-ordered, and never repeated because someone re-seeded
Python's shared generator or because the process forked."""

from __future__ import annotations

import os
import random

from services.inference.predictions import new_prediction_id


def test_ids_are_uuid7_and_sort_by_time() -> None:
    first, second = new_prediction_id(), new_prediction_id()
    for made in (first, second):
        assert len(made) == 32 and int(made, 16) >= 0
        assert made[12] == "7"  # version
        assert int(made[16], 16) >> 2 == 0b10  # RFC 9562 variant
    assert first[:12] <= second[:12] and first != second


def test_reseeding_the_shared_generator_does_not_repeat_ids() -> None:
    random.seed(0)
    first = new_prediction_id()
    random.seed(0)
    assert new_prediction_id()[13:] != first[13:]


def test_a_forked_child_makes_ids_of_its_own() -> None:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, new_prediction_id().encode())
        os._exit(0)
    os.close(write)
    mine = new_prediction_id()
    os.waitpid(child, 0)
    theirs = os.read(read, 64).decode()
    os.close(read)
    assert len(theirs) == 32
    # the random bits (after the time, version and variant) would repeat without a re-seed
    assert mine[17:] != theirs[17:]
