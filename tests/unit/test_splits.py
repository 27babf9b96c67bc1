"""Walk-forward and purged/embargoed splits never leak test bars into training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.splits import date_split, purged_kfold_splits, walk_forward_splits

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("expanding", [False, True])
def test_walk_forward(expanding: bool) -> None:
    splits = walk_forward_splits(
        1000, n_splits=4, test_size=100, train_size=300, expanding=expanding, purge=5, embargo=2
    )
    assert len(splits) == 4
    assert splits[-1].test[-1] == 999
    for k, s in enumerate(splits):
        assert s.fold == k
        assert len(s.test) == 100
        assert s.train[-1] + 1 + 7 == s.test[0]  # gap = purge + embargo
        assert np.intersect1d(s.train, s.test).size == 0
        assert s.train[0] == (0 if expanding else s.test[0] - 7 - 300)
    tests = np.concatenate([s.test for s in splits])
    assert np.array_equal(tests, np.arange(600, 1000))


def test_walk_forward_refuses_too_little_data() -> None:
    with pytest.raises(ValueError):
        walk_forward_splits(100, n_splits=5, test_size=20)
    with pytest.raises(ValueError):
        walk_forward_splits(100, n_splits=2, test_size=20, train_size=80)


def test_purged_kfold() -> None:
    splits = purged_kfold_splits(100, n_splits=5, purge=3, embargo=4)
    assert np.array_equal(np.concatenate([s.test for s in splits]), np.arange(100))
    for s in splits:
        a, b = s.test[0], s.test[-1] + 1
        assert np.intersect1d(s.train, s.test).size == 0
        before = s.train[s.train < a]
        after = s.train[s.train >= b]
        if before.size:
            assert before[-1] <= a - 1 - 3
        if after.size:
            assert after[0] >= b + 3 + 4


def test_date_split() -> None:
    index = pd.bdate_range("2020-01-01", "2020-12-31", tz="UTC")
    s = date_split(index, train_end="2020-06-30", test_start="2020-07-01", purge=2)
    assert index[s.train[-1]] < index[s.test[0]]
    assert s.test[0] - s.train[-1] - 1 >= 2
    assert str(index[s.test[0]].date()) == "2020-07-01"
    with pytest.raises(ValueError, match="overlap"):
        date_split(index, train_end="2020-07-10", test_start="2020-07-01")
    b = s.bounds(index)
    assert b["train_start"] == index[0]
