"""Kill surviving mutants of shared/backtest.py (issue 17): every number from first principles.

The expected fills, fees, cash, equity and round trips are written out in the test with plain
arithmetic (open x (1 +- adverse), per-share fee with its minimum and cap, risk-per-trade sizes
from a hand ATR), not with ``shared.costs``/``shared.sizing`` or the pandas reference loop.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shared.backtest import round_trips, run_backtest, run_policy
from shared.costs import ZERO_COSTS, CostModel
from shared.rebalancing import (
    AccountConfig,
    clip_target,
    clip_targets,
    decision_refs,
    order_quantity,
    rebalance,
)
from shared.sizing import SizingConfig

pytestmark = pytest.mark.unit

# 10 bps spread (5 paid), 5 bps slippage: a buy fills 0.1 % above the open, a sell 0.1 % below
COSTS = CostModel(
    commission_per_share=0.01,
    commission_min=1.0,
    commission_max_pct=0.01,
    spread_bps=10.0,
    slippage_bps=5.0,
)
ADVERSE = 0.001


def fee(qty: float, price: float) -> float:
    """1 cent a share, at least 1.0, at most 1 % of the notional (COSTS by hand)."""
    q = abs(qty)
    return max(min(q * 0.01, q * price * 0.01), 1.0)


def frame(open_: list[float], close: list[float], spread: float = 1.0) -> pd.DataFrame:
    o = np.asarray(open_, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    return pd.DataFrame(
        {
            "open": o,
            "high": np.maximum(o, c) + spread,
            "low": np.minimum(o, c) - spread,
            "close": c,
            "volume": np.full(len(o), 1e5),
        },
        index=pd.bdate_range("2021-01-04 21:00", periods=len(o), tz="UTC").as_unit("ns"),
    )


OPEN = [100.0, 102.0, 104.0, 103.0, 101.0, 99.0]
CLOSE = [101.0, 103.0, 102.0, 104.0, 100.0, 98.0]


def test_risk_fraction_fills_cash_and_equity_by_hand() -> None:
    bars = frame(OPEN, CLOSE)
    acct = AccountConfig(
        initial_cash=10_000.0, sizer="risk_fraction", risk_fraction=0.5, costs=COSTS
    )
    # held during each bar; bar 3 keeps the target (no order), bar 4 flips, bar 5 goes flat
    targets = [0.0, 1.0, 1.0, 0.5, -1.0, 0.0]
    res = run_backtest(bars, targets, acct)

    cash, qty = 10_000.0, 0.0
    want_cash, want_qty, want_fills = [], [], []
    for i, t in enumerate(targets):
        if i == 0 or t != targets[i - 1]:
            o = OPEN[i]
            new = float(math.trunc(t * 0.5 * (cash + qty * o) / o))
            dq = new - qty
            if dq:
                px = o * (1 + ADVERSE) if dq > 0 else o * (1 - ADVERSE)
                f = fee(dq, px)
                cash -= dq * px + f
                qty = new
                want_fills.append((i, dq, o, px, f, t))
        want_cash.append(cash)
        want_qty.append(qty)
    # the hand numbers: 49 long at 102.102; half the target at equity 10043.002: 24, so 25
    # sold at 102.897; a full short of 49: 73 sold at 100.899; flat: 49 bought at 99.099
    assert [f[1] for f in want_fills] == [49.0, -25.0, -73.0, 49.0]
    np.testing.assert_allclose(res.cash, want_cash, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(res.qty, want_qty)
    np.testing.assert_allclose(res.equity, np.array(want_cash) + np.array(want_qty) * CLOSE)
    fills = res.fills
    assert fills["bar"].tolist() == [f[0] for f in want_fills]
    assert fills["time"].tolist() == [bars.index[f[0]] for f in want_fills]
    assert fills["side"].tolist() == ["buy", "sell", "sell", "buy"]
    assert fills["qty"].tolist() == [f[1] for f in want_fills]
    assert fills["ref_price"].tolist() == [f[2] for f in want_fills]
    np.testing.assert_allclose(fills["price"], [f[3] for f in want_fills], rtol=1e-15)
    np.testing.assert_allclose(fills["commission"], [f[4] for f in want_fills], rtol=1e-15)
    assert fills["target"].tolist() == [f[5] for f in want_fills]
    assert res.metrics["fees_paid"] == pytest.approx(sum(f[4] for f in want_fills), rel=1e-12)
    assert res.metrics["n_fills"] == 4.0
    notional = sum(abs(f[1] * f[3]) for f in want_fills)
    turnover = notional / np.mean(res.equity)
    assert res.metrics["turnover"] == pytest.approx(turnover, rel=1e-12)
    slip = sum(abs(f[1]) * abs(f[3] - f[2]) for f in want_fills)
    assert res.metrics["slippage_paid"] == pytest.approx(slip, rel=1e-12)
    assert res.metrics["final_equity"] == pytest.approx(want_cash[-1], rel=1e-12)


def test_exit_costs_close_the_last_position_at_the_last_close() -> None:
    bars = frame(OPEN, CLOSE)
    acct = AccountConfig(initial_cash=10_000.0, sizer="risk_fraction", costs=COSTS)
    targets = [0.0, 0.0, 0.0, 0.0, -1.0, -1.0]  # short from bar 4's open to the end
    kept = run_backtest(bars, targets, acct)
    closed = run_backtest(bars, targets, acct, exit_costs=True)
    short = -float(math.trunc(10_000.0 / 101.0))  # 99 shares at bar 4's open
    sell_px = 101.0 * (1 - ADVERSE)
    cash = 10_000.0 - short * sell_px - fee(short, sell_px)
    assert kept.qty[-1] == short and kept.cash[-1] == pytest.approx(cash, rel=1e-15)
    assert kept.equity[-1] == pytest.approx(cash + short * 98.0, rel=1e-15)
    # the exit: a buy of 99 at the last close + adverse, with its fee; flat afterwards
    buy_px = 98.0 * (1 + ADVERSE)
    flat = cash + short * buy_px - fee(short, buy_px)
    assert closed.qty[-1] == 0.0
    assert closed.cash[-1] == pytest.approx(flat, rel=1e-15)
    assert closed.equity[-1] == pytest.approx(flat, rel=1e-15)
    np.testing.assert_array_equal(closed.equity[:-1], kept.equity[:-1])
    last = closed.fills.iloc[-1]
    assert (last["bar"], last["side"], last["qty"]) == (5, "buy", -short)
    assert last["ref_price"] == 98.0 and last["price"] == pytest.approx(buy_px, rel=1e-15)
    assert last["target"] == 0.0 and last["time"] == bars.index[-1]
    assert closed.fills.iloc[0]["target"] == -1.0  # only the exit row says 0
    trade = closed.trades.iloc[-1]
    assert not trade["open"] and trade["exit_price"] == pytest.approx(buy_px, rel=1e-15)
    assert trade["pnl"] == pytest.approx(flat - 10_000.0, rel=1e-12)
    # a flat account has nothing to close: no extra fill, the same numbers
    flat_run = run_backtest(bars, np.zeros(6), acct, exit_costs=True)
    assert len(flat_run.fills) == 0 and flat_run.equity[-1] == 10_000.0


def calm_bars(n: int, price: float = 100.0, half_range: float = 1.0) -> pd.DataFrame:
    """Open == close == price, high/low +- half_range: every true range is 2 * half_range."""
    return frame([price] * n, [price] * n, spread=half_range)


SIZING = SizingConfig(
    risk_per_trade=0.01,
    stop_atr_multiple=2.0,
    atr_period=3,
    max_position=1000,
    max_gross_exposure=1e9,
    rebalance_threshold=0.1,
    fallback_stop_pct=0.05,
)


def test_shared_sizer_sizes_from_the_decision_close_and_atr_by_hand() -> None:
    # ATR 2 (every true range 2), stop 2 x 2 = 4, equity 100k: full size floor(1000 / 4) = 250
    acct = AccountConfig(initial_cash=100_000.0, sizing=SIZING, costs=ZERO_COSTS)
    warm = calm_bars(5)
    bars = calm_bars(8)
    targets = [1.0, 1.0, 0.95, 0.5, 0.55, -0.3, -0.3, 0.0]
    res = run_backtest(bars, targets, acct, warmup=warm)
    # 250; 0.95 -> 237.5 -> 238 is within 0.1 x 250 of 250: kept; 125; 137.5 -> 138 but
    # |138 - 125| = 13 < 25: kept at 125; -75 (flip always trades); kept; flat
    assert res.qty.tolist() == [250, 250, 250, 125, 125, -75, -75, 0]
    assert res.fills["qty"].tolist() == [250.0, -125.0, -200.0, 75.0]
    assert res.fills["bar"].tolist() == [0, 3, 5, 7]
    np.testing.assert_array_equal(res.equity, np.full(8, 100_000.0))  # no costs, flat prices


def test_shared_sizer_without_warmup_uses_the_first_open_and_the_fallback_stop() -> None:
    # no ATR before bar 0: stop = 5 % of bar 0's open (200) = 10, full = floor(1000 / 10) = 100;
    # bar 1 is sized at bar 0's close (still no ATR: 3 bars needed) with equity marked there
    acct = AccountConfig(initial_cash=100_000.0, sizing=SIZING, costs=ZERO_COSTS)
    bars = frame([200.0, 250.0, 250.0, 250.0, 250.0], [250.0, 250.0, 250.0, 250.0, 250.0], 1.0)
    res = run_backtest(bars, [1.0, 1.0, 1.0, 1.0, 1.0], acct)
    assert res.fills["bar"].tolist()[0] == 0 and res.fills["qty"].tolist()[0] == 100.0
    # bar 1: equity 100k + 100 x 50 = 105k at close 250, stop 12.5: floor(1050 / 12.5) = 84
    assert res.qty[1] == 84.0
    ref_close, ref_atr = decision_refs(bars, None, 3)
    assert ref_close.tolist() == [200.0, 250.0, 250.0, 250.0, 250.0]
    assert math.isnan(ref_atr[0]) and math.isnan(ref_atr[1]) and math.isnan(ref_atr[2])
    # ATR over bars 0..2 (true ranges 52, 2, 2 -> mean 56 / 3) is bar 3's decision ATR
    assert ref_atr[3] == pytest.approx(56.0 / 3.0, rel=1e-15)


def test_decision_refs_read_the_bar_before_and_the_warmup() -> None:
    warm = frame([10.0, 11.0, 12.0], [11.0, 12.0, 13.0], 0.5)
    bars = frame([14.0, 15.0, 16.0], [15.0, 16.0, 17.0], 0.5)
    ref_close, ref_atr = decision_refs(bars, warm, 2)
    # each bar's decision was taken at the previous close: warm-up's last close for bar 0
    assert ref_close.tolist() == [13.0, 15.0, 16.0]
    # true ranges: high - low = 2 each, except bar 0's gap: high 15.5 - previous close 13 = 2.5
    # ATR(2) seeded with the mean of the first two (2), then (atr + tr) / 2: 2, 2, 2.25, 2.125
    assert ref_atr.tolist() == [2.0, 2.25, 2.125]
    empty_close, empty_atr = decision_refs(bars.iloc[:0], warm, 2)
    assert len(empty_close) == 0 and len(empty_atr) == 0
    # an empty warm-up is no warm-up
    same = decision_refs(bars, warm.iloc[:0], 2)
    np.testing.assert_array_equal(same[0], decision_refs(bars, None, 2)[0])


def test_clip_and_order_quantity_edges() -> None:
    np.testing.assert_array_equal(
        clip_targets([np.nan, np.inf, -np.inf, 2.0, -2.0, 0.3, -0.3], True),
        [0.0, 0.0, 0.0, 1.0, -1.0, 0.3, -0.3],
    )
    np.testing.assert_array_equal(clip_targets([-0.5, 0.5, 1.5], False), [0.0, 0.5, 1.0])
    assert clip_targets([1, 0], True).dtype == np.float64
    assert [clip_target(x, True) for x in (math.nan, math.inf, 2.0, -2.0, -0.4)] == [
        0.0, 0.0, 1.0, -1.0, -0.4,
    ]  # fmt: skip
    assert clip_target(-0.4, False) == 0.0 and clip_target(0.4, False) == 0.4
    acct = AccountConfig(sizer="risk_fraction", risk_fraction=0.5)
    assert order_quantity(1.0, 1000.0, 30.0, acct) == 16.0  # trunc(16.67)
    assert order_quantity(-1.0, 1000.0, 30.0, acct) == -16.0  # toward zero, not floor
    assert order_quantity(1.0, 0.0, 30.0, acct) == 0.0
    assert order_quantity(1.0, -5.0, 30.0, acct) == 0.0
    assert order_quantity(1.0, 1000.0, 0.0, acct) == 0.0
    frac = AccountConfig(sizer="risk_fraction", risk_fraction=0.5, integer_shares=False)
    assert order_quantity(1.0, 1000.0, 30.0, frac) == pytest.approx(500.0 / 30.0, rel=1e-15)


def test_rebalance_by_hand() -> None:
    acct = AccountConfig(sizer="risk_fraction", costs=COSTS)
    # 1000 cash + 10 shares at 50 = 1500 equity; target 1 -> 30 shares: buy 20 at 50.05
    cash, qty, dq, px, f = rebalance(1000.0, 10.0, 1.0, 50.0, acct)
    assert (qty, dq) == (30.0, 20.0)
    assert px == pytest.approx(50.05, rel=1e-15) and f == 1.0  # 0.20 -> the 1.0 minimum
    assert cash == pytest.approx(1000.0 - 20 * 50.05 - 1.0, rel=1e-15)
    # already there: no order, nothing changes
    assert rebalance(0.0, 30.0, 1.0, 40.0, acct) == (0.0, 30.0, 0.0, 0.0, 0.0)
    # target 0 from 30 long: sell 30 at 49.95
    cash2, qty2, dq2, px2, _ = rebalance(0.0, 30.0, 0.0, 50.0, acct)
    assert (qty2, dq2) == (0.0, -30.0) and px2 == pytest.approx(49.95, rel=1e-15)
    assert cash2 == pytest.approx(30 * 49.95 - 1.0, rel=1e-15)


def test_round_trips_scale_in_open_trade_and_returns() -> None:
    t = pd.date_range("2020-01-01", periods=5, tz="UTC")
    fills = pd.DataFrame(
        {
            "time": t[:3],
            "bar": [0, 1, 3],
            "qty": [10.0, 30.0, -20.0],
            "price": [100.0, 104.0, 110.0],
            "commission": [1.0, 2.0, 1.5],
        }
    )
    trades = round_trips(fills, last_close=120.0, last_time=t[4], last_bar=4)
    assert len(trades) == 1
    tr = trades.iloc[0]
    avg = (10 * 100.0 + 30 * 104.0) / 40  # 103
    realised = 20 * (110.0 - avg) + 20 * (120.0 - avg)  # 20 sold, 20 marked at the last close
    assert tr["side"] == "long" and tr["qty"] == 40.0 and bool(tr["open"])
    assert tr["entry_price"] == pytest.approx(avg, rel=1e-15)
    assert tr["exit_price"] == pytest.approx((20 * 110.0 + 20 * 120.0) / 40, rel=1e-15)
    assert tr["commission"] == pytest.approx(4.5, rel=1e-15)
    assert tr["pnl"] == pytest.approx(realised - 4.5, rel=1e-12)
    assert tr["return"] == pytest.approx((realised - 4.5) / (avg * 40), rel=1e-12)
    assert tr["bars_held"] == 4 and tr["entry_time"] == t[0] and tr["exit_time"] == t[4]
    # a short closed exactly: one closed trade, pnl from the short side
    short = pd.DataFrame(
        {
            "time": t[:2],
            "bar": [1, 2],
            "qty": [-5.0, 5.0],
            "price": [50.0, 40.0],
            "commission": [1.0, 1.0],
        }
    )
    s = round_trips(short, last_close=0.0, last_time=None, last_bar=2).iloc[0]
    assert s["side"] == "short" and not s["open"] and s["bars_held"] == 1
    assert s["pnl"] == pytest.approx(5 * 10.0 - 2.0) and s["exit_price"] == 40.0
    assert s["qty"] == 5.0 and s["entry_price"] == 50.0
    assert len(round_trips(short.iloc[:0], 1.0, None, 0)) == 0


def test_run_policy_from_the_first_bar_and_with_an_end() -> None:
    bars = frame([100.0] * 8, [100.0] * 8)
    seen: list[tuple[int, float]] = []

    def decide(t: int, position: float) -> float:
        seen.append((t, position))
        return 2.0 if t % 2 == 0 else -0.5  # clipped to 1 before it is held and passed back

    acct = AccountConfig(sizer="risk_fraction", costs=ZERO_COSTS)
    res = run_policy(bars, decide, acct, end=6)
    # start 0: bar 0 is flat (nothing was decided before it); closes 0..4 decide bars 1..5
    assert [t for t, _ in seen] == [0, 1, 2, 3, 4]
    assert [p for _, p in seen] == [0.0, 1.0, -0.5, 1.0, -0.5]
    assert res.targets.tolist() == [0.0, 1.0, -0.5, 1.0, -0.5, 1.0]
    assert len(res.equity) == 6 and res.index[-1] == bars.index[5]
    long_only = AccountConfig(sizer="risk_fraction", costs=ZERO_COSTS, allow_short=False)
    seen.clear()
    assert run_policy(bars, decide, long_only).targets.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert [p for _, p in seen][:3] == [0.0, 1.0, 0.0]


def test_small_equity_and_prices_below_one_still_size() -> None:
    # nothing special happens at 1.0: equity 1 buys 4 shares at 0.25, 100 buys 200 at 0.5
    acct = AccountConfig(sizer="risk_fraction")
    assert order_quantity(1.0, 1.0, 0.25, acct) == 4.0
    assert order_quantity(1.0, 100.0, 0.5, acct) == 200.0
    assert order_quantity(-1.0, 0.5, 0.125, acct) == -4.0


def test_a_one_share_buy_pays_the_buy_side() -> None:
    # 100 cash at 60: trunc(100 / 60) = 1 share, bought at 60 x 1.001 (not sold at 59.94)
    acct = AccountConfig(sizer="risk_fraction", costs=COSTS)
    cash, qty, dq, px, f = rebalance(100.0, 0.0, 1.0, 60.0, acct)
    assert (qty, dq, f) == (1.0, 1.0, 1.0)
    assert px == pytest.approx(60.06, rel=1e-15)
    assert cash == pytest.approx(100.0 - 60.06 - 1.0, rel=1e-15)
    # and a one-share sell the sell side
    cash, qty, dq, px, f = rebalance(0.0, 1.0, 0.0, 60.0, acct)
    assert (qty, dq) == (0.0, -1.0) and px == pytest.approx(59.94, rel=1e-15)


def test_resize_without_a_change_returns_no_order() -> None:
    from shared.rebalancing import resize

    acct = AccountConfig(sizing=SIZING, costs=COSTS)
    # equity 100k at close 100, ATR 2: full 250, already held: nothing to do, nothing paid
    assert resize(75_000.0, 250.0, 1.0, 100.0, 2.0, 101.0, acct) == (75_000.0, 250.0, 0, 0, 0)
    # a change: 125 sold at the next open 101 x 0.999, equity marked at the decision close
    cash, qty, dq, px, f = resize(75_000.0, 250.0, 0.5, 100.0, 2.0, 101.0, acct)
    assert (qty, dq) == (125.0, -125.0) and px == pytest.approx(100.899, rel=1e-15)
    assert f == pytest.approx(1.25, rel=1e-15) and cash == pytest.approx(75_000.0 + 125 * px - f)


def test_run_policy_passes_its_settings_to_the_backtest() -> None:
    bars = frame(
        [100.0, 101.0, 103.0, 102.0, 104.0, 106.0], [101.0, 102.0, 103.0, 105.0, 104.0, 107.0]
    )

    def long(t: int, position: float) -> float:
        return 1.0

    acct = AccountConfig(sizer="risk_fraction", costs=COSTS, initial_cash=10_000.0)
    plain = run_policy(bars, long, acct)
    assert plain.name == "policy" and plain.account is acct
    # default: the position stays open after the last bar (no exit fill)
    assert plain.qty[-1] == float(math.trunc(10_000.0 / 101.0)) and len(plain.fills) == 1
    assert plain.fills["price"].iloc[0] == pytest.approx(101.0 * (1 + ADVERSE), rel=1e-15)
    named = run_policy(bars, long, acct, name="mine", exit_costs=True)
    assert named.name == "mine" and named.qty[-1] == 0.0 and len(named.fills) == 2
    assert named.fills["price"].iloc[-1] == pytest.approx(107.0 * (1 - ADVERSE), rel=1e-15)
    # periods per year reach the metrics: the annualised volatility scales with sqrt(ppy)
    monthly = run_policy(bars, long, acct, periods_per_year=12.0)
    daily = run_policy(bars, long, acct, periods_per_year=252.0)
    ratio = daily.metrics["annualised_volatility"] / monthly.metrics["annualised_volatility"]
    assert ratio == pytest.approx(math.sqrt(252.0 / 12.0), rel=1e-12)


def test_run_policy_hands_the_bars_before_start_to_the_sizer() -> None:
    acct = AccountConfig(initial_cash=100_000.0, sizing=SIZING, costs=ZERO_COSTS)

    def long(t: int, position: float) -> float:
        return 1.0

    # start 4 on calm bars: bars 0..3 give ATR 2, stop 4: 250 shares (no warm-up would size
    # at bar 4's open with the 5 % fallback stop: 1000 / 5 = 200)
    res = run_policy(calm_bars(8), long, acct, start=4)
    assert res.fills["qty"].tolist()[0] == 250.0 and len(res.equity) == 4
    # start 1: one bar of history, no ATR yet: sized at bar 0's close 100 (stop 5): 200 shares;
    # without it, at bar 1's open 200 (stop 10): 100 shares
    bars = frame([100.0, 200.0, 200.0], [100.0, 200.0, 200.0], 1.0)
    one = run_policy(bars, long, acct, start=1)
    assert one.fills["qty"].tolist()[0] == 200.0


def test_resize_one_share_buy_pays_the_buy_side() -> None:
    from shared.rebalancing import resize

    # equity 400 at close 100, ATR 2, stop 4: full size floor(4 / 4) = 1 share, bought at 101.101
    acct = AccountConfig(sizing=SIZING, costs=COSTS)
    cash, qty, dq, px, f = resize(400.0, 0.0, 1.0, 100.0, 2.0, 101.0, acct)
    assert (qty, dq, f) == (1.0, 1.0, 1.0)
    assert px == pytest.approx(101.101, rel=1e-15) and cash == pytest.approx(400.0 - px - 1.0)


def test_run_backtest_default_name_and_shape_error() -> None:
    bars = frame(OPEN, CLOSE)
    assert run_backtest(bars, np.zeros(6)).name == "strategy"
    assert run_backtest(bars, np.zeros(6), name="mine").name == "mine"
    with pytest.raises(ValueError, match=r"^targets has shape \(3,\), bars has 6 rows$"):
        run_backtest(bars, np.zeros(3))


def test_exit_costs_sell_a_long_opened_on_the_last_bar() -> None:
    # 1 share bought at bar 5's open (99 x 1.001), sold at bar 5's close (98 x 0.999)
    bars = frame(OPEN, CLOSE)
    acct = AccountConfig(initial_cash=150.0, sizer="risk_fraction", costs=COSTS)
    res = run_backtest(bars, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0], acct, exit_costs=True)
    buy_px, sell_px = 99.0 * (1 + ADVERSE), 98.0 * (1 - ADVERSE)
    flat = 150.0 - buy_px - 1.0 + sell_px - 1.0
    assert res.fills["qty"].tolist() == [1.0, -1.0]
    assert res.fills["side"].tolist() == ["buy", "sell"]
    np.testing.assert_allclose(res.fills["price"], [buy_px, sell_px], rtol=1e-15)
    assert res.qty[-1] == 0.0 and res.equity[-1] == pytest.approx(flat, rel=1e-15)
    assert res.equity[:-1].tolist() == [150.0] * 5


def test_exit_fill_is_the_only_row_marked_flat() -> None:
    # fills: buy (target 1), partial sell (0.5), buy back (1), exit (0)
    bars = frame(OPEN, CLOSE)
    acct = AccountConfig(initial_cash=10_000.0, sizer="risk_fraction", costs=COSTS)
    res = run_backtest(bars, [0.0, 1.0, 0.5, 0.5, 1.0, 1.0], acct, exit_costs=True)
    assert res.fills["bar"].tolist() == [1, 2, 4, 5]
    assert res.fills["target"].tolist() == [1.0, 0.5, 1.0, 0.0]
    assert res.fills["side"].tolist() == ["buy", "sell", "buy", "sell"]


def test_run_backtest_keeps_its_inputs_in_the_result() -> None:
    bars = frame(OPEN, CLOSE)
    acct = AccountConfig(sizer="risk_fraction", costs=COSTS)
    targets = np.array([0.0, 1.0, 1.0, -1.0, -1.0, 0.0], dtype=np.float32)
    res = run_backtest(bars, targets, acct, params={"fast": 5})
    assert res.params == {"fast": 5} and res.account is acct
    assert res.open.tolist() == OPEN and res.close.tolist() == CLOSE
    assert res.targets.dtype == np.float64 and res.targets.tolist() == targets.tolist()
    assert clip_targets(np.array([0.1], dtype=np.float32), True).dtype == np.float64
    monthly = run_backtest(bars, targets, acct, periods_per_year=12.0)
    daily = run_backtest(bars, targets, acct, periods_per_year=252.0)
    ratio = daily.metrics["annualised_volatility"] / monthly.metrics["annualised_volatility"]
    assert ratio == pytest.approx(math.sqrt(252.0 / 12.0), rel=1e-12)


def test_round_trips_of_one_share() -> None:
    # a one-share trade is a trade (the zero tolerance is for float dust, not for shares)
    fills = pd.DataFrame(
        {
            "time": pd.date_range("2020-01-01", periods=2, tz="UTC"),
            "bar": [0, 2],
            "qty": [1.0, -1.0],
            "price": [100.0, 110.0],
            "commission": [1.0, 1.0],
        }
    )
    trades = round_trips(fills, last_close=120.0, last_time=None, last_bar=3)
    assert len(trades) == 1 and trades["open"].tolist() == [False]
    tr = trades.iloc[0]
    assert tr["pnl"] == pytest.approx(10.0 - 2.0) and tr["bars_held"] == 2
    assert tr["side"] == "long" and tr["exit_price"] == 110.0
    assert tr["entry_time"] == fills["time"].iloc[0] and tr["exit_time"] == fills["time"].iloc[1]
    # one share at 0.5 -> 0.75: a notional of 0.5 still has a return
    cheap = fills.assign(price=[0.5, 0.75], commission=[0.0, 0.0])
    assert round_trips(cheap, 0.75, None, 3)["return"].iloc[0] == pytest.approx(0.5)


def _fills(qty: list[float], price: list[float]) -> pd.DataFrame:
    n = len(qty)
    return pd.DataFrame(
        {
            "time": pd.date_range("2020-01-01", periods=n, tz="UTC"),
            "bar": list(range(n)),
            "qty": qty,
            "price": price,
            "commission": [0.0] * n,
        }
    )


def test_round_trips_one_share_positions_scale_flip_and_reduce() -> None:
    # long 1, buy 1 more (scale in: avg 101, peak 2), sell 2: one long trade
    t = round_trips(_fills([1.0, 1.0, -2.0], [100.0, 102.0, 110.0]), 0.0, None, 2)
    assert len(t) == 1 and t["qty"].iloc[0] == 2.0 and t["entry_price"].iloc[0] == 101.0
    assert t["pnl"].iloc[0] == pytest.approx(18.0) and t["side"].iloc[0] == "long"
    # long 10, buy 1 (scale in, not a close), sell 11
    t = round_trips(_fills([10.0, 1.0, -11.0], [100.0, 111.0, 120.0]), 0.0, None, 2)
    assert len(t) == 1 and t["qty"].iloc[0] == 11.0
    assert t["entry_price"].iloc[0] == pytest.approx(1111.0 / 11.0)
    assert t["pnl"].iloc[0] == pytest.approx(11 * 120.0 - 1111.0)
    # long 10, sell 9 (1 left, still the same trade), sell 1
    t = round_trips(_fills([10.0, -9.0, -1.0], [100.0, 110.0, 90.0]), 0.0, None, 2)
    assert len(t) == 1 and t["pnl"].iloc[0] == pytest.approx(9 * 10.0 - 10.0)
    assert t["exit_price"].iloc[0] == pytest.approx((9 * 110.0 + 90.0) / 10.0)
    # long 1, sell 3: the long closes and a short of 2 opens at the flip's time and price
    f = _fills([1.0, -3.0, 2.0], [100.0, 105.0, 95.0])
    t = round_trips(f, 0.0, None, 2)
    assert t["side"].tolist() == ["long", "short"] and t["qty"].tolist() == [1.0, 2.0]
    assert t["entry_time"].iloc[1] == f["time"].iloc[1] and t["entry_price"].iloc[1] == 105.0
    assert t["pnl"].tolist() == pytest.approx([5.0, 20.0])


# ------------------------------------------------------------------ execution's risk rules (risk=)
# Five calm bars (ATR 2 with SIZING's period 3), then a long opened at 100 with a stop at
# 100 - 2 x 2 = 96 (250 shares: 1 % of 100k over 4), a close at 95.5 (through the stop, and
# 250 x 4.5 = 1125 lost since the previous close), then a recovery. No costs: every fill is at
# the open. All numbers below are worked out by hand from those bars. Without the five bars of
# warm-up the rules would see no ATR at bar 0: a 5 % fallback stop at 95, not reached by 95.5.
RISK_OPEN = [100.0, 100.0, 96.0, 100.0]
RISK_CLOSE = [100.0, 95.5, 100.0, 100.0]


def risk_bars() -> pd.DataFrame:
    return frame([100.0] * 5 + RISK_OPEN, [100.0] * 5 + RISK_CLOSE, spread=1.0)


def test_run_backtest_with_the_stop_forces_the_decision_after_the_stop_close_flat() -> None:
    from shared.env_risk import RiskRules

    acct = AccountConfig(initial_cash=100_000.0, sizing=SIZING, costs=ZERO_COSTS)
    bars = risk_bars()
    warm, traded = bars.iloc[:5], bars.iloc[5:]
    res = run_backtest(
        traded, [1.0, 1.0, 1.0, 0.0], acct, warmup=warm, params={"fast": 5}, risk=RiskRules()
    )
    # bar 0: buy 250 at 100 (stop 96); bar 1: close 100 > 96, kept; the close of bar 1 (95.5) is
    # at or through 96: bar 2 is forced flat, 250 sold at bar 2's open 96; bar 3 flat anyway
    assert res.targets.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert res.qty.tolist() == [250.0, 250.0, 0.0, 0.0]
    assert res.fills["bar"].tolist() == [0, 2]
    assert res.fills["qty"].tolist() == [250.0, -250.0]
    assert res.fills["price"].tolist() == [100.0, 96.0]
    assert res.equity.tolist() == [100_000.0, 98_875.0, 99_000.0, 99_000.0]
    assert res.params == {"fast": 5, "risk_forced": {"stop": 1, "daily_loss": 0}}
    # the day's loss at the close of bar 1 is 1125: a 1000 limit halts that decision instead
    halted = run_backtest(
        traded, [1.0, 1.0, 1.0, 0.0], acct, warmup=warm, risk=RiskRules(max_daily_loss=1000.0)
    )
    assert halted.targets.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert halted.params == {"risk_forced": {"stop": 0, "daily_loss": 1}}
    # both rules off: nothing forced, the target is held through the stop close
    off = RiskRules(stop_loss=False, daily_loss_halt=False)
    free = run_backtest(traded, [1.0, 1.0, 1.0, 0.0], acct, warmup=warm, risk=off)
    assert free.targets.tolist() == [1.0, 1.0, 1.0, 0.0] and free.qty[2] > 0
    assert free.params == {"risk_forced": {"stop": 0, "daily_loss": 0}}
    # without rules: no count at all
    assert run_backtest(traded, [1.0, 1.0, 1.0, 0.0], acct, warmup=warm).params == {}


def test_run_policy_with_the_stop_feeds_the_forced_flat_back_to_the_policy() -> None:
    from shared.env_risk import RiskRules

    acct = AccountConfig(initial_cash=100_000.0, sizing=SIZING, costs=ZERO_COSTS)
    seen: list[tuple[int, float]] = []

    def long_then_flat(t: int, position: float) -> float:
        seen.append((t, position))
        return 0.0 if t == 7 else 1.0

    res = run_policy(risk_bars(), long_then_flat, acct, start=5, risk=RiskRules())
    # closes 4..7 decide bars 5..8; the decision at close 6 (95.5) is forced flat, so the policy's
    # call at close 7 sees position 0, not the 1 it asked for
    assert seen == [(4, 0.0), (5, 1.0), (6, 1.0), (7, 0.0)]
    assert res.targets.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert res.qty.tolist() == [250.0, 250.0, 0.0, 0.0]
    assert res.params == {"risk_forced": {"stop": 1, "daily_loss": 0}}
    assert run_policy(risk_bars(), long_then_flat, acct, start=5).params == {}
    # an empty slice with rules: nothing decided, nothing counted; one bar: counted (none)
    empty = run_policy(risk_bars(), long_then_flat, acct, start=5, end=5, risk=RiskRules())
    assert len(empty.equity) == 0 and empty.params == {}
    one = run_policy(risk_bars(), long_then_flat, acct, start=5, end=6, risk=RiskRules())
    assert one.qty.tolist() == [250.0]
    assert one.params == {"risk_forced": {"stop": 0, "daily_loss": 0}}


def test_run_policy_with_rules_from_the_first_bar_holds_bar_zero_flat() -> None:
    from shared.env_risk import RiskRules

    acct = AccountConfig(initial_cash=100_000.0, sizing=SIZING, costs=ZERO_COSTS)
    seen: list[tuple[int, float]] = []

    def long(t: int, position: float) -> float:
        seen.append((t, position))
        return 1.0

    # bar 0 closes at 94. Bar 0 is flat (nothing decided before it), so no stop exists at that
    # close: the decision for bar 1 opens the long. (Had bar 0 been held long from its open 100,
    # with no ATR yet, its 5 % fallback stop 95 would have forced bar 1 flat.)
    bars = frame([100.0, 100.0, 100.0], [94.0, 100.0, 100.0], spread=1.0)
    res = run_policy(bars, long, acct, risk=RiskRules())
    assert seen == [(0, 0.0), (1, 1.0)]
    assert res.targets.tolist() == [0.0, 1.0, 1.0]
    # bar 1 sized at bar 0's close 94 with no ATR: stop 4.7, floor(1000 / 4.7) = 212 shares
    assert res.qty.tolist() == [0.0, 212.0, 212.0]
    assert res.params == {"risk_forced": {"stop": 0, "daily_loss": 0}}
