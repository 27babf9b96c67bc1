"""Baseline strategies scored against a model: Buy-and-Hold and the SMA crossover, whose windows
:func:`grid_search_ma` fits on the training slice only. Each returns a target array for
``shared.backtest.run_backtest`` (``targets[i]`` held during bar ``i``, decided at the close of
bar ``i-1``: no look-ahead).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from shared.backtest import run_backtest
from shared.rebalancing import AccountConfig

__all__ = [
    "DEFAULT_FAST",
    "DEFAULT_SLOW",
    "buy_and_hold_targets",
    "grid_search_ma",
    "ma_crossover_targets",
    "sma",
]


def buy_and_hold_targets(n: int) -> NDArray[np.float64]:
    """Long from the first bar's open (decided before the slice) to the end."""
    return np.ones(n, dtype=np.float64)


def sma(values: ArrayLike, window: int) -> NDArray[np.float64]:
    """Simple moving average over the last ``window`` values; NaN before it is full."""
    x = np.asarray(values, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if window < 1:
        raise ValueError("window must be >= 1")
    if len(x) >= window:
        out[window - 1 :] = np.lib.stride_tricks.sliding_window_view(x, window).mean(axis=1)
    return out


def ma_crossover_targets(
    close: ArrayLike, fast: int, slow: int, *, long_short: bool = False
) -> NDArray[np.float64]:
    """Targets held during each bar from the SMA crossover seen at the PREVIOUS close.

    Signal at close t: +1 if SMA(fast) > SMA(slow), else 0 (or -1 with ``long_short``); flat
    until both averages exist. ``targets[t] = signal[t-1]`` (no look-ahead).
    """
    if not 1 <= fast < slow:
        raise ValueError(f"need 1 <= fast < slow, got fast={fast} slow={slow}")
    c = np.asarray(close, dtype=np.float64)
    f, s = sma(c, fast), sma(c, slow)
    valid = np.isfinite(s)
    signal = np.where(f > s, 1.0, -1.0 if long_short else 0.0)
    signal = np.where(valid, signal, 0.0)
    targets = np.zeros_like(c)
    targets[1:] = signal[:-1]
    return targets


DEFAULT_FAST = (5, 10, 20, 30, 50)
DEFAULT_SLOW = (20, 50, 100, 150, 200)


def grid_search_ma(
    bars: pd.DataFrame,
    acct: AccountConfig | None = None,
    *,
    fast: Sequence[int] = DEFAULT_FAST,
    slow: Sequence[int] = DEFAULT_SLOW,
    objective: str = "sharpe",
    long_short: bool = False,
) -> tuple[int, int, pd.DataFrame]:
    """Choose (fast, slow) on ``bars`` (the TRAINING slice only) by ``objective``.

    Each candidate is backtested with the full accounting and costs. Ties (and NaN objectives)
    resolve to the earlier candidate in (fast, slow) order, so the choice is deterministic.
    Returns ``(fast, slow, table)`` with one row per candidate.
    """
    acct = acct or AccountConfig()
    close = bars["close"].to_numpy(np.float64)
    rows = []
    best: tuple[float, int, int] | None = None
    for f in fast:
        for s in slow:
            if not f < s or s >= len(close):
                continue
            res = run_backtest(bars, ma_crossover_targets(close, f, s, long_short=long_short), acct)
            score = res.metrics[objective]
            rows.append({"fast": f, "slow": s, **{k: res.metrics[k] for k in _GRID_COLS}})
            if math.isfinite(score) and (best is None or score > best[0]):
                best = (score, f, s)
    if best is None:
        raise ValueError(
            f"no MA window pair fits {len(close)} training bars with a finite {objective}"
        )
    return best[1], best[2], pd.DataFrame(rows)


_GRID_COLS = ("sharpe", "total_return", "max_drawdown", "n_trades")
