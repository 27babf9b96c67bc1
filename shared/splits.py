"""Time-series splits: walk-forward and purged/embargoed k-fold (López de Prado).

Every split is a pair of sorted integer index arrays into the bars (``train``, ``test``). Nothing is
shuffled: a test fold is always one contiguous block of bars.

* ``purge``: bars removed from the training set on each side of a test block, because their
  features or labels overlap the test period (e.g. the feature warm-up or a reward horizon).
* ``embargo``: bars removed from the training set right AFTER a test block (serial correlation
  leaks information backwards from test into the following training bars).

With walk-forward splits the training data always precede the test block, so only the gap before
the test block (``purge``) matters; ``embargo`` is accepted there for symmetry and adds to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = [
    "HoldoutPlan",
    "Split",
    "date_split",
    "holdout_splits",
    "purged_kfold_splits",
    "walk_forward_splits",
]


@dataclass(frozen=True)
class Split:
    """One train/test pair of bar positions (sorted, disjoint)."""

    train: NDArray[np.int64]
    test: NDArray[np.int64]
    fold: int = 0

    def bounds(self, index: pd.Index | Sequence[Any]) -> dict[str, Any]:
        """First/last timestamp of each side (for logs and manifests)."""
        return {
            "fold": self.fold,
            "train_start": index[int(self.train[0])] if self.train.size else None,
            "train_end": index[int(self.train[-1])] if self.train.size else None,
            "test_start": index[int(self.test[0])] if self.test.size else None,
            "test_end": index[int(self.test[-1])] if self.test.size else None,
        }


def _n(bars: int | Sequence[Any] | pd.Index | pd.DataFrame) -> int:
    return bars if isinstance(bars, int) else len(bars)


def walk_forward_splits(
    bars: int | Sequence[Any] | pd.Index | pd.DataFrame,
    *,
    n_splits: int,
    test_size: int,
    train_size: int | None = None,
    expanding: bool = False,
    purge: int = 0,
    embargo: int = 0,
) -> list[Split]:
    """Rolling (or expanding) walk-forward splits that end at the last bar.

    The ``n_splits`` test blocks of ``test_size`` bars are consecutive and end at the last bar.
    Before each, a gap of ``purge + embargo`` bars, and before that the training window:
    ``train_size`` bars (rolling) or everything from bar 0 (``expanding=True``).
    """
    n = _n(bars)
    if n_splits < 1 or test_size < 1:
        raise ValueError("n_splits and test_size must be >= 1")
    if purge < 0 or embargo < 0:
        raise ValueError("purge and embargo must be >= 0")
    gap = purge + embargo
    first_test = n - n_splits * test_size
    if train_size is None and not expanding:
        train_size = first_test - gap
    if first_test - gap < 1 or (train_size is not None and not expanding and train_size < 1):
        raise ValueError(
            f"not enough bars ({n}) for {n_splits} test blocks of {test_size} with gap {gap}"
        )
    out: list[Split] = []
    for k in range(n_splits):
        t0 = first_test + k * test_size
        train_end = t0 - gap  # exclusive
        if expanding:
            train_start = 0
        else:
            assert train_size is not None
            train_start = train_end - train_size
            if train_start < 0:
                raise ValueError(
                    f"fold {k}: train_size {train_size} needs {-train_start} bars before bar 0"
                )
        out.append(
            Split(
                train=np.arange(train_start, train_end, dtype=np.int64),
                test=np.arange(t0, t0 + test_size, dtype=np.int64),
                fold=k,
            )
        )
    return out


def purged_kfold_splits(
    bars: int | Sequence[Any] | pd.Index | pd.DataFrame,
    *,
    n_splits: int,
    purge: int = 0,
    embargo: int = 0,
) -> list[Split]:
    """K contiguous test folds; training = all other bars minus ``purge`` bars on each side of
    the test fold and ``embargo`` more bars after it."""
    n = _n(bars)
    if n_splits < 2:
        raise ValueError("n_splits must be >= 2")
    if n < n_splits:
        raise ValueError(f"{n} bars cannot make {n_splits} folds")
    if purge < 0 or embargo < 0:
        raise ValueError("purge and embargo must be >= 0")
    edges = np.linspace(0, n, n_splits + 1).round().astype(np.int64)
    all_idx = np.arange(n, dtype=np.int64)
    out: list[Split] = []
    for k in range(n_splits):
        a, b = int(edges[k]), int(edges[k + 1])
        lo = max(0, a - purge)
        hi = min(n, b + purge + embargo)
        keep = (all_idx < lo) | (all_idx >= hi)
        out.append(Split(train=all_idx[keep], test=all_idx[a:b], fold=k))
    return out


def date_split(
    index: pd.DatetimeIndex,
    *,
    train_start: Any = None,
    train_end: Any = None,
    test_start: Any = None,
    test_end: Any = None,
    purge: int = 0,
) -> Split:
    """One train/test split from dates (inclusive bounds, compared on the bars' timestamps).

    ``purge`` bars are dropped from the end of training if it would otherwise touch the test block.
    Raises if the two periods overlap.
    """
    ns = index.as_unit("ns").asi8

    def pos(value: Any, default: int, side: str) -> int:
        if value is None:
            return default
        ts = pd.Timestamp(value)
        if ts.tzinfo is None and index.tz is not None:
            ts = ts.tz_localize(index.tz)
        if side == "left":
            return int(np.searchsorted(ns, ts.value, side="left"))
        # an end date without a time means "through that day"
        if ts == ts.normalize() and isinstance(value, str) and len(value) <= 10:
            ts = ts + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
        return int(np.searchsorted(ns, ts.value, side="right"))

    tr0 = pos(train_start, 0, "left")
    tr1 = pos(train_end, len(index), "right")
    te0 = pos(test_start, tr1, "left")
    te1 = pos(test_end, len(index), "right")
    if te0 < tr1:
        raise ValueError("train and test periods overlap")
    tr1 = min(tr1, te0 - purge)
    return Split(
        train=np.arange(tr0, max(tr0, tr1), dtype=np.int64),
        test=np.arange(te0, te1, dtype=np.int64),
    )


@dataclass(frozen=True)
class HoldoutPlan:
    """train / walk-forward validation folds / final hold-out, as bar positions.

    ``folds[k].test`` are consecutive validation blocks; ``folds[k].train`` the bars a
    benchmark may be fitted on before that block (everything from bar 0 when ``expanding``, else
    the last ``train_size`` bars), ending ``embargo`` bars before the block. ``holdout.test`` runs
    from ``holdout_start`` to the last bar and is never inside any fold: every fold (train and test)
    ends at least ``embargo`` bars before ``holdout_start``. Model selection (Tune, the promotion
    gate) reads only ``bars[:validation_end]``.
    """

    folds: list[Split]
    holdout: Split
    embargo: int
    expanding: bool

    @property
    def validation_end(self) -> int:
        """One past the last bar any fold reads (train or test)."""
        return max(int(f.test[-1]) for f in self.folds) + 1

    @property
    def holdout_start(self) -> int:
        return int(self.holdout.test[0]) if self.holdout.test.size else self.validation_end

    def describe(self, index: pd.Index | Sequence[Any]) -> dict[str, Any]:
        return {
            "embargo": self.embargo,
            "mode": "expanding" if self.expanding else "rolling",
            "folds": [f.bounds(index) for f in self.folds],
            "holdout": self.holdout.bounds(index),
        }


def holdout_splits(
    bars: int | Sequence[Any] | pd.Index | pd.DataFrame,
    *,
    validation_start: int,
    holdout_start: int,
    n_folds: int,
    embargo: int = 0,
    expanding: bool = True,
    train_size: int | None = None,
) -> HoldoutPlan:
    """Walk-forward validation folds in ``[validation_start + embargo, holdout_start - embargo)``
    and the final hold-out ``[holdout_start, n)``.

    ``validation_start`` is the first bar after the model's training slice: the first fold starts
    ``embargo`` bars later, and the last fold ends ``embargo`` bars before the hold-out. The
    validation region is cut into ``n_folds`` contiguous blocks of (nearly) equal size. Rolling
    folds (``expanding=False``) fit on the ``train_size`` bars before each block's embargo
    (default: as many bars as precede the first block's embargo).
    """
    n = _n(bars)
    if n_folds < 1:
        raise ValueError("n_folds must be >= 1")
    if embargo < 0:
        raise ValueError("embargo must be >= 0")
    if not 0 < holdout_start <= n:
        raise ValueError(f"holdout_start {holdout_start} must be inside (0, {n}]")
    lo = validation_start + embargo
    hi = holdout_start - embargo
    if lo - embargo < 1:
        raise ValueError("validation_start must leave at least one bar before it")
    if hi - lo < n_folds:
        raise ValueError(
            f"validation region [{lo}, {hi}) has {max(hi - lo, 0)} bars: too few for "
            f"{n_folds} folds (embargo {embargo})"
        )
    if train_size is None:
        train_size = lo - embargo
    if not expanding and train_size < 1:
        raise ValueError("train_size must be >= 1")
    edges = np.linspace(lo, hi, n_folds + 1).round().astype(np.int64)
    folds: list[Split] = []
    for k in range(n_folds):
        a, b = int(edges[k]), int(edges[k + 1])
        t1 = a - embargo
        t0 = 0 if expanding else max(0, t1 - train_size)
        folds.append(
            Split(
                train=np.arange(t0, t1, dtype=np.int64),
                test=np.arange(a, b, dtype=np.int64),
                fold=k,
            )
        )
    holdout = Split(
        train=np.arange(0, holdout_start - embargo, dtype=np.int64),
        test=np.arange(holdout_start, n, dtype=np.int64),
        fold=n_folds,
    )
    return HoldoutPlan(folds=folds, holdout=holdout, embargo=embargo, expanding=expanding)
