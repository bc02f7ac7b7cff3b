"""A started process collects start-up's garbage once and freezes what is left, so later
collections no longer walk the objects that live as long as the process."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from services.common.heap import settle_heap


class Node:
    """A tracked object that can hold a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def unfrozen_after() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test run collects as before


@pytest.mark.usefixtures("unfrozen_after")
def test_settling_collects_startup_garbage_and_takes_the_rest_out_of_later_collections() -> None:
    cycle = Node()
    cycle.other = cycle
    garbage = weakref.ref(cycle)
    del cycle
    kept = [Node() for _ in range(100)]

    settle_heap()

    assert garbage() is None, "a cycle left by start-up is collected before the freeze"
    walked = {id(o) for o in gc.get_objects()}  # what later collections examine
    assert not any(id(node) in walked for node in kept)
    assert gc.get_freeze_count() >= len(kept)
    later = Node()
    assert id(later) in {id(o) for o in gc.get_objects()}, "new objects are collected as usual"
