"""execution.risk: tests written against mutants that survived the first mutmut run (issue 17).

Expectations follow the module docstring's rules (Wilder ATR with ``ta``'s seeding, sizing
``floor(equity * risk / stop)``, the order in which limits apply, inclusive session bounds) and are
computed by hand here, never with the functions under test.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo

import pytest
from execution.risk import (
    RateLimiter,
    RiskLimits,
    RiskManager,
    TradingHours,
    TradingSchedule,
    WilderATR,
    full_size,
    stop_distance,
    target_fraction,
)

from shared.paper_config import PaperTradingConfig
from shared.validate import MAX_PRICE

pytestmark = pytest.mark.unit

NY = zoneinfo.ZoneInfo("America/New_York")


def ns(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=NY).timestamp() * 1e9)  # type: ignore[misc]


MONDAY_CLOSE = ns(2024, 3, 4, 16)


def manager(**paper: object) -> RiskManager:
    paper.setdefault("max_position", 1000)
    paper.setdefault("max_gross_exposure", 10_000_000.0)
    paper.setdefault("rebalance_threshold", 0.0)
    cfg = PaperTradingConfig(symbols=["AAPL"], **paper)  # type: ignore[arg-type]
    hours = TradingHours(start="09:30", end="16:00", tz="America/New_York", calendar="")
    return RiskManager(RiskLimits.from_config(cfg), TradingSchedule(hours, cfg.weekday_numbers()))


def decide(rm: RiskManager, desired: int, position: float = 0.0, **kw: object):
    args = dict(
        desired=desired,
        position=position,
        working=0.0,
        price=100.0,
        other_exposure=0.0,
        bar_ts_ns=MONDAY_CLOSE,
        now=0.0,
        full=250,
    )
    args.update(kw)
    return rm.decide(**args)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- ATR
def test_atr_default_period_is_fourteen_and_one_is_allowed() -> None:
    assert WilderATR().period == 14
    atr = WilderATR(1)
    assert atr.update(11.0, 10.0, 10.5) == 1.0  # period 1: the ATR is the bar's true range
    with pytest.raises(ValueError, match=r"^period: must be >= 1$"):
        WilderATR(0)


def test_atr_second_bar_counts_the_gap_from_the_previous_close() -> None:
    atr = WilderATR(2)
    atr.update(10.0, 9.0, 9.5)  # TR 1
    # gap up: TR = max(12 - 11, |12 - 9.5|, |11 - 9.5|) = 2.5; seed = mean(1, 2.5)
    assert atr.update(12.0, 11.0, 11.5) == pytest.approx(1.75)


@pytest.mark.parametrize(
    "bar",
    [(10.0, -1.0, 5.0), (10.0, 0.0, 5.0), (MAX_PRICE * 2, 1.0, 5.0), (math.inf, 1.0, 2.0)],
)
def test_atr_ignores_bars_with_prices_out_of_range(bar: tuple[float, float, float]) -> None:
    atr = WilderATR(1)
    assert atr.update(*bar) is None and atr.bars_seen == 0


def test_atr_accepts_sub_dollar_flat_and_max_price_bars() -> None:
    atr = WilderATR(1)
    assert atr.update(0.6, 0.4, 0.5) == pytest.approx(0.2)
    assert atr.update(0.5, 0.5, 0.5) == 0.0  # a flat bar at the previous close: TR 0
    top = WilderATR(1)
    assert top.update(MAX_PRICE, MAX_PRICE, MAX_PRICE) == 0.0


# ------------------------------------------------------------------------- sizing
def test_a_zero_atr_falls_back_to_the_percentage_stop() -> None:
    assert stop_distance(100.0, 0.0, 2.0, 0.02) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("equity", "stop"),
    [
        (math.nan, 1.0),
        (math.inf, 1.0),
        (1e5, math.nan),
        (1e5, math.inf),
        (-1e5, 1.0),
        (1e5, 0.0),
        (1e5, -1.0),
    ],
)
def test_full_size_of_broken_numbers_is_zero(equity: float, stop: float) -> None:
    assert full_size(equity, stop, 0.01, 1000) == 0


def test_full_size_with_small_equity() -> None:
    assert full_size(0.75, 0.125, 0.5, 1000) == 3  # 0.375 / 0.125, exact in binary


def test_non_finite_target_error_says_why() -> None:
    with pytest.raises(ValueError, match="must be finite"):
        target_fraction(math.nan)


def test_limits_come_from_the_config() -> None:
    cfg = PaperTradingConfig(
        symbols=["AAPL"], stop_atr_multiple=3.5, fallback_stop_pct=0.03, risk_per_trade=0.02
    )
    lim = RiskLimits.from_config(cfg)
    assert (lim.stop_atr_multiple, lim.fallback_stop_pct, lim.risk_per_trade) == (3.5, 0.03, 0.02)


# ------------------------------------------------------------------------- schedule
def schedule() -> TradingSchedule:
    hours = TradingHours(start="09:30", end="16:00", tz="America/New_York", calendar="")
    return TradingSchedule(hours, frozenset({0, 1, 2, 3, 4}))


def test_weekend_refusal_names_the_local_time_and_day() -> None:
    assert schedule().refusal(ns(2024, 3, 3, 16)) == (
        "outside trading days: 2024-03-03 16:00 EST is a Sun"
    )


@pytest.mark.parametrize(
    ("when", "inside"),
    [
        ((2024, 3, 4, 16, 0, 0), True),  # both ends inclusive
        ((2024, 3, 4, 16, 0, 30), False),
        ((2024, 3, 4, 16, 0, 0, 500_000), False),
        ((2024, 3, 4, 15, 59, 30), True),
        ((2024, 3, 4, 15, 59, 0, 1), True),
        ((2024, 3, 4, 9, 30, 30), True),
        ((2024, 3, 4, 9, 29, 59), False),
    ],
)
def test_session_bounds_to_the_microsecond(when: tuple[int, ...], inside: bool) -> None:
    refusal = schedule().refusal(ns(*when))
    assert (refusal is None) == inside, refusal
    if not inside:
        assert refusal is not None and refusal.startswith("outside trading hours 09:30-16:00: ")


def test_hours_refusal_names_the_local_time_with_its_zone() -> None:
    # 2024-03-04 (a Monday) 16:00:30 New York is 30 s past the close, EST (before the DST switch)
    assert schedule().refusal(ns(2024, 3, 4, 16, 0, 30)) == (
        "outside trading hours 09:30-16:00: 2024-03-04 16:00 EST"
    )
    # after the DST switch (2024-03-10) the zone reads EDT
    assert schedule().refusal(ns(2024, 3, 11, 8, 15)) == (
        "outside trading hours 09:30-16:00: 2024-03-11 08:15 EDT"
    )


def test_local_time_of_the_epoch_itself() -> None:
    # ts 0 is 1970-01-01 00:00 UTC = 1969-12-31 19:00 in New York (EST, UTC-5); the first call,
    # and again from the one-entry cache
    s = schedule()
    for _ in range(2):
        when = s.local(0)
        assert when is not None
        assert (when.year, when.month, when.day, when.hour, when.minute) == (1969, 12, 31, 19, 0)
        assert when.utcoffset() == dt.timedelta(hours=-5)


# ------------------------------------------------------------------------- rate limiter
def test_rate_window_is_sixty_seconds() -> None:
    rl = RateLimiter(1)
    rl.record(0.0)
    assert not rl.allowed(59.9)
    assert rl.allowed(60.0)


def test_rate_limiter_on_the_wall_clock() -> None:
    rl = RateLimiter(2)
    rl.record()
    assert rl.allowed()
    assert rl.count() == 1


# ------------------------------------------------------------------------- decide
def test_a_block_keeps_the_position_and_sends_nothing() -> None:
    rm = manager()
    rm.killed = True
    d = decide(rm, 250, position=37.0)
    assert (d.target, d.delta) == (37, 0) and d.refused


def test_outside_hours_keeps_the_position_and_sends_nothing() -> None:
    d = decide(manager(), 250, position=37.0, bar_ts_ns=ns(2024, 3, 4, 17))
    assert (d.target, d.delta) == (37, 0) and d.refused.startswith("outside trading hours")


def test_a_target_at_the_cap_is_not_clipped() -> None:
    d = decide(manager(max_position=250), 250)
    assert (d.target, d.delta, d.notes) == (250, 250, ())


def test_on_target_after_a_clip_keeps_the_note() -> None:
    d = decide(manager(max_position=100), 250, position=100.0)
    assert (d.target, d.delta, d.notes) == (100, 0, ("max_position 100",))


@pytest.mark.parametrize(
    ("position", "desired", "target"),
    [(1.0, 5, 1), (-5.0, 1, 0), (1.0, -3, 0), (-5.0, -2, -2)],
)
def test_reduce_only_moves_only_toward_zero(position: float, desired: int, target: int) -> None:
    rm = manager(reduce_only=True)
    d = decide(rm, desired, position=position)
    assert d.target == target
    assert d.notes == (("reduce_only",) if target != desired else ())


def test_exposure_check_is_skipped_without_a_price() -> None:
    d = decide(manager(max_gross_exposure=50.0), 5, price=0.0, other_exposure=100.0)
    assert (d.target, d.notes) == (5, ())


def test_exposure_limit_keeps_a_held_share_and_names_the_limit() -> None:
    d = decide(manager(max_gross_exposure=50.0), 5, position=1.0)
    assert (d.target, d.delta) == (1, 0)
    assert d.notes == ("max_gross_exposure 50",)


def test_exposure_limit_does_not_note_a_held_position_it_keeps() -> None:
    d = decide(manager(max_gross_exposure=5000.0), 100, position=100.0)
    assert (d.target, d.delta, d.notes) == (100, 0, ())


def test_a_one_share_change_is_sent() -> None:
    d = decide(manager(), 250, position=249.0)
    assert (d.target, d.delta) == (250, 1)


def test_rebalance_counts_working_orders_as_held() -> None:
    """Held 100 + working 100 = 200; target 205: 5 < 0.1 * 250 -> nothing to do."""
    d = decide(manager(rebalance_threshold=0.1), 205, position=100.0, working=100.0)
    assert (d.target, d.delta) == (200, 0)


@pytest.mark.parametrize(("held", "target"), [(2.0, 1), (1.0, 2)])
def test_rebalance_with_one_share_positions(held: float, target: int) -> None:
    d = decide(manager(rebalance_threshold=0.5), target, position=held, full=10)
    assert (d.target, d.delta) == (int(held), 0)
    assert d.notes == ("rebalance_threshold 0.5",)


def test_a_change_of_exactly_the_threshold_is_sent() -> None:
    d = decide(manager(rebalance_threshold=0.1), 250, position=225.0, full=250)
    assert (d.target, d.delta) == (250, 25)


def test_rate_refusal_keeps_target_and_notes_and_sends_nothing() -> None:
    rm = manager(max_orders_per_minute=1, max_position=200)
    rm.rate.record(0.0)
    d = decide(rm, 250, now=1.0)
    assert (d.target, d.delta, d.notes) == (200, 0, ("max_position 200",))
    assert d.refused == "max_orders_per_minute 1 reached"


# ------------------------------------------------------------------------- daily loss
@pytest.mark.parametrize(
    ("start", "equity"),
    [(math.nan, 1.0), (math.inf, 1.0), (1e5, -math.inf), (0.0, -1000.0)],
)
def test_broken_equity_is_no_evidence_of_a_loss(start: float, equity: float) -> None:
    rm = manager(max_daily_loss=500.0)
    assert rm.daily_loss_hit("2024-03-04", start, equity) is False
    assert rm.halted_day != "2024-03-04"


def test_a_small_positive_start_can_hit_the_loss() -> None:
    rm = manager(max_daily_loss=500.0)
    assert rm.daily_loss_hit("2024-03-04", 0.5, -600.0) is True
