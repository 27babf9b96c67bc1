"""shared.sizing: tests written against mutants that survived its first mutmut run (issue 17).

Every expected share count is worked out by hand from the module docstring's rule (stop =
stop_atr_multiple x ATR, or fallback_stop_pct x price before the ATR is warm; full size =
min(max_position, floor(equity x risk_per_trade / stop)) after a 9-decimal snap; target rounded
half away from zero; the gross-exposure clip; the rebalance threshold), never with the functions
under test. The array versions get the edge rows the scalar-parity hypothesis test does not draw
(ATR 0 / inf / negative, non-finite or non-positive equity and price, prices under 1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.sizing import (
    SizingConfig,
    WilderATR,
    atr_series,
    clip_to_gross_exposure,
    full_size,
    full_size_array,
    position_after_array,
    stop_distance,
    target_fraction,
    within_rebalance_threshold,
)
from shared.validate import MAX_PRICE

pytestmark = pytest.mark.unit

NAN = math.nan
INF = math.inf


def full_rows(cfg: SizingConfig, rows: list[tuple[float, float, float]]) -> list[float]:
    """full_size_array over (equity, price, atr) rows."""
    equity, price, atr = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    return full_size_array(equity, price, atr, cfg).tolist()


def position_row(
    cfg: SizingConfig, target: float, equity: float, price: float, atr: float, held: float
) -> float:
    """position_after_array for one account."""
    out = position_after_array(
        np.array([target]),
        np.array([equity]),
        np.array([price]),
        np.array([atr]),
        np.array([held]),
        cfg,
    )
    return float(out[0])


def test_full_size_array_falls_back_to_the_price_stop_unless_the_atr_is_finite_and_positive() -> (
    None
):
    cfg = SizingConfig(max_position=5000)
    # fallback stop 2 % x 50 = 1.0: 100_000 x 1 % / 1.0 = 1000 shares, whatever the bad ATR is
    assert full_rows(cfg, [(100_000.0, 50.0, a) for a in (0.0, INF, -1.0, NAN)]) == [1000.0] * 4
    # a warm ATR of 1.25: stop 2.5, 1000 / 2.5 = 400
    assert full_rows(cfg, [(100_000.0, 50.0, 1.25)]) == [400.0]


def test_full_size_array_is_zero_for_non_finite_or_non_positive_equity_and_stop() -> None:
    cfg = SizingConfig(max_position=5000)
    rows = [
        (NAN, 50.0, 1.0),  # equity unknown
        (INF, 50.0, 1.0),  # would be max_position if let through
        (0.0, 50.0, 1.0),
        (-1000.0, 50.0, 1.0),
        (100_000.0, NAN, NAN),  # no price, no ATR: no stop
        (100_000.0, 0.0, NAN),  # a zero stop would divide to infinity
        (100_000.0, INF, NAN),  # an infinite stop
    ]
    assert full_rows(cfg, rows) == [0.0] * len(rows)


def test_full_size_array_sizes_an_equity_under_one_dollar() -> None:
    # 1.0 x 1 % / (1 x 0.0001) = 100 shares: a small equity is still an equity
    cfg = SizingConfig(max_position=5000, stop_atr_multiple=1.0)
    assert full_rows(cfg, [(1.0, 50.0, 0.0001)]) == [100.0]
    assert full_rows(cfg, [(0.5, 50.0, 0.0001)]) == [50.0]


def test_full_size_array_snaps_float_noise_to_nine_decimals() -> None:
    # 9999.99999998 x 1 % / 1.0 = 99.9999999998: 2e-10 from 100, inside the 9-decimal snap
    cfg = SizingConfig(max_position=5000)
    assert full_rows(cfg, [(9999.99999998, 50.0, NAN)]) == [100.0]
    # 1e-8 short of 100 is a real shortfall: 99
    assert full_rows(cfg, [(9999.999999, 50.0, NAN)]) == [99.0]


def test_position_after_array_rounds_the_snapped_half_away_from_zero() -> None:
    # full size: 100_000 x 1 % / (2 x 1.0) = 500, capped at 50; 0.29 x 50 = 14.5 -> 15
    cfg = SizingConfig(max_position=50)
    assert position_row(cfg, 0.29, 100_000.0, 50.0, 1.0, 0.0) == 15.0
    assert position_row(cfg, -0.29, 100_000.0, 50.0, 1.0, 0.0) == -15.0
    # 0.289999999996 x 50 = 14.4999999998, 14.5 after the 9-decimal snap -> 15
    assert position_row(cfg, 0.289999999996, 100_000.0, 50.0, 1.0, 0.0) == 15.0
    # 0.28 x 50 = 14.0 exactly; 0.27 x 50 = 13.5 -> 14 (away from zero, not to even)
    assert position_row(cfg, 0.28, 100_000.0, 50.0, 1.0, 0.0) == 14.0
    assert position_row(cfg, -0.27, 100_000.0, 50.0, 1.0, 0.0) == -14.0


def test_position_after_array_gross_clip_at_a_price_under_one() -> None:
    # stop 2 % x 0.5 = 0.01: 100_000 x 1 % / 0.01 = 100_000, capped at 100 shares; 100 x 0.5 =
    # 50 > 10 of gross exposure: room floor(10 / 0.5) = 20 shares
    cfg = SizingConfig(max_position=100, max_gross_exposure=10.0)
    assert position_row(cfg, 1.0, 100_000.0, 0.5, NAN, 0.0) == 20.0
    assert position_row(cfg, -1.0, 100_000.0, 0.5, NAN, 0.0) == -20.0


def test_position_after_array_no_room_at_all_is_flat() -> None:
    # stop 2 % x 20 = 0.4: 1000 x 1 % / 0.4 = 25 shares; 25 x 20 = 500 > 10; room floor(10/20) = 0
    cfg = SizingConfig(max_position=100, max_gross_exposure=10.0)
    assert position_row(cfg, 1.0, 1000.0, 20.0, NAN, 0.0) == 0.0
    assert position_row(cfg, -1.0, 1000.0, 20.0, NAN, 0.0) == 0.0


def test_position_after_array_keeps_one_share_held_on_the_same_side() -> None:
    # as above (room 0), but one share is held long: the clip never forces a same-side position
    # smaller, so the target is 1 share = held (no trade); a short target is not same-side: flat
    cfg = SizingConfig(max_position=100, max_gross_exposure=10.0)
    assert position_row(cfg, 1.0, 1000.0, 20.0, NAN, 1.0) == 1.0
    assert position_row(cfg, -1.0, 1000.0, 20.0, NAN, -1.0) == -1.0
    assert position_row(cfg, -1.0, 1000.0, 20.0, NAN, 1.0) == 0.0


def test_position_after_array_one_share_target_under_a_larger_same_side_holding() -> None:
    # 40 x 1 % / (2 % x 20 = 0.4) = 1 share full size; 1 x 20 = 20 > 10: room 0, but 5 are held
    # long: allowed max(0, 5) = 5, the 1-share target stands; threshold 0 -> it trades to 1
    cfg = SizingConfig(max_position=100, max_gross_exposure=10.0, rebalance_threshold=0.0)
    assert position_row(cfg, 1.0, 40.0, 20.0, NAN, 5.0) == 1.0
    assert position_row(cfg, -1.0, 40.0, 20.0, NAN, -5.0) == -1.0


def test_position_after_array_flat_is_positive_zero() -> None:
    # -0.001 x 50 = -0.05 rounds to zero shares: +0.0, never -0.0 (a sign a caller could read)
    cfg = SizingConfig(max_position=50)
    out = position_row(cfg, -0.001, 100_000.0, 50.0, 1.0, 0.0)
    assert out == 0.0 and math.copysign(1.0, out) == 1.0


def test_position_after_array_rebalance_threshold_one_share_and_exact_edge() -> None:
    # full 100 (100_000 x 1 % / (2 x 5.0)); 0.01 x 100 = 1 share vs 5 held long: |1 - 5| = 4 <
    # 10 % x 100 = 10, same side: not traded, 5 stay
    cfg = SizingConfig(max_position=1000)
    assert position_row(cfg, 0.01, 100_000.0, 50.0, 5.0, 5.0) == 5.0
    # full 50 (cap): 0.9 x 50 = 45 vs 40 held: |45 - 40| = 5 is not < 10 % x 50 = 5: traded
    capped = SizingConfig(max_position=50)
    assert position_row(capped, 0.9, 100_000.0, 50.0, 1.0, 40.0) == 45.0
    assert position_row(capped, 0.9, 100_000.0, 50.0, 1.0, 41.0) == 41.0  # 4 < 5: kept


# ------------------------------------------------------------------------------ SizingConfig

ACCEPTED = [
    ("risk_per_trade", 0.2),
    ("risk_per_trade", 1e-9),
    ("max_position", 10**9),
    ("max_position", 1),
    ("stop_atr_multiple", 100.0),
    ("stop_atr_multiple", 1e-9),
    ("fallback_stop_pct", 0.999),
    ("fallback_stop_pct", 1e-9),
    ("atr_period", 1),
    ("atr_period", 1000),
    ("rebalance_threshold", 0.0),
    ("rebalance_threshold", 0.999),
    ("max_gross_exposure", 1e12),
    ("max_gross_exposure", 0.5),
]


@pytest.mark.parametrize(("key", "value"), ACCEPTED)
def test_sizing_config_accepts_its_bounds(key: str, value: float) -> None:
    assert getattr(SizingConfig(**{key: value}), key) == value


REFUSED = [
    ("risk_per_trade", 0.0, "must be a fraction of equity in (0, 0.2], got 0.0"),
    ("risk_per_trade", 0.2000001, "must be a fraction of equity in (0, 0.2], got 0.2000001"),
    ("risk_per_trade", math.inf, "must be a fraction of equity in (0, 0.2], got inf"),
    ("max_position", 0, "must be in 1..1e9 shares"),
    ("max_position", 10**9 + 1, "must be in 1..1e9 shares"),
    ("stop_atr_multiple", 0.0, "must be in (0, 100], got 0.0"),
    ("stop_atr_multiple", 100.5, "must be in (0, 100], got 100.5"),
    ("stop_atr_multiple", 200.0, "must be in (0, 100], got 200.0"),
    ("stop_atr_multiple", math.nan, "must be in (0, 100], got nan"),
    ("fallback_stop_pct", 0.0, "must be in (0, 1)"),
    ("fallback_stop_pct", 1.0, "must be in (0, 1)"),
    ("fallback_stop_pct", 1.5, "must be in (0, 1)"),
    ("atr_period", 0, "must be in 1..1000"),
    ("atr_period", 1001, "must be in 1..1000"),
    ("rebalance_threshold", -0.1, "must be in [0, 1)"),
    ("rebalance_threshold", 1.0, "must be in [0, 1)"),
    ("rebalance_threshold", 1.5, "must be in [0, 1)"),
    ("max_gross_exposure", 0.0, "must be in (0, 1e12], got 0.0"),
    ("max_gross_exposure", 1e12 + 1, "must be in (0, 1e12], got 1000000000001.0"),
    ("max_gross_exposure", 2e12, "must be in (0, 1e12], got 2000000000000.0"),
    ("max_gross_exposure", math.inf, "must be in (0, 1e12], got inf"),
]


@pytest.mark.parametrize(("key", "value", "why"), REFUSED)
def test_sizing_config_refuses_out_of_bounds_naming_the_key(
    key: str, value: float, why: str
) -> None:
    with pytest.raises(ValueError) as err:
        SizingConfig(**{key: value})
    assert str(err.value) == f"{key}: {why}"


# ------------------------------------------------------------------------------ WilderATR


def test_wilder_atr_default_period_is_14() -> None:
    atr = WilderATR()
    for _ in range(13):
        assert atr.update(11.0, 10.0, 10.5) is None
    assert atr.update(11.0, 10.0, 10.5) == 1.0  # the 14th true range of 1.0: mean 1.0
    # atr_series' default too: NaN for 13 bars, then 1.0
    out = atr_series([11.0] * 14, [10.0] * 14, [10.5] * 14)
    assert np.isnan(out[:13]).all() and out[13] == 1.0


def test_wilder_atr_period_one_and_its_refusal() -> None:
    atr = WilderATR(1)
    assert atr.update(11.0, 10.0, 10.5) == 1.0
    # second bar: TR = max(12 - 11.5, |12 - 10.5|, |11.5 - 10.5|) = 1.5; (1.0 x 0 + 1.5) / 1
    assert atr.update(12.0, 11.5, 11.75) == 1.5
    with pytest.raises(ValueError) as err:
        WilderATR(0)
    assert str(err.value) == "period: must be >= 1"


def test_wilder_atr_second_bar_gap_uses_the_previous_close() -> None:
    # period 2: bar 1 TR = 11 - 10 = 1; bar 2 gaps up: TR = max(13 - 12, |13 - 10|, |12 - 10|) =
    # 3; ATR = (1 + 3) / 2 = 2
    atr = WilderATR(2)
    assert atr.update(11.0, 10.0, 10.0) is None
    assert atr.update(13.0, 12.0, 12.5) == 2.0


def test_wilder_atr_price_bounds_of_a_counted_bar() -> None:
    atr = WilderATR(1)
    # negative, zero: ignored (nothing counted)
    assert atr.update(-1.0, -2.0, -1.5) is None
    assert atr.update(1.0, 0.0, 0.5) is None
    assert atr.bars_seen == 0
    # prices under 1 are prices: TR 0.6 - 0.4 = 0.2
    assert atr.update(0.6, 0.4, 0.5) == pytest.approx(0.2, abs=1e-15)
    assert atr.bars_seen == 1
    # exactly MAX_PRICE is allowed (first bar: TR = high - low = 0)
    top = WilderATR(1)
    assert top.update(MAX_PRICE, MAX_PRICE, MAX_PRICE) == 0.0
    assert top.bars_seen == 1
    # a bar with high == low is a bar (TR 0), not a broken one
    flat = WilderATR(1)
    assert flat.update(10.0, 10.0, 10.0) == 0.0
    assert flat.bars_seen == 1


def test_atr_series_refuses_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError):
        atr_series([11.0, 12.0], [10.0], [10.5, 11.5], period=1)


# ------------------------------------------------------------------------------ scalars


def test_stop_distance_zero_atr_is_not_warm() -> None:
    # ATR 0 would be a zero stop: the 2 % fallback of 50 = 1.0 instead
    assert stop_distance(50.0, 0.0, 2.0, 0.02) == 1.0
    assert stop_distance(50.0, 0.5, 2.0, 0.02) == 1.0  # 2 x 0.5


def test_full_size_edges() -> None:
    assert full_size(math.nan, 1.0, 0.01, 100) == 0
    assert full_size(math.inf, 1.0, 0.01, 100) == 0
    assert full_size(1000.0, math.nan, 0.01, 100) == 0
    assert full_size(1000.0, 0.0, 0.01, 100) == 0
    assert full_size(1000.0, -1.0, 0.01, 100) == 0
    # 0.5 x 1 % / 0.0001 = 50: equity under 1 still sizes
    assert full_size(0.5, 0.0001, 0.01, 100) == 50
    # 9999.99999998 x 1 % / 1.0 = 99.9999999998: snapped to 100 (9 decimals); 99.99999999: 99
    assert full_size(9999.99999998, 1.0, 0.01, 1000) == 100
    assert full_size(9999.999999, 1.0, 0.01, 1000) == 99


def test_target_fraction_names_the_bad_value() -> None:
    with pytest.raises(ValueError) as err:
        target_fraction(math.nan)
    assert str(err.value) == "target_position must be finite, got nan"


def test_clip_to_gross_exposure_edges() -> None:
    # price 0: nothing to clip against, even with other exposure past the limit
    assert clip_to_gross_exposure(10, 0, 0.0, 200_000.0, 100_000.0) == 10
    # price 0.5: 100 x 0.5 = 50 > 10: room floor(10 / 0.5) = 20
    assert clip_to_gross_exposure(100, 0, 0.5, 0.0, 10.0) == 20
    assert clip_to_gross_exposure(-100, 0, 0.5, 0.0, 10.0) == -20
    # price 20 over a 10 limit: room 0 -> flat either way
    assert clip_to_gross_exposure(25, 0, 20.0, 0.0, 10.0) == 0
    assert clip_to_gross_exposure(-25, 0, 20.0, 0.0, 10.0) == 0
    # one share held long: kept (a same-side position is never forced smaller)
    assert clip_to_gross_exposure(25, 1, 20.0, 0.0, 10.0) == 1
    # a one-share target under 5 held long: allowed max(0, 5) = 5, the target stands
    assert clip_to_gross_exposure(1, 5, 20.0, 0.0, 10.0) == 1


def test_within_rebalance_threshold_one_share_and_exact_edge() -> None:
    # 1 vs 5 held, same side: 4 < 10 % x 100 = 10
    assert within_rebalance_threshold(1, 5, 100, 0.1) is True
    # |45 - 40| = 5 is not < 10 % x 50 = 5.0
    assert within_rebalance_threshold(45, 40, 50, 0.1) is False
    assert within_rebalance_threshold(44, 40, 50, 0.1) is True
