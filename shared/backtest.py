"""Backtests with the same accounting as the gymnasium env.

Timing convention (shared with ``shared.env``): a decision taken at the CLOSE of bar *t* becomes the
target position held during bar *t+1*; the order is filled at the OPEN of bar *t+1* at
``CostModel.fill_price`` and pays ``CostModel.commission``. Equity is marked at every close.

A *target* is a fraction in [-1, 1] (clipped to [0, 1] without shorting). It becomes whole shares
through ``shared.sizing`` -- THE rule the execution service trades with (issue 14 item 7): sized at
the decision bar's CLOSE with the Wilder ATR known at that close and the equity marked at that
close (``risk_per_trade`` of equity to a ``stop_atr_multiple`` x ATR stop, capped at
``max_position`` and ``max_gross_exposure``). Like execution, the size is re-computed at every
decision (a signal per bar); a change smaller than ``rebalance_threshold`` x the full size that
keeps the side is not traded. The ATR runs over every bar handed in, ``warmup`` bars included
(bars before the slice that are read for nothing else), as execution's runs over its snapshot
and live bars. The first bar's decision (taken before the slice) is sized at the last warm-up
bar's close, or at the first bar's open with the fallback stop when there is no warm-up.

``AccountConfig.sizer = "risk_fraction"`` keeps the old rule for re-scoring old manifests
(``trunc(target * risk_fraction * equity / open)`` with the equity at the fill bar's open, an
order only when the target changes); it is not what execution trades. ``AccountConfig`` and the
one-bar accounting (``clip_target(s)``, ``order_quantity``, ``rebalance``, ``decision_refs``,
``resize``, the vector env's ``rebalance_arrays``) are in ``shared.rebalancing``; this module
runs them over a bar slice and keeps the results (fills, round trips, equity, metrics).

``targets`` arrays below are aligned with the bars: ``targets[i]`` is the position held during bar
``i`` (decided at the close of bar ``i-1``); the position before the first bar is flat.

Two implementations of the accounting:

* :func:`run_backtest` - vectorised numpy: Python work only at the bars where the target changes,
  everything else (cash/quantity forward fill, equity, metrics) in array operations;
* ``shared.backtest_reference.run_backtest_reference`` - a plain row-by-row pandas loop with its
  own arithmetic and its own pandas metrics; the benchmark baseline and the equality test's oracle.

:func:`run_policy` backtests any callable ``decide(t, position)``. The strategies live apart:
``shared.baselines`` (Buy-and-Hold, the MA crossover and its grid search, fitted on the training
slice only) and ``shared.model_policy.ModelPolicy`` (an exported ONNX artifact through its
manifest's pipeline).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from shared.metrics import compute_metrics
from shared.rebalancing import (
    AccountConfig,
    clip_target,
    clip_targets,
    decision_refs,
    rebalance,
    resize,
)

if TYPE_CHECKING:
    from shared.env_risk import RiskRules

__all__ = [
    "BacktestResult",
    "round_trips",
    "run_backtest",
    "run_policy",
]

# One row per order. ``time``/``bar``: the bar (labelled at its close) whose OPEN filled it;
# ``ref_price``: that open; ``price``: the fill after spread and slippage; ``qty`` signed.
FILL_COLUMNS = ["time", "bar", "side", "qty", "ref_price", "price", "commission", "target"]
TRADE_COLUMNS = [
    "entry_time",
    "exit_time",
    "side",
    "qty",
    "entry_price",
    "exit_price",
    "pnl",
    "return",
    "commission",
    "bars_held",
    "open",
]


# ------------------------------------------------------------------------------ results


@dataclass
class BacktestResult:
    """One strategy over one bar slice."""

    name: str
    index: pd.DatetimeIndex
    open: NDArray[np.float64]
    close: NDArray[np.float64]
    targets: NDArray[np.float64]
    cash: NDArray[np.float64]
    qty: NDArray[np.float64]
    equity: NDArray[np.float64]
    fills: pd.DataFrame
    trades: pd.DataFrame
    metrics: dict[str, float]
    account: AccountConfig
    params: dict[str, Any] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """Per-bar series: open, close, target, qty, cash, equity, drawdown, return."""
        eq = pd.Series(self.equity, index=self.index)
        peak = np.maximum(np.maximum.accumulate(self.equity), self.account.initial_cash)
        return pd.DataFrame(
            {
                "open": self.open,
                "close": self.close,
                "target": self.targets,
                "qty": self.qty,
                "cash": self.cash,
                "equity": self.equity,
                "drawdown": 1.0 - self.equity / peak,
                "return": eq.pct_change().fillna(eq.iloc[0] / self.account.initial_cash - 1.0)
                if len(eq)
                else eq,
            },
            index=self.index,
        )


def _bars_arrays(bars: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return (
        np.ascontiguousarray(bars["open"].to_numpy(np.float64)),
        np.ascontiguousarray(bars["close"].to_numpy(np.float64)),
    )


def round_trips(
    fills: pd.DataFrame,
    last_close: float,
    last_time: Any,
    last_bar: int,
) -> pd.DataFrame:
    """Round-trip trades from fills (average-cost accounting).

    A trade opens when the position leaves zero and closes when it returns to zero or flips
    sign (a flip closes one trade and opens the next; the flip order's commission is split
    pro rata). Scaling in or out inside a trade adjusts it. A trade still open after the last
    bar is marked at the last close (``open=True``, no exit costs). ``pnl`` is net of all
    commissions; spread and slippage are already inside the fill prices.
    """
    rows: list[tuple[Any, ...]] = []
    eps = 1e-9
    pos = 0.0  # signed quantity of the open trade
    trip: dict[str, Any] = {}

    def open_trip(t: Any, b: int, qty: float, price: float, fee: float) -> None:
        trip.clear()
        trip.update(
            entry_time=t,
            entry_bar=b,
            side=1.0 if qty > 0 else -1.0,
            avg=price,
            peak=abs(qty),
            fee=fee,
            realised=0.0,
            exit_value=0.0,
            exit_qty=0.0,
        )

    def close_trip(t: Any, b: int, is_open: bool) -> None:
        pnl = trip["realised"] - trip["fee"]
        notional = trip["avg"] * trip["peak"]
        rows.append(
            (
                trip["entry_time"],
                t,
                "long" if trip["side"] > 0 else "short",
                trip["peak"],
                trip["avg"],
                trip["exit_value"] / trip["exit_qty"] if trip["exit_qty"] > 0 else math.nan,
                pnl,
                pnl / notional if notional > 0 else math.nan,
                trip["fee"],
                int(b - trip["entry_bar"]),
                is_open,
            )
        )

    cols = [fills[c].tolist() for c in ("time", "bar", "qty", "price", "commission")]
    for t, b, dq, price, fee in zip(*cols, strict=True):
        if abs(pos) <= eps:
            pos = dq
            open_trip(t, b, dq, price, fee)
            continue
        if (dq > 0) == (pos > 0):  # scale in
            trip["avg"] = (trip["avg"] * abs(pos) + price * abs(dq)) / (abs(pos) + abs(dq))
            pos += dq
            trip["peak"] = max(trip["peak"], abs(pos))
            trip["fee"] += fee
            continue
        closing = min(abs(dq), abs(pos))
        frac = closing / abs(dq)
        trip["realised"] += (price - trip["avg"]) * closing * trip["side"]
        trip["fee"] += fee * frac
        trip["exit_value"] += price * closing
        trip["exit_qty"] += closing
        new_pos = pos + dq
        if abs(new_pos) <= eps or (new_pos > 0) != (pos > 0):
            close_trip(t, b, False)
            rest = abs(dq) - closing
            pos = new_pos if rest > eps else 0.0
            if rest > eps:
                open_trip(t, b, new_pos, price, fee * (1.0 - frac))
        else:
            pos = new_pos
    if abs(pos) > eps:
        trip["realised"] += (last_close - trip["avg"]) * abs(pos) * trip["side"]
        trip["exit_value"] += last_close * abs(pos)
        trip["exit_qty"] += abs(pos)
        close_trip(last_time, last_bar, True)
    return pd.DataFrame(rows, columns=TRADE_COLUMNS)


def _finish(
    name: str,
    index: pd.DatetimeIndex,
    open_: NDArray[np.float64],
    close: NDArray[np.float64],
    targets: NDArray[np.float64],
    cash: NDArray[np.float64],
    qty: NDArray[np.float64],
    equity: NDArray[np.float64],
    fills: pd.DataFrame,
    acct: AccountConfig,
    periods_per_year: float | None,
    params: dict[str, Any] | None,
) -> BacktestResult:
    n = len(close)
    trades = (
        round_trips(fills, float(close[-1]), index[-1], n - 1)
        if n
        else pd.DataFrame(columns=TRADE_COLUMNS)
    )
    f_qty = fills["qty"].to_numpy(np.float64)
    f_price = fills["price"].to_numpy(np.float64)
    f_ref = fills["ref_price"].to_numpy(np.float64)
    metrics = compute_metrics(
        equity,
        initial_cash=acct.initial_cash,
        index=index,
        positions=qty,
        trade_pnls=trades["pnl"].to_numpy(np.float64),
        n_fills=len(fills),
        traded_notional=float(np.sum(np.abs(f_qty * f_price))),
        fees=float(fills["commission"].sum()),
        slippage_cost=float(np.sum(np.abs(f_qty) * np.abs(f_price - f_ref))),
        periods_per_year=periods_per_year,
    )
    return BacktestResult(
        name=name,
        index=index,
        open=open_,
        close=close,
        targets=targets,
        cash=cash,
        qty=qty,
        equity=equity,
        fills=fills,
        trades=trades,
        metrics=metrics,
        account=acct,
        params=dict(params or {}),
    )


def run_backtest(
    bars: pd.DataFrame,
    targets: ArrayLike,
    acct: AccountConfig | None = None,
    *,
    name: str = "strategy",
    periods_per_year: float | None = None,
    params: dict[str, Any] | None = None,
    exit_costs: bool = False,
    warmup: pd.DataFrame | None = None,
    risk: RiskRules | None = None,
) -> BacktestResult:
    """Vectorised backtest of ``targets`` (``targets[i]`` held during bar ``i``) over ``bars``.

    ``warmup``: bars right before ``bars`` (same columns), read only by the shared sizer (its
    ATR, and the close the first decision is sized at); never traded, not in the result.

    ``exit_costs=True`` closes a position still open after the last bar at that bar's CLOSE,
    paying spread, slippage and commission like any fill (one extra fill row, ``target`` 0,
    ``ref_price`` = the last close): the last bar's cash, quantity and equity are then the flat
    account's, and every round trip is closed. Evaluation does this for every strategy, so
    Buy-and-Hold is not spared the exit that a trading strategy pays along the way.

    ``risk``: execution's ATR stop and daily-loss halt force decisions flat as in the env
    (``shared.backtest_risk``); ``params["risk_forced"]`` counts them.
    """
    acct = acct or AccountConfig()
    open_, close = _bars_arrays(bars)
    n = len(close)
    tgt = clip_targets(targets, acct.allow_short)
    if tgt.shape != (n,):
        raise ValueError(f"targets has shape {tgt.shape}, bars has {n} rows")
    if risk is not None:
        from shared.backtest_risk import apply_risk_rules

        tgt, forced = apply_risk_rules(bars, tgt, acct, risk, warmup)
        params = {**(params or {}), "risk_forced": forced}
    prev = np.empty_like(tgt)
    if n:
        prev[0] = 0.0
        prev[1:] = tgt[:-1]
    f_bar: list[int] = []
    f_qty: list[float] = []
    f_ref: list[float] = []
    f_price: list[float] = []
    f_fee: list[float] = []
    if acct.sizer == "shared":
        # a decision at every bar (execution re-sizes on every signal): work only where a
        # position is held or wanted, flat-and-flat bars cannot trade
        ref_close, ref_atr = decision_refs(bars, warmup, acct.sizing.atr_period)
        change = np.flatnonzero((tgt != 0.0) | (prev != 0.0))
    else:
        ref_close = ref_atr = np.empty(0)
        change = np.flatnonzero(tgt != prev)
    k = len(change)
    post_cash = np.empty(k)
    post_qty = np.empty(k)
    cash, qty = float(acct.initial_cash), 0.0
    opens = open_[change].tolist()
    tl = tgt[change].tolist()
    for i, (j, ref, target) in enumerate(zip(change.tolist(), opens, tl, strict=True)):
        if acct.sizer == "shared":
            cash, qty, dq, price, fee = resize(
                cash, qty, target, float(ref_close[j]), float(ref_atr[j]), ref, acct
            )
        else:
            cash, qty, dq, price, fee = rebalance(cash, qty, target, ref, acct)
        post_cash[i] = cash
        post_qty[i] = qty
        if dq != 0.0:
            f_bar.append(j)
            f_qty.append(dq)
            f_ref.append(ref)
            f_price.append(price)
            f_fee.append(fee)
    seg = np.searchsorted(change, np.arange(n), side="right") - 1
    has = seg >= 0
    segc = np.where(has, seg, 0)
    cash_s = np.where(has, post_cash[segc] if k else 0.0, float(acct.initial_cash))
    qty_s = np.where(has, post_qty[segc] if k else 0.0, 0.0)
    equity = cash_s + qty_s * close
    exited = False
    if exit_costs and n and qty_s[-1] != 0.0:
        exited = True
        last_q = float(qty_s[-1])
        ref = float(close[-1])
        price = acct.costs.fill_price(-1 if last_q > 0 else 1, ref)
        fee = acct.costs.commission(-last_q, price)
        flat_cash = float(cash_s[-1]) + last_q * price - fee
        cash_s[-1], qty_s[-1], equity[-1] = flat_cash, 0.0, flat_cash
        f_bar.append(n - 1)
        f_qty.append(-last_q)
        f_ref.append(ref)
        f_price.append(price)
        f_fee.append(fee)
    fb = np.asarray(f_bar, dtype=np.int64)
    fq = np.asarray(f_qty, dtype=np.float64)
    fills = pd.DataFrame(
        {
            "time": bars.index[fb],
            "bar": fb,
            "side": np.where(fq > 0, "buy", "sell"),
            "qty": fq,
            "ref_price": np.asarray(f_ref, dtype=np.float64),
            "price": np.asarray(f_price, dtype=np.float64),
            "commission": np.asarray(f_fee, dtype=np.float64),
            "target": tgt[fb],
        },
        columns=FILL_COLUMNS,
    )
    if exited:
        fills.loc[fills.index[-1], "target"] = 0.0  # the exit fill
    return _finish(
        name,
        pd.DatetimeIndex(bars.index),
        open_,
        close,
        tgt,
        cash_s,
        qty_s,
        equity,
        fills,
        acct,
        periods_per_year,
        params,
    )


Decide = Callable[[int, float], float]


def run_policy(
    bars: pd.DataFrame,
    decide: Decide,
    acct: AccountConfig | None = None,
    *,
    start: int = 0,
    end: int | None = None,
    name: str = "policy",
    periods_per_year: float | None = None,
    exit_costs: bool = False,
    risk: RiskRules | None = None,
) -> BacktestResult:
    """Backtest a sequential policy over ``bars.iloc[start:end]``.

    ``decide(t, position)`` is called at the close of bar ``t`` (index into ``bars``) with the
    target currently held, and returns the target for bar ``t+1``. Bars before ``start`` are
    history only: the decision at the close of ``start-1`` (when ``start > 0``) sets the
    position of the first traded bar, like a live system that was already running.
    ``risk``: execution's rules at every decision (``shared.backtest_risk.RiskBook``); the
    policy's next call sees the position after a forced flat, as in the env.
    """
    acct = acct or AccountConfig()
    stop = len(bars) if end is None else end
    m = stop - start
    warmup = bars.iloc[:start] if start > 0 else None
    book = None
    if risk is not None and m > 0:
        from shared.backtest_risk import RiskBook

        book = RiskBook(bars.iloc[start:stop], acct, risk, warmup)
        if start == 0:
            book.decide(0, 0.0)  # bar 0 is held flat: no decision before it
    targets = np.zeros(m, dtype=np.float64)
    pos = 0.0
    for t in range(max(start - 1, 0), stop - 1):
        pos = clip_target(decide(t, pos), acct.allow_short)
        if book is not None:
            pos = book.decide(t + 1 - start, pos)
        targets[t + 1 - start] = pos
    return run_backtest(
        bars.iloc[start:stop],
        targets,
        acct,
        name=name,
        periods_per_year=periods_per_year,
        exit_costs=exit_costs,
        warmup=warmup,
        params={"risk_forced": book.forced()} if book is not None else None,
    )
