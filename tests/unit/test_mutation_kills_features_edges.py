"""Kill the last open mutants of shared/features.py (issue 17 item 1): dtypes, gaps, rounding.

Each test states a property the pipeline promises, with the expected value derived in the test:
float32 input is computed in float64, a missing (NaN) bar poisons the windows that cover it,
zero volume gives a z-score of 0, the rolling sums are re-summed exactly once per window, and a
window with no spread has a std of 0 even when rounding makes the running variance negative.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shared.features import FeaturePipeline, _Rolling
from shared.normaliser import Normaliser

pytestmark = pytest.mark.unit


def _walk(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99,
                         "close": close, "volume": rng.uniform(1e5, 2e5, n)})  # fmt: skip


def test_float32_bars_are_computed_in_float64() -> None:
    # the float32 values, widened exactly to float64 first, are the oracle: a pipeline that
    # kept float32 (log returns, RSI, ATR, volume z-score) would round in float32 and differ.
    # Wide bars (high > 2 * low): high - low is then inexact in float32 (Sterbenz no longer holds)
    bars32 = _walk(160, 5)
    bars32["high"] = bars32["close"] * 2.7
    bars32["low"] = bars32["close"] * 0.3
    bars32 = bars32.astype(np.float32)
    pipe = FeaturePipeline()
    got = pipe.batch(bars32)
    want = pipe.batch(bars32.astype(np.float64))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("column", "features"),
    [
        ("close", ["bb_pos_20_2", "vol_regime_20_100"]),
        ("volume", ["volz_20"]),
    ],
)
def test_a_missing_bar_makes_its_windows_nan_not_neutral(column: str, features: list[str]) -> None:
    # a NaN bar has no value: every window that contains it must say NaN, never the neutral
    # filler (0.5 for %B, 0 for the z-score and the regime) that a flat window gets
    bars = _walk(260, 6)
    gap = 200
    bars.loc[gap, column] = np.nan
    pipe = FeaturePipeline()
    out = pipe.batch(bars)
    for name in features:
        col = out[:, pipe.index(name)]
        assert np.isfinite(col[gap - 1]), name  # before the gap: a real value
        assert np.isnan(col[gap : gap + 20]).all(), name  # every 20-bar window over the gap


def test_zero_volume_window_has_a_zscore_of_zero() -> None:
    # volume 0 over a whole window: mean 0 and std 0, so (v - mean) / std is 0 / 0; the
    # feature is defined as 0 there (no spread), in batch and online alike, not NaN or an error
    bars = _walk(140, 7)
    bars.loc[100:, "volume"] = 0.0
    pipe = FeaturePipeline()
    k = pipe.index("volz_20")
    batch = pipe.batch(bars)
    assert batch[-1, k] == 0.0
    assert np.isfinite(batch[pipe.warmup_bars - 1 :, k]).all()
    row = pipe.online().update_many(bars)
    assert row is not None and row[k] == 0.0


def test_rolling_resums_once_per_window() -> None:
    # 1e16 absorbs 0.5 (its ulp is 2): running sums that are never re-summed exactly keep that
    # loss after 1e16 has left the window. After every n-th push the window is re-summed, so
    # the mean of [0.25, 0.125, 0.0625] (exact in binary) comes out to the last bit.
    r = _Rolling(3)
    for x in (0.0, 1e16, 0.5, 0.25, 0.125, 0.0625):
        r.push(x)
    assert r.mean() == pytest.approx(0.4375 / 3, rel=1e-15)
    assert r.std() == pytest.approx(float(np.std([0.25, 0.125, 0.0625])), rel=1e-12)
    for x in (1e16, 3.0, 5.0, 7.0, 9.0, 11.0):  # and again one window later
        r.push(x)
    assert r.mean() == pytest.approx(9.0, rel=1e-15)


def test_rolling_std_of_a_window_without_spread_is_zero() -> None:
    # window [0.2, 0.2, 0.2] reached from 0.1, 0.3: the running variance rounds to -5e-34,
    # and the mean deviation is too small to re-anchor; the std is 0, not a math domain error
    r = _Rolling(3)
    for x in (0.1, 0.3, 0.2, 0.2, 0.2):
        r.push(x)
    assert r.std() == 0.0
    assert r.mean() == pytest.approx(0.2, rel=1e-15)


def test_normaliser_computes_in_float64_from_float32_inputs() -> None:
    rng = np.random.default_rng(8)
    x32 = rng.normal(3.0, 0.7, (50, 3)).astype(np.float32)
    # fit: mean/std of the float32 values widened to float64 (numpy would accumulate in float32)
    fitted = Normaliser.fit(x32)
    rows = x32.astype(np.float64)
    np.testing.assert_array_equal(fitted.mean, rows.mean(axis=0))
    np.testing.assert_array_equal(fitted.std, rows.std(axis=0))
    # a float32 std (as a manifest might store it): 1/std is taken in float64
    std32 = np.array([0.3, 0.7, 1.1], dtype=np.float32)
    norm = Normaliser([0.0, 0.0, 0.0], std32, clip=math.inf)
    z = norm.transform(np.array([1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(z, 1.0 * (1.0 / std32.astype(np.float64)))
