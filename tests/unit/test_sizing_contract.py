"""shared.sizing: the one sizing rule (issue 14 item 7) against an independent implementation.

The oracle below is written from the rule's text (risk_per_trade of equity to a stop of
stop_atr_multiple x ATR, capped at max_position, rounded half away from zero, gross exposure and
rebalance threshold), with tolerances instead of shared.sizing's decimal snap, so a slip in
either shows up as a different share count.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.paper_config import PaperTradingConfig
from shared.sizing import (
    SizingConfig,
    WilderATR,
    atr_series,
    position_after,
    position_after_array,
    round_half_away,
)

pytestmark = pytest.mark.unit

EPS = 5e-10


def oracle_position(
    target: float, equity: float, price: float, atr: float | None, held: int, cfg: SizingConfig
) -> int:
    stop = cfg.stop_atr_multiple * atr if atr else cfg.fallback_stop_pct * price
    if equity <= 0 or stop <= 0:
        full = 0
    else:
        q = equity * cfg.risk_per_trade / stop
        full = math.floor(q)
        if q - full > 1 - EPS:  # 2499.9999999999995 means 2500
            full += 1
        full = min(full, cfg.max_position)
    frac = max(-1.0, min(1.0, target))
    magnitude = abs(frac * full)
    shares = math.floor(magnitude)
    if magnitude - shares >= 0.5 - EPS:
        shares += 1
    want = shares if frac >= 0 else -shares
    if abs(want) * price > cfg.max_gross_exposure:
        room = int(cfg.max_gross_exposure // price)
        if held != 0 and (want > 0) == (held > 0):
            room = max(room, abs(held))
        if abs(want) > room:
            want = room if want > 0 else -room
    same_side = want != 0 and held != 0 and (want > 0) == (held > 0)
    if want != held and same_side and abs(want - held) < cfg.rebalance_threshold * full:
        return held
    return want


configs = st.builds(
    SizingConfig,
    risk_per_trade=st.sampled_from([0.001, 0.005, 0.01, 0.02, 0.05]),
    max_position=st.integers(1, 5000),
    stop_atr_multiple=st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]),
    fallback_stop_pct=st.sampled_from([0.01, 0.02, 0.05]),
    rebalance_threshold=st.sampled_from([0.0, 0.05, 0.1, 0.25]),
    max_gross_exposure=st.sampled_from([5_000.0, 50_000.0, 100_000.0, 1e9]),
)
targets = st.integers(-120, 120).map(lambda k: k / 100)  # fractional and out-of-range targets
atrs = st.one_of(st.none(), st.integers(1, 2_000).map(lambda k: k / 100))


@settings(max_examples=400, deadline=None)
@given(
    cfg=configs,
    target=targets,
    equity=st.integers(1_000, 10_000_000).map(float),
    price=st.integers(100, 100_000).map(lambda k: k / 100),
    atr=atrs,
    held=st.integers(-3000, 3000),
)
def test_position_after_equals_an_independent_implementation(
    cfg: SizingConfig, target: float, equity: float, price: float, atr: float | None, held: int
) -> None:
    got = position_after(target, equity, price, atr, held, cfg)
    assert got == oracle_position(target, equity, price, atr, held, cfg)
    assert abs(got) <= max(cfg.max_position, abs(held))


@settings(max_examples=200, deadline=None)
@given(
    cfg=configs,
    rows=st.lists(
        st.tuples(
            targets,
            st.integers(1_000, 10_000_000).map(float),
            st.integers(100, 100_000).map(lambda k: k / 100),
            atrs,
            st.integers(-3000, 3000),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_array_version_equals_the_scalar_rule(cfg: SizingConfig, rows: list) -> None:
    tgt, eq, px, atr, held = zip(*rows, strict=True)
    atr_arr = np.array([np.nan if a is None else a for a in atr])
    got = position_after_array(
        np.array(tgt), np.array(eq), np.array(px), atr_arr, np.array(held, dtype=float), cfg
    )
    want = [position_after(*row, cfg) for row in rows]
    assert got.tolist() == [float(w) for w in want]


def test_worked_examples() -> None:
    cfg = SizingConfig(max_position=10_000, max_gross_exposure=1e9)
    # 100k x 1% / (2 x 1.2) = 416.67 -> 416 full; half of it 208
    assert position_after(1.0, 100_000, 50.0, 1.2, 0, cfg) == 416
    assert position_after(-0.5, 100_000, 50.0, 1.2, 0, cfg) == -208
    # before the ATR is warm: 2% of price is the stop: 1000 / 1.0 = 1000
    assert position_after(1.0, 100_000, 50.0, None, 0, cfg) == 1000
    # 0.29 x 50 is 14.5 (not float noise 14.4999...) and rounds away from zero
    small = SizingConfig(max_position=50, max_gross_exposure=1e9)
    assert position_after(0.29, 100_000, 50.0, 1.0, 0, small) == 15
    assert position_after(-0.29, 100_000, 50.0, 1.0, 0, small) == -15
    assert round_half_away(-0.5) == -1
    # the cap, the gross limit, and the threshold (10 % of 416 = 41.6 shares)
    assert position_after(1.0, 1e7, 50.0, 1.2, 0, SizingConfig()) == 100
    assert position_after(1.0, 100_000, 50.0, 1.2, 0, SizingConfig(max_gross_exposure=5000)) == 100
    assert position_after(1.0, 100_000, 50.0, 1.2, 380, cfg) == 380
    assert position_after(1.0, 100_000, 50.0, 1.2, 370, cfg) == 416
    assert position_after(0.0, 100_000, 50.0, 1.2, 5, cfg) == 0  # flat always trades
    assert position_after(-1.0, 100_000, 50.0, 1.2, 400, cfg) == -416  # a flip always trades


def test_config_from_the_paper_config_and_errors_name_the_key() -> None:
    paper = PaperTradingConfig(
        symbols=["AAPL"],
        risk_per_trade=0.02,
        max_position=7,
        stop_atr_multiple=3.0,
        fallback_stop_pct=0.05,
        atr_period=10,
        rebalance_threshold=0.2,
        max_gross_exposure=1234.0,
    )
    cfg = SizingConfig.from_paper_config(paper)
    assert cfg == SizingConfig(
        risk_per_trade=0.02,
        max_position=7,
        stop_atr_multiple=3.0,
        fallback_stop_pct=0.05,
        atr_period=10,
        rebalance_threshold=0.2,
        max_gross_exposure=1234.0,
    )
    default = PaperTradingConfig(symbols=["AAPL"])
    assert SizingConfig.from_paper_config(default) == SizingConfig()
    with pytest.raises(ValueError, match="risk_per_trade"):
        SizingConfig(risk_per_trade=0.5)
    with pytest.raises(ValueError, match="max_position"):
        SizingConfig(max_position=0)


def test_atr_series_is_the_online_atr_bar_by_bar() -> None:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    high, low = close * 1.01, close * 0.985
    series = atr_series(high, low, close, 5)
    online = WilderATR(5)
    for i in range(60):
        value = online.update(high[i], low[i], close[i])
        if value is None:
            assert math.isnan(series[i])
        else:
            assert series[i] == value
    assert np.isnan(series[:4]).all() and np.isfinite(series[4:]).all()
