"""Sizing and limits (execution/risk.py) in isolation."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import numpy as np
import pytest
from execution.risk import (
    RateLimiter,
    RiskLimits,
    RiskManager,
    TradingSchedule,
    WilderATR,
    full_size,
    round_half_away,
    stop_distance,
    target_shares,
)

from shared.paper_config import PaperTradingConfig, TradingHours

pytestmark = pytest.mark.unit

NY = zoneinfo.ZoneInfo("America/New_York")


def ny_ns(y: int, m: int, d: int, hh: int, mm: int = 0) -> int:
    return int(dt.datetime(y, m, d, hh, mm, tzinfo=NY).timestamp() * 1e9)


def manager(**overrides: object) -> RiskManager:
    cfg = PaperTradingConfig(symbols=["AAPL"], **overrides)  # type: ignore[arg-type]
    schedule = TradingSchedule(cfg.trading_hours, cfg.weekday_numbers())
    return RiskManager(RiskLimits.from_config(cfg), schedule)


MONDAY_CLOSE = ny_ns(2024, 3, 4, 16)


def test_wilder_atr_matches_shared_features_ta_definition() -> None:
    features = pytest.importorskip("shared.features")
    rng = np.random.default_rng(7)
    close = 100 + np.cumsum(rng.normal(0, 1, 60))
    high = close + rng.uniform(0.1, 2, 60)
    low = close - rng.uniform(0.1, 2, 60)
    online = features.OnlineFeatures(features.FeatureConfig(atr_window=14))
    atr = WilderATR(14)
    for i in range(60):
        online.update(close[i], high[i], low[i], close[i], 1000.0)
        mine = atr.update(high[i], low[i], close[i])
        if online.atr is None:
            assert mine is None
        else:
            assert mine == pytest.approx(online.atr, rel=1e-12)
    assert atr.value is not None


def test_wilder_atr_by_hand() -> None:
    atr = WilderATR(2)
    assert atr.update(11, 9, 10) is None  # tr = 2
    assert atr.update(12, 10, 11) == pytest.approx(2.0)  # tr = max(2, 2, 0) -> mean(2, 2)
    assert atr.update(15, 11, 14) == pytest.approx((2.0 * 1 + 4.0) / 2)  # tr = 4


def test_sizing_formula() -> None:
    assert round_half_away(2.5) == 3 and round_half_away(-2.5) == -3 and round_half_away(0.4) == 0
    assert stop_distance(100.0, 3.0, 2.0, 0.02) == 6.0
    assert stop_distance(100.0, None, 2.0, 0.02) == pytest.approx(2.0)
    # 1% of 100k = 1000 at risk, 6 per share -> 166 shares, capped by max_position
    assert full_size(100_000, 6.0, 0.01, 1000) == 166
    assert full_size(100_000, 6.0, 0.01, 100) == 100
    assert full_size(0, 6.0, 0.01, 100) == 0
    assert target_shares(0.5, 100_000, 6.0, 0.01, 1000) == 83
    assert target_shares(-1.0, 100_000, 6.0, 0.01, 1000) == -166
    assert target_shares(3.0, 100_000, 6.0, 0.01, 1000) == 166  # clipped to [-1, 1]


def test_trading_schedule_hours_days_and_holidays() -> None:
    s = TradingSchedule(TradingHours(), frozenset(range(5)))
    assert s.refusal(MONDAY_CLOSE) is None  # 16:00 inclusive: daily bars stamped at the close
    assert s.refusal(ny_ns(2024, 3, 4, 9, 30)) is None
    assert "trading hours" in (s.refusal(ny_ns(2024, 3, 4, 9, 29)) or "")
    assert "trading hours" in (s.refusal(ny_ns(2024, 3, 4, 16, 1)) or "")
    assert "trading days" in (s.refusal(ny_ns(2024, 3, 2, 12)) or "")  # Saturday
    assert "holiday" in (s.refusal(ny_ns(2024, 7, 4, 12)) or "")  # Independence Day
    assert s.refusal(ny_ns(1995, 7, 5, 12)) is None  # old history works (calendar from 1990)
    assert s.day(MONDAY_CLOSE) == "2024-03-04"
    no_calendar = TradingSchedule(TradingHours(calendar=""), frozenset(range(5)))
    assert no_calendar.refusal(ny_ns(2024, 7, 4, 12)) is None


def test_rate_limiter_sliding_window() -> None:
    rate = RateLimiter(2, 60.0)
    assert rate.allowed(0.0)
    rate.record(0.0)
    rate.record(10.0)
    assert not rate.allowed(59.0)
    assert rate.allowed(60.0)  # the first one left the window
    assert rate.count(61.0) == 1


def test_decide_happy_path_and_max_position() -> None:
    risk = manager(max_position=50)
    d = risk.decide(
        desired=80,
        position=0,
        working=0,
        price=100,
        other_exposure=0,
        bar_ts_ns=MONDAY_CLOSE,
        now=0.0,
    )
    assert (d.target, d.delta, d.refused) == (50, 50, "") and d.send
    assert any("max_position" in n for n in d.notes)
    d = risk.decide(
        desired=-50,
        position=50,
        working=0,
        price=100,
        other_exposure=0,
        bar_ts_ns=MONDAY_CLOSE,
        now=0.0,
    )
    assert d.delta == -100


def test_decide_counts_working_orders() -> None:
    risk = manager()
    d = risk.decide(
        desired=50,
        position=20,
        working=30,
        price=100,
        other_exposure=0,
        bar_ts_ns=MONDAY_CLOSE,
        now=0.0,
    )
    assert d.delta == 0 and not d.send and not d.refused


def test_decide_outside_hours_is_refused() -> None:
    d = manager().decide(
        desired=10,
        position=0,
        working=0,
        price=100,
        other_exposure=0,
        bar_ts_ns=ny_ns(2024, 3, 4, 20),
        now=0.0,
    )
    assert "outside trading hours" in d.refused and d.delta == 0


def test_decide_reduce_only() -> None:
    risk = manager(reduce_only=True)
    kw = {"working": 0, "price": 100, "other_exposure": 0, "bar_ts_ns": MONDAY_CLOSE, "now": 0.0}
    assert risk.decide(desired=50, position=0, **kw).delta == 0  # cannot open
    assert risk.decide(desired=80, position=50, **kw).delta == 0  # cannot add
    assert risk.decide(desired=20, position=50, **kw).delta == -30  # may reduce
    assert risk.decide(desired=-40, position=50, **kw).delta == -50  # flip -> only to flat


def test_decide_gross_exposure() -> None:
    risk = manager(max_gross_exposure=10_000, max_position=1000)
    kw = {"working": 0, "price": 100, "bar_ts_ns": MONDAY_CLOSE, "now": 0.0}
    d = risk.decide(desired=80, position=0, other_exposure=4_000, **kw)
    assert d.target == 60 and d.delta == 60  # 6000 left of 10000
    d = risk.decide(desired=80, position=70, other_exposure=4_000, **kw)
    assert d.target == 70 and d.delta == 0  # already above: keep, never forced to sell
    d = risk.decide(desired=30, position=70, other_exposure=4_000, **kw)
    assert d.delta == -40  # reducing is always fine


def test_decide_orders_per_minute() -> None:
    risk = manager(max_orders_per_minute=2)
    kw = {"position": 0, "working": 0, "price": 100, "other_exposure": 0, "bar_ts_ns": MONDAY_CLOSE}
    for t in (0.0, 1.0):
        assert risk.decide(desired=10, now=t, **kw).send
        risk.rate.record(t)
    d = risk.decide(desired=10, now=2.0, **kw)
    assert "max_orders_per_minute" in d.refused
    assert risk.decide(desired=10, now=61.0, **kw).send


def test_blocks_kill_daily_loss_dead_man_live() -> None:
    risk = manager(max_daily_loss=1000)
    kw = {
        "desired": 10,
        "position": 0,
        "working": 0,
        "price": 100,
        "other_exposure": 0,
        "bar_ts_ns": MONDAY_CLOSE,
        "now": 0.0,
    }
    risk.killed = True
    assert "kill switch" in risk.decide(**kw).refused
    risk.killed = False
    assert not risk.daily_loss_hit("2024-03-04", 100_000, 99_001)
    assert risk.daily_loss_hit("2024-03-04", 100_000, 99_000)
    assert not risk.daily_loss_hit("2024-03-04", 100_000, 98_000)  # reported once
    assert "max daily loss" in risk.decide(**kw).refused
    tuesday = {**kw, "bar_ts_ns": ny_ns(2024, 3, 5, 16)}
    assert risk.decide(**tuesday).send  # a new day trades again
    risk.dead_man = "no heartbeat from inference"
    assert "dead-man" in risk.decide(**tuesday).refused
    risk.dead_man = ""
    risk.live_refused = "live account"
    assert risk.decide(**tuesday).refused == "live account"


def test_rebalance_threshold_skips_tiny_resizes_but_not_exits_or_flips() -> None:
    risk = manager(rebalance_threshold=0.1, max_position=1000)
    kw = {
        "working": 0,
        "price": 100,
        "other_exposure": 0,
        "bar_ts_ns": MONDAY_CLOSE,
        "now": 0.0,
        "full": 500,
    }
    d = risk.decide(desired=499, position=500, **kw)
    assert d.delta == 0 and d.target == 500 and "rebalance_threshold" in d.notes[0]
    assert risk.decide(desired=440, position=500, **kw).delta == -60  # 60 >= 10% of 500
    assert risk.decide(desired=0, position=20, **kw).delta == -20  # going flat always trades
    assert risk.decide(desired=-10, position=20, **kw).delta == -30  # flipping always trades
    assert risk.decide(desired=10, position=0, **kw).delta == 10  # opening always trades
    desired, full = risk.sizing(0.5, 100_000, 100.0, None)
    assert (desired, full) == (250, 500)  # 1% of 100k over a 2% stop of 100
