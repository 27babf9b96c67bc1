"""Performance metrics of an equity curve and its trades.

All functions are pure numpy over the series produced by ``shared.backtest`` (or the env). The
returns are simple per-bar returns of equity marked at each bar's close, the first one measured
against the initial cash. Annualisation uses ``periods_per_year``: 252 for daily stock bars, or
inferred from the timestamps (bars per calendar year actually observed), so 30-minute crypto bars
and hourly FX bars are annualised by their own frequency.

Conventions: risk-free rate 0; Sharpe uses the sample standard deviation (ddof=1); Sortino uses the
downside deviation ``sqrt(mean(min(r, 0)^2))``; drawdowns are positive fractions of the running
peak; durations are counted in bars (and calendar days when a time index is given). Undefined
ratios (no variance, no losing trade, ...) are reported as ``nan`` (``None`` in JSON), never as
an arbitrary large number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "compute_metrics",
    "drawdown_series",
    "infer_periods_per_year",
    "max_drawdown",
    "returns_from_equity",
    "sharpe_ratio",
    "sortino_ratio",
]

TRADING_DAYS = 252


def infer_periods_per_year(index: pd.Index | Sequence[Any] | None, default: float = 252.0) -> float:
    """Bars per year for annualisation.

    Daily (or coarser) bars of a stock -> 252. Intraday bars -> the number of bars actually observed
    per calendar year (so a 24/7 market and an exchange session are both right). Without a usable
    time index -> ``default``.
    """
    if index is None or len(index) < 3 or not isinstance(index, pd.DatetimeIndex):
        return float(default)
    ns = index.as_unit("ns").asi8
    spacing = float(np.median(np.diff(ns))) / 1e9
    if spacing >= 20 * 3600:  # daily bars (weekends/holidays make the mean spacing larger)
        days = spacing / 86400.0
        return float(365.25 / days) if days >= 1.5 else float(TRADING_DAYS)
    span_years = (ns[-1] - ns[0]) / 1e9 / (365.25 * 86400.0)
    if span_years <= 0:
        return float(default)
    return float((len(index) - 1) / span_years)


def returns_from_equity(equity: ArrayLike, initial: float | None = None) -> NDArray[np.float64]:
    """Simple per-bar returns; the first is relative to ``initial`` (defaults to equity[0])."""
    eq = np.asarray(equity, dtype=np.float64)
    if eq.size == 0:
        return eq
    prev = np.empty_like(eq)
    prev[0] = eq[0] if initial is None else float(initial)
    prev[1:] = eq[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(prev != 0.0, eq / prev - 1.0, 0.0)


def sharpe_ratio(returns: ArrayLike, periods_per_year: float) -> float:
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return math.nan
    sd = float(np.std(r, ddof=1))
    if not sd > 1e-15:
        return math.nan
    return float(np.mean(r) / sd * math.sqrt(periods_per_year))


def sortino_ratio(returns: ArrayLike, periods_per_year: float) -> float:
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return math.nan
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    if not downside > 1e-15:
        return math.nan
    return float(np.mean(r) / downside * math.sqrt(periods_per_year))


def drawdown_series(equity: ArrayLike, initial: float | None = None) -> NDArray[np.float64]:
    """Drawdown at each bar: positive fraction of the running peak (which includes ``initial``)."""
    eq = np.asarray(equity, dtype=np.float64)
    if eq.size == 0:
        return eq
    peak = np.maximum.accumulate(eq)
    if initial is not None:
        peak = np.maximum(peak, float(initial))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, 1.0 - eq / peak, 0.0)


def max_drawdown(equity: ArrayLike, initial: float | None = None) -> tuple[float, int, int, int]:
    """(max drawdown, longest underwater duration in bars, start bar, end bar of that spell).

    The duration is the longest run of consecutive bars below the running peak (it counts an
    unrecovered drawdown up to the last bar).
    """
    dd = drawdown_series(equity, initial)
    if dd.size == 0:
        return 0.0, 0, 0, 0
    mdd = float(dd.max())
    under = dd > 1e-12
    longest, start, end = 0, 0, 0
    if under.any():
        # run lengths of True values
        padded = np.concatenate(([False], under, [False]))
        edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
        starts, ends = edges[0::2], edges[1::2]
        lengths = ends - starts
        k = int(np.argmax(lengths))
        longest, start, end = int(lengths[k]), int(starts[k]), int(ends[k] - 1)
    return mdd, longest, start, end


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else math.nan


def compute_metrics(
    equity: ArrayLike,
    *,
    initial_cash: float,
    index: pd.Index | None = None,
    positions: ArrayLike | None = None,
    trade_pnls: ArrayLike | None = None,
    n_fills: int = 0,
    traded_notional: float = 0.0,
    fees: float = 0.0,
    slippage_cost: float = 0.0,
    periods_per_year: float | None = None,
) -> dict[str, float]:
    """Every metric of one strategy run, as a flat dict of floats.

    Args:
        equity: equity marked at each bar's close.
        initial_cash: equity before the first bar.
        index: the bars' timestamps (annualisation and calendar durations).
        positions: quantity (or target) held during each bar; exposure = share of bars != 0.
        trade_pnls: net PnL of each round-trip trade (after commissions).
        n_fills: orders filled. traded_notional: sum of |qty * fill price|.
        fees: commissions paid. slippage_cost: spread + slippage paid versus reference prices.
        periods_per_year: override annualisation (else inferred from ``index``).
    """
    eq = np.asarray(equity, dtype=np.float64)
    n = int(eq.size)
    ppy = float(periods_per_year) if periods_per_year else infer_periods_per_year(index)
    r = returns_from_equity(eq, initial_cash)
    final = float(eq[-1]) if n else float(initial_cash)
    total_return = final / initial_cash - 1.0
    years = n / ppy if ppy > 0 else math.nan
    if n and years > 0 and final > 0:
        growth = math.log(final / initial_cash) / years
        ann_return = math.exp(growth) - 1.0 if growth < 700 else math.inf
    elif n and final <= 0:
        ann_return = -1.0
    else:
        ann_return = math.nan
    ann_vol = float(np.std(r, ddof=1) * math.sqrt(ppy)) if n > 1 else math.nan
    mdd, dd_bars, dd_start, dd_end = max_drawdown(eq, initial_cash)
    dd_days = math.nan
    if isinstance(index, pd.DatetimeIndex) and n and dd_bars > 0:
        # from the last peak before the spell to its last underwater bar
        t0 = index[dd_start - 1] if dd_start > 0 else index[0]
        dd_days = (index[dd_end] - t0).total_seconds() / 86400.0
    calmar = ann_return / mdd if mdd > 1e-12 and math.isfinite(ann_return) else math.nan

    pnls = np.asarray(trade_pnls if trade_pnls is not None else [], dtype=np.float64)
    n_trades = int(pnls.size)
    wins = pnls[pnls > 0]
    losses = pnls[pnls < 0]
    win_rate = float(wins.size / n_trades) if n_trades else math.nan
    gross_loss = float(-losses.sum())
    profit_factor = float(wins.sum() / gross_loss) if gross_loss > 0 else math.nan
    avg_trade = float(pnls.mean()) if n_trades else math.nan

    mean_equity = float(np.mean(eq)) if n else float(initial_cash)
    turnover = traded_notional / mean_equity if mean_equity > 0 else math.nan
    exposure = math.nan
    if positions is not None:
        pos = np.asarray(positions, dtype=np.float64)
        exposure = float(np.mean(pos != 0.0)) if pos.size else math.nan

    return {
        "initial_equity": float(initial_cash),
        "final_equity": final,
        "pnl": final - float(initial_cash),
        "total_return": float(total_return),
        "annualised_return": _finite(ann_return),
        "annualised_volatility": _finite(ann_vol),
        "sharpe": sharpe_ratio(r, ppy),
        "sortino": sortino_ratio(r, ppy),
        "calmar": _finite(calmar),
        "max_drawdown": mdd,
        "max_drawdown_duration_bars": float(dd_bars),
        "max_drawdown_duration_days": _finite(dd_days),
        "win_rate": win_rate,
        "profit_factor": profit_factor,
        "avg_trade_pnl": avg_trade,
        "n_trades": float(n_trades),
        "n_fills": float(n_fills),
        "turnover": _finite(turnover),
        "turnover_annualised": _finite(turnover / years) if years and years > 0 else math.nan,
        "fees_paid": float(fees),
        "slippage_paid": float(slippage_cost),
        "exposure": exposure,
        "n_bars": float(n),
        "periods_per_year": ppy,
    }
