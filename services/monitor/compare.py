"""Paper trading versus the backtest of the same bars: ``make compare PERIOD=<start>..<end>``.

Inputs, all read-only: the monitor's ledger (``signals``: every decision with its model version
and decision bar; ``fills``: every booked execution), the bar store (``shared.barstore``: every
bar marketdata published) and the model artifacts (``models/``, ``paper_trading/models/``,
``best_models/``; a version is the artifact folder's name, as in ``manifest.version``).

What is replayed, per symbol: all stored bars go through ``shared.model_policy.ModelPolicy`` with,
at each bar, the model version that paper trading used at that bar (the version of that bar's
signal; between signals the last one; before the first, the first). The policy is fed its own
previous target as the position, exactly as inference does, from the first stored bar on (inference
warms up on history the same way). That gives the backtest's decision at every bar.

What is compared:

* **decisions**: per decision bar, paper's target versus the backtest's; a bar the backtest
  decides on (features warm) with no paper signal is *missing*. A paper decision on a bar whose
  features the stored bars cannot warm up yet (inference warmed up on history from before the
  first stored bar) is *unverifiable*: the backtest follows it (so the position it feeds the
  policy stays the paper's) and its session cannot count as within bound.
* **fills**: per paper order (its fills grouped by order reference; the reference names the
  decision bar), the volume-weighted paper price versus the backtest's fill of that decision:
  ``CostModel.fill_price(side, open of the next bar)``. The deviation is signed so that positive is
  worse for the account. A fill is *within the slippage model* when it lies within the modelled
  half spread + slippage of that open. Orders without a signal (flatten, bracket exits) are
  *unmatched*; backtest fills without a paper order are *missed*.
* **slippage** (versus the decision bar's close), **fees**, **PnL** and **Sharpe** of three
  curves: *paper* (ledger fills marked at the stored closes), *backtest-priced* (the same paper
  quantities at the backtest's fill prices and commissions) and *backtest* (the backtester's own
  run, ``shared.backtest.run_backtest``, sized by ``shared.sizing`` with the paper config's keys
  like execution; one account per symbol, so quantities can differ from a multi-symbol paper
  account whose equity is shared: ``qty_deviation`` per order).

Sessions are exchange dates (the bar's close in America/New_York). A session's ``deviation`` is
``|paper PnL - backtest-priced PnL| / equity at the session's start``: what execution (prices,
fees, partial or missing fills) cost or gained against the backtest on the very same trades. A
session is *within bound* when no decision differs, none is missing and ``deviation <= bound``.
``verdict`` = ``{sessions, max_deviation, within_bound, sessions_within_bound, bound}``; the
execution service's live guard counts the sessions within its own bound.

    python -m monitor.compare --period 2024-01-02..2024-01-31 \
        --ledger var/ledger/ledger.sqlite --store var/marketdata/bars.sqlite
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from monitor.compare_inputs import (
    CompareError,
    default_paper_config,
    find_model,
    parse_period,
    read_ledger,
)
from shared.backtest import run_backtest
from shared.barstore import BarStore
from shared.costs import CostModel
from shared.loaded_model import LoadedModel, load_artifact
from shared.metrics import infer_periods_per_year, returns_from_equity, sharpe_ratio
from shared.model_policy import ModelPolicy
from shared.rebalancing import AccountConfig, clip_target
from shared.sizing import SizingConfig

SESSION_TZ = "America/New_York"
DEFAULT_MODEL_ROOTS = ("models", "paper_trading/models", "best_models")
TARGET_TOLERANCE = 1e-9  # targets are action values (0, +-1 ...): any real difference is larger


class CompareOptions(msgspec.Struct, frozen=True, kw_only=True):
    ledger: str
    store: str
    model_roots: tuple[str, ...] = DEFAULT_MODEL_ROOTS
    start: str | None = None  # first session (exchange date, inclusive); None: the ledger's first
    end: str | None = None  # last session (inclusive); None: the ledger's last
    costs: CostModel = msgspec.field(default_factory=CostModel)
    # execution's sizing keys (the paper config it trades with): the backtester sizes alike
    sizing: SizingConfig = msgspec.field(default_factory=SizingConfig)
    initial_cash: float = 1_000_000.0  # the paper account (the simulator's default account)
    allow_short: bool = True
    bound: float = 0.005  # session deviation allowed (fraction of the session's start equity)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_cash) and self.initial_cash > 0):
            raise CompareError(f"initial_cash must be > 0, got {self.initial_cash!r}")
        if not (math.isfinite(self.bound) and self.bound >= 0):
            raise CompareError(f"bound must be a finite number >= 0, got {self.bound!r}")


# --------------------------------------------------------------------------- one symbol


@dataclass
class SymbolRun:
    """Everything compared for one symbol over its span of stored bars."""

    symbol: str
    index: pd.DatetimeIndex  # the span's bar close times
    sessions: np.ndarray  # exchange date (str) per span bar
    paper: np.ndarray  # paper PnL (cash flow + position x close) per span bar
    priced: np.ndarray  # the same trades at the backtest's prices and fees
    backtest: np.ndarray  # the backtester's own run, equity - initial cash
    backtest_fees: np.ndarray  # the backtester's own commissions per span bar
    decisions: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    unknown_signals: int = 0  # signals whose bar is not in the store


def _side(qty: float) -> float:
    return 1.0 if qty > 0 else -1.0


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat()


def compare_symbol(
    symbol: str,
    bars: pd.DataFrame,
    signals: pd.DataFrame,
    fills: pd.DataFrame,
    models: dict[str, LoadedModel],
    opts: CompareOptions,
) -> SymbolRun | None:
    """Replay ``bars`` with the paper's model versions and compare; None without signals."""
    costs = opts.costs
    n = len(bars)
    closes_ns = bars.index.asi8
    pos = bars.index.get_indexer(pd.to_datetime(signals["ts_event"].to_numpy(), utc=True))
    unknown = int((pos < 0).sum())
    signals = signals[pos >= 0].assign(bar=pos[pos >= 0])
    if signals.empty:
        return None
    paper_target = dict(zip(signals["bar"].tolist(), signals["target"].tolist(), strict=True))
    ref_bar = dict(zip(signals["order_ref"].tolist(), signals["bar"].tolist(), strict=True))

    version = pd.Series([None] * n, dtype=object)
    version.iloc[signals["bar"].to_numpy()] = signals["model_version"].to_numpy()
    versions = version.ffill().bfill().to_numpy()
    policies = {v: ModelPolicy(models[v], bars) for v in dict.fromkeys(versions)}

    decided = np.zeros(n, dtype=np.float64)  # decision at the close of bar t (held in t+1)
    valid = np.zeros(n, dtype=bool)
    held = 0.0
    for t in range(n):
        policy = policies[versions[t]]
        valid[t] = bool(policy.valid[t])
        if not valid[t] and t in paper_target:
            # the store lacks the history inference warmed up on (its snapshot came from before
            # the first stored bar): follow the paper's decision, compare from the first warm bar
            held = clip_target(paper_target[t], opts.allow_short)
        else:
            held = clip_target(policy(t, held), opts.allow_short)
        decided[t] = held

    orders = _paper_orders(fills, ref_bar, closes_ns)
    s0 = int(signals["bar"].min())
    last = max(int(signals["bar"].max()) + 1, max((o["bar"] for o in orders), default=s0))
    e = min(last, n - 1)
    span = bars.iloc[s0 : e + 1]
    acct = AccountConfig(
        initial_cash=opts.initial_cash,
        costs=costs,
        allow_short=opts.allow_short,
        sizing=opts.sizing,
    )
    targets = np.concatenate([[0.0], decided[s0:e]])
    warmup = bars.iloc[:s0] if s0 else None  # the sizer's ATR and first decision close
    bt = run_backtest(span, targets, acct, name="backtest", warmup=warmup)
    bt_fees = np.zeros(len(span))
    np.add.at(bt_fees, bt.fills["bar"].to_numpy(np.int64), bt.fills["commission"].to_numpy())
    bt_fill = {int(b) + s0: float(q) for b, q in zip(bt.fills["bar"], bt.fills["qty"], strict=True)}

    sessions = np.asarray(span.index.tz_convert(SESSION_TZ).strftime("%Y-%m-%d"), dtype=object)
    opens = bars["open"].to_numpy(np.float64)
    closes = bars["close"].to_numpy(np.float64)
    paper_cash = np.zeros(len(span))
    priced_cash = np.zeros(len(span))
    qty_change = np.zeros(len(span))
    order_rows = []
    for o in orders:
        b = min(max(o["bar"], s0), e)
        k = b - s0
        q, price, fee = o["qty"], o["price"], o["commission"]
        paper_cash[k] -= q * price + fee
        qty_change[k] += q
        decision = o["decision_bar"]
        row: dict[str, Any] = {
            "symbol": symbol,
            "order_ref": o["order_ref"],
            "session": sessions[k],
            "fill_bar": _iso(bars.index[b]),
            "side": "BUY" if q > 0 else "SELL",
            "paper_qty": q,
            "paper_price": price,
            "paper_fee": fee,
            "matched": decision is not None,
        }
        if decision is None:  # no decision behind it: priced as paper did, counted as unmatched
            priced_cash[k] -= q * price + fee
            order_rows.append(row)
            continue
        ref = float(opens[b])
        model_price = costs.fill_price(_side(q), ref)
        model_fee = costs.commission(q, model_price)
        priced_cash[k] -= q * model_price + model_fee
        dev = price - model_price
        close_at_decision = float(closes[decision])
        row.update(
            decision_bar=_iso(bars.index[decision]),
            model_version=versions[decision],
            backtest_qty=bt_fill.get(b, 0.0),
            qty_deviation=q - bt_fill.get(b, 0.0),
            ref_price=ref,
            backtest_price=model_price,
            price_deviation=dev,
            deviation_bps=_side(q) * dev / model_price * 1e4,
            slippage_paper_bps=_side(q) * (price - close_at_decision) / close_at_decision * 1e4,
            slippage_backtest_bps=(
                _side(q) * (model_price - close_at_decision) / close_at_decision * 1e4
            ),
            backtest_fee=model_fee,
            # the slippage model's band around the open; a relative epsilon for float rounding
            within_slippage_model=abs(price - ref) <= ref * costs.adverse_fraction * (1 + 1e-12),
        )
        order_rows.append(row)
    paper_bars = {o["bar"] for o in orders if o["decision_bar"] is not None}
    for b, q in sorted(bt_fill.items()):
        if b not in paper_bars and b - 1 in paper_target:
            order_rows.append(
                {
                    "symbol": symbol,
                    "order_ref": "",
                    "session": sessions[b - s0],
                    "fill_bar": _iso(bars.index[b]),
                    "side": "BUY" if q > 0 else "SELL",
                    "backtest_qty": q,
                    "matched": False,
                    "missed": True,
                }
            )

    position = np.cumsum(qty_change)
    span_close = closes[s0 : e + 1]
    decisions = []
    # from the first to the last decision the ledger holds: later bars are past its end
    for t in range(s0, int(signals["bar"].max()) + 1):
        paper = paper_target.get(t)
        if paper is None and not valid[t]:
            continue
        decisions.append(
            {
                "symbol": symbol,
                "bar": _iso(bars.index[t]),
                "session": sessions[t - s0],
                "model_version": versions[t],
                "paper_target": paper,
                "backtest_target": float(decided[t]),
                "mismatch": (
                    paper is not None
                    and bool(valid[t])
                    and abs(paper - decided[t]) > TARGET_TOLERANCE
                ),
                "missing": paper is None,
                # a paper decision the stored bars cannot reproduce (features not warm yet)
                "unverifiable": paper is not None and not valid[t],
            }
        )
    return SymbolRun(
        symbol=symbol,
        index=pd.DatetimeIndex(span.index),
        sessions=sessions,
        paper=np.cumsum(paper_cash) + position * span_close,
        priced=np.cumsum(priced_cash) + position * span_close,
        backtest=bt.equity - opts.initial_cash,
        backtest_fees=bt_fees,
        decisions=decisions,
        orders=order_rows,
        unknown_signals=unknown,
    )


def _paper_orders(
    fills: pd.DataFrame, ref_bar: dict[str, int], closes_ns: np.ndarray
) -> list[dict[str, Any]]:
    """Ledger fills grouped per order: signed quantity, VWAP, fees, decision and fill bar.

    An order of a known decision fills in the bar after it; any other (flatten, a bracket exit)
    in the first bar closing at or after its first fill.
    """
    out = []
    for ref, group in fills.groupby("order_ref", sort=False):
        signed = np.where(group["side"] == "BUY", 1.0, -1.0) * group["quantity"].to_numpy()
        qty = float(signed.sum())
        if qty == 0.0:
            continue
        prices = group["price"].to_numpy(np.float64)
        # one price (the usual case) stays bit-exact: (q * p) / q can differ in the last bit
        vwap = (
            float(prices[0])
            if (prices == prices[0]).all()
            else float((group["quantity"] * group["price"]).sum() / group["quantity"].sum())
        )
        decision = ref_bar.get(str(ref))
        if decision is not None:
            bar = decision + 1
        else:
            bar = int(np.searchsorted(closes_ns, int(group["ts_event"].min()), side="left"))
        out.append(
            {
                "order_ref": str(ref),
                "qty": qty,
                "price": vwap,
                "commission": float(group["commission"].sum()),
                "decision_bar": decision,
                "bar": min(bar, len(closes_ns) - 1),
            }
        )
    out.sort(key=lambda o: (o["bar"], o["order_ref"]))
    return out


# --------------------------------------------------------------------------- all symbols


def run_compare(opts: CompareOptions) -> tuple[list[SymbolRun], dict[str, str]]:
    """Every symbol of the ledger's signals compared; also {model version: artifact folder}."""
    signals, fills = read_ledger(opts.ledger)
    if signals.empty:
        raise CompareError(f"{opts.ledger}: no signals recorded: nothing to compare")
    if not Path(opts.store).is_file():
        raise CompareError(f"{opts.store}: no bar store here (marketdata writes it)")
    folders = {v: find_model(opts.model_roots, v) for v in signals["model_version"].unique()}
    models = {v: load_artifact(path) for v, path in folders.items()}
    runs = []
    store = BarStore(Path(opts.store))
    try:
        stored = set(store.symbols())
        for symbol, sym_signals in signals.groupby("symbol", sort=True):
            if symbol not in stored:
                raise CompareError(
                    f"{opts.store}: no bars stored for {symbol} (the ledger has its signals)"
                )
            bars = store.read_frame(str(symbol))
            run = compare_symbol(
                str(symbol), bars, sym_signals, fills[fills["symbol"] == symbol], models, opts
            )
            if run is not None:
                runs.append(run)
    finally:
        store.close()
    if not runs:
        raise CompareError(f"{opts.store}: none of the ledger's signals is on a stored bar")
    return runs, {v: str(p) for v, p in folders.items()}


def equity_curves(runs: Sequence[SymbolRun], initial_cash: float) -> pd.DataFrame:
    """Account equity per bar close (union of the symbols' bars): paper, priced, backtest."""
    union = pd.DatetimeIndex(sorted(set().union(*(set(r.index) for r in runs))), name="ts")
    total = pd.DataFrame(0.0, index=union, columns=["paper", "priced", "backtest"])
    for r in runs:
        part = pd.DataFrame(
            {"paper": r.paper, "priced": r.priced, "backtest": r.backtest}, index=r.index
        )
        total += part.reindex(union).ffill().fillna(0.0)
    return total + initial_cash


def curve_metrics(equity: pd.Series, start_equity: float, fees: float) -> dict[str, Any]:
    ppy = infer_periods_per_year(equity.index)
    sharpe = sharpe_ratio(returns_from_equity(equity.to_numpy(), start_equity), ppy)
    pnl = float(equity.iloc[-1] - start_equity) if len(equity) else 0.0
    return {
        "pnl": pnl,
        "return": pnl / start_equity,
        "sharpe": None if math.isnan(sharpe) else sharpe,
        "fees": fees,
    }


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import os
    import sys

    from monitor.compare_report import build_report, write_report
    from shared.config import ConfigError
    from shared.paper_config import load_paper_config

    parser = argparse.ArgumentParser(prog="python -m monitor.compare", description=__doc__)
    parser.add_argument("--period", default="", help="<start>..<end> sessions (default: all)")
    parser.add_argument("--ledger", default="var/ledger/ledger.sqlite")
    parser.add_argument("--store", default="var/marketdata/bars.sqlite")
    parser.add_argument("--models", default=",".join(DEFAULT_MODEL_ROOTS))
    parser.add_argument("--out", default="evaluation_results")
    parser.add_argument("--costs", default="", help="CostModel JSON (default: EXECUTION_SIM_COSTS)")
    parser.add_argument("--initial-cash", type=float, default=None)
    parser.add_argument(
        "--paper-config",
        default="",
        help="sizing keys (default: PAPER_TRADING_CONFIG, else paper_trading/*.json as execution)",
    )
    parser.add_argument("--bound", type=float, default=0.005)
    args = parser.parse_args(argv)
    try:
        start, end = parse_period(args.period)
        costs_json = args.costs or os.environ.get("EXECUTION_SIM_COSTS", "")
        try:
            costs = CostModel.from_dict(json.loads(costs_json)) if costs_json else CostModel()
        except (ValueError, TypeError) as exc:
            raise CompareError(f"--costs: not a CostModel JSON object: {exc}") from None
        cash = args.initial_cash or float(os.environ.get("MONITOR_INITIAL_CASH", 1_000_000.0))
        paper = load_paper_config(args.paper_config or default_paper_config())
        opts = CompareOptions(
            sizing=SizingConfig.from_paper_config(paper),
            ledger=args.ledger,
            store=args.store,
            model_roots=tuple(p for p in args.models.split(",") if p),
            start=start,
            end=end,
            costs=costs,
            initial_cash=cash,
            bound=args.bound,
        )
        runs, models = run_compare(opts)
        report = build_report(runs, models, opts)
    except (CompareError, ConfigError, ValueError) as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    folder = write_report(report, args.out)
    verdict = report["verdict"]
    print(
        f"{folder}/report.html: {verdict['sessions']} sessions, "
        f"{verdict['sessions_within_bound']} within bound {verdict['bound']:g}, "
        f"max deviation {verdict['max_deviation']:.6g}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
