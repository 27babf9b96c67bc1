"""Kill surviving mutants of shared/backtest_risk.py (issue 17): execution's ATR stop and
daily-loss halt in the backtester, every expected number worked out here by hand.

Five calm bars of warm-up (open == close == 100, high/low +- 1: every true range 2, so the ATR
of period 3 is 2) and no costs: a full-size long is 1 % of 100k over a 2 x 2 stop = 250 shares,
opened at 100 with its stop at 96; a fill is at the open.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from shared.backtest import run_backtest
from shared.backtest_risk import RiskBook, apply_risk_rules, manifest_risk_rules
from shared.costs import ZERO_COSTS
from shared.env_risk import RiskRules
from shared.rebalancing import AccountConfig
from tests.unit.test_mutation_kills_backtest import SIZING  # 1 %, 2 x ATR(3), cap 1000

pytestmark = pytest.mark.unit

ACCT = AccountConfig(initial_cash=100_000.0, sizing=SIZING, costs=ZERO_COSTS)


def bars_after_calm(open_: list[float], close: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(warm-up, traded bars): five calm bars at 100, then the given bars (daily, one New York
    trading day each)."""
    o = np.asarray([100.0] * 5 + open_)
    c = np.asarray([100.0] * 5 + close)
    frame = pd.DataFrame(
        {
            "open": o,
            "high": np.maximum(o, c) + 1.0,
            "low": np.minimum(o, c) - 1.0,
            "close": c,
            "volume": np.full(len(o), 1e5),
        },
        index=pd.bdate_range("2021-01-04 21:00", periods=len(o), tz="UTC").as_unit("ns"),
    )
    return frame.iloc[:5], frame.iloc[5:]


def test_the_rules_refuse_the_risk_fraction_sizer() -> None:
    warm, traded = bars_after_calm([100.0], [100.0])
    old_rule = AccountConfig(sizer="risk_fraction")
    with pytest.raises(
        ValueError,
        match=r"^risk rules need the shared sizer \(its ATR stop\), not risk_fraction$",
    ):
        RiskBook(traded, old_rule, RiskRules(), warm)


def test_an_empty_slice_has_nothing_to_decide() -> None:
    _, traded = bars_after_calm([], [])
    out, forced = apply_risk_rules(traded, np.zeros(0), ACCT, RiskRules())
    assert out.shape == (0,) and forced == {"stop": 0, "daily_loss": 0}
    res = run_backtest(traded, np.zeros(0), ACCT, risk=RiskRules())
    assert len(res.equity) == 0 and res.params == {"risk_forced": {"stop": 0, "daily_loss": 0}}


def test_a_stop_hit_at_the_first_close_forces_the_second_bar_flat() -> None:
    # bar 0: 250 long at 100, stop 96; bar 0 closes at 95.5 (through 96): the decision at that
    # close (for bar 1) is forced flat, 250 sold at bar 1's open 100; then flat, no stop: the
    # decision at bar 1's close re-enters
    warm, traded = bars_after_calm([100.0] * 4, [95.5, 100.0, 100.0, 100.0])
    rules = RiskRules(daily_loss_halt=False)
    res = run_backtest(traded, [1.0, 1.0, 1.0, 1.0], ACCT, warmup=warm, risk=rules)
    assert res.targets.tolist() == [1.0, 0.0, 1.0, 1.0]
    assert res.qty[:2].tolist() == [250.0, 0.0] and res.qty[2] > 0
    assert res.fills["bar"].tolist()[:2] == [0, 1]
    assert res.fills["qty"].tolist()[:2] == [250.0, -250.0]
    assert res.equity[0] == 100_000.0 - 250 * 4.5 and res.equity[1] == 100_000.0
    assert res.params == {"risk_forced": {"stop": 1, "daily_loss": 0}}


def test_a_zero_loss_limit_halts_every_decision_after_the_first_bar() -> None:
    # max_daily_loss 0: a decision whose equity is not above its day's start is halted. The
    # decision for bar 0 is taken before the slice (flat, initial cash): never halted, so
    # bar 0 holds the long. At bar 0's close the equity is still 100k (flat prices, no costs):
    # 0 below the day's start, halted; every later day starts at 100k and stays there.
    warm, traded = bars_after_calm([100.0] * 4, [100.0] * 4)
    rules = RiskRules(stop_loss=False, max_daily_loss=0.0)
    res = run_backtest(traded, [1.0, 1.0, 1.0, 1.0], ACCT, warmup=warm, risk=rules)
    assert res.targets.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert res.qty.tolist() == [250.0, 0.0, 0.0, 0.0]
    assert res.params == {"risk_forced": {"stop": 0, "daily_loss": 3}}


def test_a_one_share_position_closed_leaves_no_stop_behind() -> None:
    # bar 0: target 0.004 of 250 = 1 share at 100 (stop 96); bar 1: flat (the share is sold);
    # bar 1 closes at 95.5, below the old stop, but no position is held, so the decision for
    # bar 2 opens the long it asks for
    warm, traded = bars_after_calm([100.0] * 4, [100.0, 95.5, 100.0, 100.0])
    res = run_backtest(traded, [0.004, 0.0, 1.0, 1.0], ACCT, warmup=warm, risk=RiskRules())
    assert res.targets.tolist() == [0.004, 0.0, 1.0, 1.0]
    assert res.qty[:2].tolist() == [1.0, 0.0] and res.qty[2] > 0
    assert res.params == {"risk_forced": {"stop": 0, "daily_loss": 0}}


def test_rules_from_a_manifest_or_anything_without_provenance() -> None:
    assert manifest_risk_rules(object()) is None  # no provenance attribute at all
    assert manifest_risk_rules(SimpleNamespace(provenance="")) is None
    assert manifest_risk_rules(SimpleNamespace(provenance=None)) is None
    assert manifest_risk_rules(SimpleNamespace(provenance="not json")) is None
    assert manifest_risk_rules(SimpleNamespace(provenance="[1, 2]")) is None
    flag = '{"train_config": {"env_risk_rules": true}}'
    assert manifest_risk_rules(SimpleNamespace(provenance=flag)) == RiskRules()
    recorded = '{"env_risk_rules": {"max_daily_loss": 250.0, "stop_loss": false}}'
    assert manifest_risk_rules(SimpleNamespace(provenance=recorded)) == RiskRules(
        max_daily_loss=250.0, stop_loss=False
    )
