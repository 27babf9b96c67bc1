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
order only when the target changes); it is not what execution trades.

``targets`` arrays below are aligned with the bars: ``targets[i]`` is the position held during bar
``i`` (decided at the close of bar ``i-1``); the position before the first bar is flat.

Two implementations of the accounting:

* :func:`run_backtest` - vectorised numpy: Python work only at the bars where the target changes,
  everything else (cash/quantity forward fill, equity, metrics) in array operations;
* :func:`run_backtest_reference` - a plain row-by-row pandas loop with its own arithmetic and its
  own pandas metrics; the benchmark baseline and the equality test's oracle.

Strategies: :func:`buy_and_hold_targets`, :func:`ma_crossover_targets` (+ :func:`grid_search_ma`,
fitted on the training slice only), :func:`run_policy` (any callable ``decide(t, position)``),
and :class:`ModelPolicy` (an exported ONNX artifact through its manifest's pipeline).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from shared.costs import CostModel
from shared.metrics import compute_metrics, infer_periods_per_year
from shared.sizing import SizingConfig, atr_series, position_after

if TYPE_CHECKING:
    from shared.env_risk import RiskRules

__all__ = [
    "AccountConfig",
    "BacktestResult",
    "ModelPolicy",
    "buy_and_hold_targets",
    "clip_targets",
    "grid_search_ma",
    "ma_crossover_targets",
    "order_quantity",
    "rebalance",
    "round_trips",
    "run_backtest",
    "run_backtest_reference",
    "run_policy",
    "sma",
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


class AccountConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How targets become shares and cash; shared by the env, the backtester and evaluation.

    Attributes:
        initial_cash: equity before the first bar (account currency).
        sizer: "shared" (default) = ``shared.sizing``, the rule execution trades with,
            configured by ``sizing``; "risk_fraction" = the old rule, kept only so that old
            manifests can be re-scored as they were scored (see the module docstring).
        sizing: the paper-trading config's sizing keys (``SizingConfig.from_paper_config``).
        risk_fraction: "risk_fraction" sizer only: a target of +-1 means a position worth
            ``risk_fraction * equity``. Ignored by the shared sizer.
        integer_shares: "risk_fraction" sizer only: round quantities toward zero to whole
            shares; False for fractional quantities. The shared sizer trades whole shares.
        allow_short: whether negative targets are allowed (else clipped to 0).
        costs: the :class:`~shared.costs.CostModel` charged on every fill.
    """

    initial_cash: float = 100_000.0
    sizer: Literal["shared", "risk_fraction"] = "shared"
    sizing: SizingConfig = msgspec.field(default_factory=SizingConfig)
    risk_fraction: float = 1.0
    integer_shares: bool = True
    allow_short: bool = True
    costs: CostModel = msgspec.field(default_factory=CostModel)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_cash) and self.initial_cash > 0):
            raise ValueError(f"AccountConfig.initial_cash must be > 0, got {self.initial_cash!r}")
        if not (math.isfinite(self.risk_fraction) and 0 < self.risk_fraction <= 10):
            raise ValueError(
                f"AccountConfig.risk_fraction must be in (0, 10], got {self.risk_fraction!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | AccountConfig | None) -> AccountConfig:
        if data is None:
            return cls()
        if isinstance(data, AccountConfig):
            return data
        try:
            return msgspec.convert(dict(data), cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid AccountConfig: {exc}") from exc


# ------------------------------------------------------------------------------ accounting core


def clip_targets(targets: ArrayLike, allow_short: bool) -> NDArray[np.float64]:
    t = np.asarray(targets, dtype=np.float64)
    t = np.where(np.isfinite(t), t, 0.0)
    return np.clip(t, -1.0 if allow_short else 0.0, 1.0)


def clip_target(target: float, allow_short: bool) -> float:
    t = float(target)
    if not math.isfinite(t):
        return 0.0
    return min(1.0, max(-1.0 if allow_short else 0.0, t))


def order_quantity(target: float, equity: float, ref_price: float, acct: AccountConfig) -> float:
    """Shares to hold for ``target`` given the equity at the fill bar's open."""
    if equity <= 0.0 or ref_price <= 0.0:
        return 0.0
    raw = target * acct.risk_fraction * equity / ref_price
    return float(math.trunc(raw)) if acct.integer_shares else float(raw)


def rebalance(
    cash: float, qty: float, target: float, ref_price: float, acct: AccountConfig
) -> tuple[float, float, float, float, float]:
    """Move to ``target`` at the open ``ref_price``.

    Returns ``(cash, qty, traded_qty, fill_price, commission)``; ``traded_qty`` 0 means no order.
    """
    equity = cash + qty * ref_price
    new_qty = order_quantity(target, equity, ref_price, acct)
    dq = new_qty - qty
    if dq == 0.0:
        return cash, qty, 0.0, 0.0, 0.0
    costs = acct.costs
    price = costs.fill_price(1 if dq > 0 else -1, ref_price)
    fee = costs.commission(dq, price)
    return cash - dq * price - fee, new_qty, dq, price, fee


def decision_refs(
    bars: pd.DataFrame, warmup: pd.DataFrame | None, atr_period: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(close, ATR) each bar's position is sized at: those of the bar BEFORE it (the decision
    bar), the ATR run over ``warmup`` and ``bars``. Bar 0 without warm-up: its open and no ATR."""
    frames = [bars] if warmup is None or not len(warmup) else [warmup, bars]
    cols = {c: np.concatenate([f[c].to_numpy(np.float64) for f in frames]) for c in _HLC}
    atr = atr_series(cols["high"], cols["low"], cols["close"], atr_period)
    w = len(cols["close"]) - len(bars)
    ref_close = np.empty(len(bars))
    ref_atr = np.empty(len(bars))
    if len(bars):
        ref_close[1:] = cols["close"][w : w + len(bars) - 1]
        ref_atr[1:] = atr[w : w + len(bars) - 1]
        ref_close[0] = cols["close"][w - 1] if w else float(bars["open"].iloc[0])
        ref_atr[0] = atr[w - 1] if w else math.nan
    return ref_close, ref_atr


_HLC = ("high", "low", "close")


def resize(
    cash: float,
    qty: float,
    target: float,
    decision_close: float,
    decision_atr: float,
    ref_price: float,
    acct: AccountConfig,
) -> tuple[float, float, float, float, float]:
    """The shared sizer's decision at a close (equity marked at ``decision_close``), filled at
    the next open ``ref_price``; returns what :func:`rebalance` returns."""
    equity = cash + qty * decision_close
    atr = decision_atr if math.isfinite(decision_atr) else None
    new_qty = float(position_after(target, equity, decision_close, atr, round(qty), acct.sizing))
    dq = new_qty - qty
    if dq == 0.0:
        return cash, qty, 0.0, 0.0, 0.0
    costs = acct.costs
    price = costs.fill_price(1 if dq > 0 else -1, ref_price)
    fee = costs.commission(dq, price)
    return cash - dq * price - fee, new_qty, dq, price, fee


def rebalance_arrays(
    cash: NDArray[np.float64],
    qty: NDArray[np.float64],
    target: NDArray[np.float64],
    ref_price: NDArray[np.float64],
    acct: AccountConfig,
    active: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Vectorised :func:`rebalance` for N independent accounts (the vector env).

    Only rows where ``active`` is True may trade. Returns ``(cash, qty, traded_qty, commission)``.
    Bit-identical to the scalar version row by row.
    """
    equity = cash + qty * ref_price
    ok = (equity > 0.0) & (ref_price > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = target * acct.risk_fraction * equity / ref_price
    raw = np.where(ok, raw, 0.0)
    new_qty = np.trunc(raw) if acct.integer_shares else raw
    dq = new_qty - qty
    if active is not None:
        dq = np.where(active, dq, 0.0)
    price = acct.costs.fill_prices(np.sign(dq), ref_price)
    fee = acct.costs.commissions(dq, price)
    new_cash = cash - dq * price - fee
    traded = dq != 0.0
    return np.where(traded, new_cash, cash), np.where(traded, qty + dq, qty), dq, fee


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


# ------------------------------------------------------------------------------ strategies


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


class ModelPolicy:
    """A model as a ``decide(t, position)`` callable over a bar frame.

    ``model`` is a ``shared.manifest.LoadedModel`` or any object with ``decide(obs) -> target``
    and ``normaliser`` (a fitted ``shared.features.Normaliser``), plus either ``manifest`` (its
    ``feature_config`` is used) or ``feature_config`` - e.g. a trainer's torch policy wrapped
    before export. Features are computed once over all ``bars`` (they only look back) and
    normalised; each call is the observation of bar ``t`` with the current position -
    ``build_observation`` exactly as the env and the inference service build it - and one
    ``model.decide``. Bars still in the feature warm-up decide flat.
    """

    def __init__(self, model: Any, bars: pd.DataFrame, pipeline: Any | None = None) -> None:
        from shared.features import FeatureConfig, FeaturePipeline
        from shared.observation import build_observations

        self.model = model
        if pipeline is None:
            manifest = getattr(model, "manifest", None)
            config = (
                manifest.feature_config
                if manifest is not None
                else getattr(model, "feature_config", None) or FeatureConfig()
            )
            pipeline = FeaturePipeline(config)
        self.pipeline = pipeline
        feats = np.asarray(model.normaliser.transform(self.pipeline.batch(bars)), np.float64)
        self.features = feats
        self.valid: NDArray[np.bool_] = np.asarray(np.isfinite(feats).all(axis=1), dtype=bool)
        self.obs = np.zeros((len(bars), feats.shape[1] + 1), dtype=np.float32)
        rows = np.flatnonzero(self.valid)
        self.obs[rows] = build_observations(feats[rows], np.zeros(len(rows)))
        self.calls = 0
        self.seconds = 0.0

    def observation(self, t: int, position: float) -> NDArray[np.float32]:
        obs = self.obs[t].copy()
        obs[-1] = position
        return obs

    def __call__(self, t: int, position: float) -> float:
        if not self.valid[t]:
            return 0.0
        t0 = time.perf_counter()
        target = float(self.model.decide(self.observation(t, position)))
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return target
