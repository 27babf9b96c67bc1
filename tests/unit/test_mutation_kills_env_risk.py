"""Kill surviving mutants of shared/env_risk.py (issue 17): the rule arithmetic the training env
and the backtester share (execution's bracket stop price, the stop trigger, the trading day, the
daily-loss baseline and halt), every expected number worked out here by hand.

The default sizing stops 2 ATR from the close, or 2 % of it when the ATR is missing or zero.
"""

from __future__ import annotations

import datetime as dt
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from shared.env_risk import (
    RiskRules,
    RiskState,
    day_ids,
    stop_level,
    stop_levels,
    stop_triggered,
)
from shared.sizing import SizingConfig

pytestmark = pytest.mark.unit

SIZING = SizingConfig()  # stop_atr_multiple 2.0, fallback_stop_pct 0.02
EPOCH = dt.date(1970, 1, 1)


def days_since_epoch(year: int, month: int, day: int) -> int:
    return (dt.date(year, month, day) - EPOCH).days


# ------------------------------------------------------------------------------- RiskRules
def test_rules_default_to_every_rule_on_with_the_paper_configs_numbers() -> None:
    rules = RiskRules()
    assert rules.stop_loss is True and rules.daily_loss_halt is True
    assert rules.max_daily_loss == 5_000.0 and rules.day_tz == "America/New_York"


def test_rules_refuse_a_negative_or_non_finite_loss_limit_and_name_the_key() -> None:
    with pytest.raises(ValueError) as err:
        RiskRules(max_daily_loss=-0.5)
    assert str(err.value) == "max_daily_loss: must be a finite amount >= 0, got -0.5"
    for bad in (math.inf, math.nan):
        with pytest.raises(ValueError, match=r"^max_daily_loss: "):
            RiskRules(max_daily_loss=bad)
    assert RiskRules(max_daily_loss=0.0).max_daily_loss == 0.0  # zero is a limit, not an error


def test_rules_from_a_paper_config_keep_both_rules_on() -> None:
    paper = SimpleNamespace(max_daily_loss=750.0, trading_hours=SimpleNamespace(tz="Asia/Tokyo"))
    rules = RiskRules.from_paper_config(paper)
    assert rules == RiskRules(
        stop_loss=True, daily_loss_halt=True, max_daily_loss=750.0, day_tz="Asia/Tokyo"
    )


# ------------------------------------------------------------------------------- day_ids
def test_day_ids_are_the_local_date_of_the_close_in_the_trading_timezone() -> None:
    # 03:30 UTC on 2024-03-12 is 23:30 EDT on 2024-03-11; 14:00 UTC is 10:00 EDT, 2024-03-12
    utc = pd.DatetimeIndex(["2024-03-12 03:30", "2024-03-12 14:00"], tz="UTC")
    got = day_ids(utc, "America/New_York")
    assert got.dtype == np.int64
    assert got.tolist() == [days_since_epoch(2024, 3, 11), days_since_epoch(2024, 3, 12)]
    # a naive index is UTC: the same days
    assert day_ids(utc.tz_localize(None), "America/New_York").tolist() == got.tolist()
    # Tokyo is UTC+9: 03:30 UTC is 12:30 on the 12th, 16:00 UTC is 01:00 on the 13th
    tokyo = day_ids(pd.DatetimeIndex(["2024-03-12 03:30", "2024-03-12 16:00"]), "Asia/Tokyo")
    assert tokyo.tolist() == [days_since_epoch(2024, 3, 12), days_since_epoch(2024, 3, 13)]


def test_day_ids_of_an_index_in_seconds_and_of_an_aware_non_utc_index() -> None:
    secs = pd.DatetimeIndex(["2021-07-01 20:00", "2021-07-02 05:00"]).as_unit("s")
    assert day_ids(secs, "America/New_York").tolist() == [
        days_since_epoch(2021, 7, 1),
        days_since_epoch(2021, 7, 2),  # 01:00 EDT
    ]
    paris = pd.DatetimeIndex(["2021-07-02 01:30"], tz="Europe/Paris")  # 23:30 UTC on the 1st
    assert day_ids(paris, "UTC").tolist() == [days_since_epoch(2021, 7, 1)]


# ------------------------------------------------------------------------------- stop_level(s)
def test_stop_level_is_two_atr_from_the_close_on_the_positions_side() -> None:
    assert stop_level(1.0, 100.0, 1.5, SIZING) == 97.0
    assert stop_level(-1.0, 100.0, 1.5, SIZING) == 103.0
    # a fractional side counts only by its sign
    assert stop_level(0.25, 100.0, 1.5, SIZING) == 97.0
    assert stop_level(-0.25, 100.0, 1.5, SIZING) == 103.0
    # rounded to cents: 50.0 - 2 * 1.2345 = 47.531
    assert stop_level(3.0, 50.0, 1.2345, SIZING) == 47.53
    # another multiple: 3 ATR
    wide = SizingConfig(stop_atr_multiple=3.0, fallback_stop_pct=0.05)
    assert stop_level(1.0, 100.0, 1.5, wide) == 95.5


def test_stop_level_falls_back_to_a_percentage_without_an_atr() -> None:
    # 2 % of 80 = 1.6
    assert stop_level(1.0, 80.0, math.nan, SIZING) == 78.4
    assert stop_level(-1.0, 80.0, math.nan, SIZING) == 81.6
    assert stop_level(1.0, 80.0, math.inf, SIZING) == 78.4
    assert stop_level(1.0, 80.0, 0.0, SIZING) == 78.4
    five = SizingConfig(fallback_stop_pct=0.05)
    assert stop_level(-1.0, 80.0, math.nan, five) == 84.0


def test_stop_levels_row_by_row_with_nan_where_flat() -> None:
    side = np.array([0.0, 1.0, -2.0, 0.0, 0.5])
    close = np.array([10.0, 100.0, 100.0, 50.0, 80.0])
    atr = np.array([1.0, 1.5, 1.5, 1.0, np.nan])
    got = stop_levels(side, close, atr, SIZING)
    assert len(got) == 5
    assert np.isnan(got[0]) and np.isnan(got[3])
    assert got[[1, 2, 4]].tolist() == [97.0, 103.0, 78.4]


# ------------------------------------------------------------------------------- stop_triggered
def test_a_stop_triggers_at_or_through_the_level_on_the_positions_side_only() -> None:
    assert stop_triggered(10.0, 97.0, 97.0) is True  # a long at its stop
    assert stop_triggered(10.0, 97.0, 96.99) is True
    assert stop_triggered(10.0, 97.0, 97.01) is False
    assert stop_triggered(-10.0, 103.0, 103.0) is True  # a short at its stop
    assert stop_triggered(-10.0, 103.0, 103.01) is True
    assert stop_triggered(-10.0, 103.0, 102.99) is False
    assert stop_triggered(0.0, 97.0, 90.0) is False  # flat: nothing to stop
    assert stop_triggered(0.0, 103.0, 110.0) is False
    assert stop_triggered(10.0, math.nan, 1.0) is False  # no stop
    assert stop_triggered(-10.0, math.nan, 1e9) is False


# ------------------------------------------------------------------------------- RiskState
def test_a_new_state_has_no_stop_no_halt_and_the_equity_as_its_baseline() -> None:
    state = RiskState(7, 100_000.0)
    assert math.isnan(state.stop)
    assert (state.day, state.day_start_equity, state.last_equity) == (7, 100_000.0, 100_000.0)
    assert state.halted_day is None


def test_the_halt_fires_at_exactly_the_limit_and_holds_for_the_rest_of_the_day() -> None:
    state = RiskState(1, 10_000.0)
    assert state.observe(1, 9_000.01, 1_000.0) is False  # 999.99 down
    assert (state.last_equity, state.halted_day) == (9_000.01, None)
    assert state.observe(1, 9_000.0, 1_000.0) is True  # exactly 1000 down: halted
    assert state.halted_day == 1
    assert state.observe(1, 9_800.0, 1_000.0) is True  # recovered: still halted that day
    assert state.day_start_equity == 10_000.0  # the same day keeps its baseline


def test_a_new_day_starts_from_the_last_marked_equity_and_lifts_the_halt() -> None:
    state = RiskState(1, 10_000.0)
    assert state.observe(1, 8_500.0, 1_000.0) is True
    assert state.observe(1, 8_700.0, 1_000.0) is True
    # day 2: the baseline is 8700 (the last close of day 1), not 10 000 nor 8500
    assert state.observe(2, 7_800.0, 1_000.0) is False  # 900 below 8700
    assert (state.day, state.day_start_equity, state.halted_day) == (2, 8_700.0, 1)
    assert state.observe(2, 7_700.0, 1_000.0) is True  # 1000 below 8700
    assert state.halted_day == 2
    # day 3 starts from 7700, and a gain is never a loss
    assert state.observe(3, 9_000.0, 1_000.0) is False
    assert state.day_start_equity == 7_700.0


def test_a_zero_limit_halts_at_any_equity_at_or_below_the_baseline() -> None:
    state = RiskState(4, 500.0)
    assert state.observe(4, 500.01, 0.0) is False
    assert state.observe(4, 500.0, 0.0) is True


def test_the_first_observation_of_the_starting_day_keeps_the_initial_baseline() -> None:
    state = RiskState(5, 1_000.0)
    state.last_equity = 400.0  # what a mark on another day would leave
    assert state.observe(5, 450.0, 100.0) is True  # 550 below the start baseline of 1000
    assert state.day_start_equity == 1_000.0


def test_after_fill_sets_the_stop_on_an_open_or_flip_keeps_it_on_a_resize_drops_it_flat() -> None:
    state = RiskState(0, 1.0)
    state.after_fill(0.0, 10.0, 100.0, 1.5, SIZING)  # opened long
    assert state.stop == 97.0
    state.after_fill(10.0, 20.0, 120.0, 5.0, SIZING)  # added: the stop stays
    assert state.stop == 97.0
    state.after_fill(20.0, 5.0, 90.0, 5.0, SIZING)  # trimmed: the stop stays
    assert state.stop == 97.0
    state.after_fill(5.0, -5.0, 110.0, 2.0, SIZING)  # flipped short: 110 + 4
    assert state.stop == 114.0
    state.after_fill(-5.0, -8.0, 100.0, 2.0, SIZING)  # added short: stays
    assert state.stop == 114.0
    state.after_fill(-8.0, 3.0, 50.0, 1.0, SIZING)  # flipped long: 50 - 2
    assert state.stop == 48.0
    state.after_fill(3.0, 0.0, 60.0, 1.0, SIZING)  # flat: no stop
    assert math.isnan(state.stop)
    state.after_fill(0.0, -1.0, 60.0, math.nan, SIZING)  # opened short without an ATR: 2 %
    assert state.stop == 61.2


def test_a_one_share_or_fractional_long_is_stopped_like_any_long() -> None:
    assert stop_triggered(1.0, 97.0, 96.5) is True
    assert stop_triggered(0.5, 97.0, 97.0) is True
    assert stop_triggered(1.0, 97.0, 97.5) is False


def test_a_flip_from_or_to_one_share_sets_the_new_sides_stop() -> None:
    state = RiskState(0, 1.0)
    state.after_fill(0.0, 1.0, 100.0, 1.5, SIZING)  # one share long: 100 - 3
    assert state.stop == 97.0
    state.after_fill(1.0, -1.0, 100.0, 1.5, SIZING)  # flipped to one share short: 100 + 3
    assert state.stop == 103.0
    state.after_fill(-1.0, 1.0, 50.0, 1.0, SIZING)  # and back to one share long: 50 - 2
    assert state.stop == 48.0
    state.after_fill(1.0, 2.0, 70.0, 1.0, SIZING)  # one share added: the stop stays
    assert state.stop == 48.0
