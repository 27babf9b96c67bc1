"""settle_heap: start-up objects frozen, young collections rarer (restored after each test)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared.heap import GC_YOUNG_THRESHOLD, settle_heap

pytestmark = pytest.mark.unit


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_young_threshold_raised(restore_gc: None) -> None:
    gc.set_threshold(700, 11, 12)
    survivor = [object() for _ in range(10)]  # alive at "start-up"
    settle_heap()
    assert gc.get_freeze_count() > len(survivor)
    assert not any(o is survivor for o in gc.get_objects())  # frozen: no longer scanned
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 11, 12)  # the older two untouched


def test_cycles_are_still_collected_after_settling(restore_gc: None) -> None:
    settle_heap()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    del a, b
    assert gc.collect() >= 2
