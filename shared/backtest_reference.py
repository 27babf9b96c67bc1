"""The backtest's pandas oracle: a plain row-by-row loop with its own arithmetic and its own
pandas metrics (moved out of ``shared.backtest``: it changes when the oracle does, not the
accounting).

:func:`run_backtest_reference` is the benchmark baseline and the oracle that
``shared.backtest.run_backtest`` must equal (``tests/unit/test_backtest.py``). It reads the same
timing and sizing conventions (see ``shared.backtest``'s docstring) but shares none of the
vectorised path's code except :func:`~shared.backtest.round_trips`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from shared.backtest import FILL_COLUMNS, TRADE_COLUMNS, BacktestResult, round_trips
from shared.metrics import infer_periods_per_year
from shared.rebalancing import AccountConfig

__all__ = ["run_backtest_reference"]


def run_backtest_reference(
    bars: pd.DataFrame,
    targets: ArrayLike,
    acct: AccountConfig | None = None,
    *,
    name: str = "strategy",
    periods_per_year: float | None = None,
    warmup: pd.DataFrame | None = None,
) -> BacktestResult:
    """The plain pandas loop: one row at a time, its own arithmetic and pandas metrics.

    Used as the benchmark baseline and as the oracle that :func:`run_backtest` must equal.
    """
    acct = acct or AccountConfig()
    c = acct.costs
    lo = -1.0 if acct.allow_short else 0.0
    df = bars[["open", "close"]].copy()
    df["target"] = [
        0.0 if not math.isfinite(x) else min(1.0, max(lo, x))
        for x in np.asarray(targets, dtype=np.float64)
    ]
    cash = float(acct.initial_cash)
    qty = 0.0
    prev_target = 0.0
    rows = []
    fills = []
    adverse = (c.spread_bps / 2.0 + c.slippage_bps) / 10_000.0
    if acct.sizer == "shared":
        sized = _reference_shared_sizing(bars, df["target"].tolist(), warmup, acct)
    for i, (ts, row) in enumerate(df.iterrows()):
        o = row["open"]
        want: float | None = None  # None: no decision at this bar
        if acct.sizer == "shared":
            want = float(sized(i, cash, qty))
        elif row["target"] != prev_target:
            eq_open = cash + qty * o
            want = 0.0
            if eq_open > 0 and o > 0:
                want = row["target"] * acct.risk_fraction * eq_open / o
                if acct.integer_shares:
                    want = float(int(want))
            prev_target = row["target"]
        trade = 0.0 if want is None else want - qty
        if trade != 0:
            px = o * (1 + adverse) if trade > 0 else o * (1 - adverse)
            shares = abs(trade)
            fee = shares * c.commission_per_share + shares * px * c.commission_bps / 10_000.0
            if c.commission_max_pct > 0:
                fee = min(fee, shares * px * c.commission_max_pct)
            fee = max(fee, c.commission_min)
            cash = cash - trade * px - fee
            qty = float(want)  # type: ignore[arg-type]  # trade != 0 implies want is not None
            fills.append((ts, i, "buy" if trade > 0 else "sell", trade, o, px, fee, row["target"]))
        rows.append((cash, qty, cash + qty * row["close"]))
    series = pd.DataFrame(rows, columns=["cash", "qty", "equity"], index=df.index)
    fills_df = pd.DataFrame(fills, columns=FILL_COLUMNS)
    fills_df["bar"] = fills_df["bar"].astype(np.int64)
    for col in ("qty", "ref_price", "price", "commission", "target"):
        fills_df[col] = fills_df[col].astype(np.float64)
    n = len(df)
    trades = (
        round_trips(fills_df, float(df["close"].iloc[-1]), df.index[-1], n - 1)
        if n
        else pd.DataFrame(columns=TRADE_COLUMNS)
    )
    metrics = _pandas_metrics(series, fills_df, trades, acct, periods_per_year)
    return BacktestResult(
        name=name,
        index=pd.DatetimeIndex(df.index),
        open=df["open"].to_numpy(np.float64),
        close=df["close"].to_numpy(np.float64),
        targets=df["target"].to_numpy(np.float64),
        cash=series["cash"].to_numpy(np.float64),
        qty=series["qty"].to_numpy(np.float64),
        equity=series["equity"].to_numpy(np.float64),
        fills=fills_df,
        trades=trades,
        metrics=metrics,
        account=acct,
    )


def _reference_shared_sizing(
    bars: pd.DataFrame, targets: list[float], warmup: pd.DataFrame | None, acct: AccountConfig
) -> Callable[[int, float, float], int]:
    """The oracle's own reading of the execution sizing rule: its own ATR (pandas true range,
    seeded mean, Wilder recursion) and its own arithmetic (tolerances, not a decimal snap)."""
    cfg = acct.sizing
    hist = bars if warmup is None or not len(warmup) else pd.concat([warmup, bars])
    prev_close = hist["close"].shift(1)
    tr = pd.concat(
        [
            hist["high"] - hist["low"],
            (hist["high"] - prev_close).abs(),
            (hist["low"] - prev_close).abs(),
        ],
        axis=1,
    ).max(axis=1)
    tr.iloc[0] = hist["high"].iloc[0] - hist["low"].iloc[0]
    p = cfg.atr_period
    atr = [math.nan] * len(hist)
    for k, value in enumerate(tr.tolist()):
        if k == p - 1:
            atr[k] = sum(tr.iloc[:p].tolist()) / p
        elif k >= p:
            atr[k] = (atr[k - 1] * (p - 1) + value) / float(p)
    w = len(hist) - len(bars)
    closes = hist["close"].tolist()
    first_open = float(bars["open"].iloc[0]) if len(bars) else math.nan

    def sized(i: int, cash: float, qty: float) -> int:
        k = w + i - 1  # the decision bar in ``hist``
        px, a = (closes[k], atr[k]) if k >= 0 else (first_open, math.nan)
        held = round(qty)
        stop = cfg.stop_atr_multiple * a if a == a and a > 0 else cfg.fallback_stop_pct * px
        equity = cash + qty * px
        full = 0
        if equity > 0 and stop > 0:
            ratio = equity * cfg.risk_per_trade / stop
            full = min(cfg.max_position, math.floor(ratio + 5e-10))
        frac = targets[i]
        size = abs(frac) * full
        want = math.floor(size + 0.5 + 5e-10) * (1 if frac >= 0 else -1)
        if abs(want) * px > cfg.max_gross_exposure:
            room = int(cfg.max_gross_exposure // px)
            if held and (want > 0) == (held > 0):
                room = max(room, abs(held))
            want = max(-room, min(room, want))
        same_side = want != 0 and held != 0 and (want > 0) == (held > 0)
        if want != held and same_side and abs(want - held) < cfg.rebalance_threshold * full:
            return held
        return want

    return sized


def _pandas_metrics(
    series: pd.DataFrame,
    fills: pd.DataFrame,
    trades: pd.DataFrame,
    acct: AccountConfig,
    periods_per_year: float | None,
) -> dict[str, float]:
    """Metrics computed the pandas way (independent of ``shared.metrics`` arithmetic)."""
    ppy = periods_per_year or infer_periods_per_year(series.index)
    init = float(acct.initial_cash)
    eq = series["equity"]
    r = eq.pct_change()
    r.iloc[0] = eq.iloc[0] / init - 1.0
    final = float(eq.iloc[-1])
    years = len(eq) / ppy
    ann = math.exp(min(math.log(final / init) / years, 700.0)) - 1 if final > 0 else -1.0
    peak = eq.cummax().clip(lower=init)
    dd = 1 - eq / peak
    underwater = dd > 1e-12
    runs = underwater.groupby((~underwater).cumsum()).sum()
    mdd = float(dd.max())
    std = r.std()
    down = math.sqrt((r.clip(upper=0) ** 2).mean())
    pnl = trades["pnl"]
    gross_loss = -pnl[pnl < 0].sum()
    nan = math.nan
    return {
        "initial_equity": init,
        "final_equity": final,
        "pnl": final - init,
        "total_return": final / init - 1.0,
        "annualised_return": ann,
        "annualised_volatility": std * math.sqrt(ppy),
        "sharpe": r.mean() / std * math.sqrt(ppy) if std > 1e-15 else nan,
        "sortino": r.mean() / down * math.sqrt(ppy) if down > 1e-15 else nan,
        "calmar": ann / mdd if mdd > 1e-12 else nan,
        "max_drawdown": mdd,
        "max_drawdown_duration_bars": float(runs.max()) if len(runs) else 0.0,
        "win_rate": float((pnl > 0).mean()) if len(pnl) else nan,
        "profit_factor": float(pnl[pnl > 0].sum() / gross_loss) if gross_loss > 0 else nan,
        "n_trades": float(len(trades)),
        "n_fills": float(len(fills)),
        "fees_paid": float(fills["commission"].sum()),
        "exposure": float((series["qty"] != 0).mean()),
    }
