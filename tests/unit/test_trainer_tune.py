"""Tune helpers without Ray: the space, narrowing, picking the best trial, the trial table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec
import pandas as pd
import pytest
from trainer.config import TrainConfig
from trainer.tune import tune_settings
from trainer.tune_results import pick_best, write_trial_table
from trainer.tune_space import SPACES, narrow_space, to_tune_space

pytestmark = pytest.mark.unit


def row(i: int, objective: float | None, completed: bool = True, **params: object) -> dict:
    return {
        "trial": f"trial_{i:03d}",
        "tune_trial_id": f"abc_{i:05d}",
        "params": params,
        "rounds": 3 if completed else 1,
        "iterations": 6,
        "env_steps": 48_000,
        "objective": objective,
        "best_objective": objective,
        "episode_return_mean": -1.0,
        "val_total_return": 0.1,
        "val_trades": 10.0,
        "completed": completed,
        "status": "ok",
        "seconds": 12.5 + i,
    }


def test_every_space_searches_trainconfig_fields_only() -> None:
    for spec in SPACES.values():
        assert set(spec) <= set(TrainConfig.__struct_fields__)
        to_tune_space(spec)  # builds
        # every value a choice can take makes a valid TrainConfig
        for name, dist in spec.items():
            for value in dist.get("choice", []):
                TrainConfig().with_overrides({name: value})
    with pytest.raises(ValueError, match="not a TrainConfig field"):
        to_tune_space({"learning_rate": {"choice": [1]}})
    assert set(SPACES["full"]) >= {
        "lr",
        "hiddens",
        "activation",
        "gamma",
        "train_batch_size",
        "train_cost_multiplier",
        "episode_length",
        "position_change_penalty",
        "risk_fraction",
        "reward",
    }


def test_narrowing_centres_on_the_best_trial_within_the_old_bounds() -> None:
    spec = {
        "lr": {"loguniform": [1e-4, 1e-2]},
        "gamma": {"uniform": [0.9, 0.99]},
        "activation": {"choice": ["tanh", "relu", "silu"]},
    }
    trials = [
        row(0, 0.5, lr=1e-3, gamma=0.95, activation="relu"),
        row(1, 0.1, lr=5e-3, gamma=0.91, activation="tanh"),
        row(2, 0.4, lr=2e-4, gamma=0.98, activation="silu"),
        row(3, None, lr=2e-4, gamma=0.98, activation="tanh"),
    ]
    narrow = narrow_space(spec, trials)
    lo, hi = narrow["lr"]["loguniform"]
    assert 1e-4 <= lo < 1e-3 < hi <= 1e-2
    assert math.log(hi / lo) == pytest.approx(0.5 * math.log(100))
    glo, ghi = narrow["gamma"]["uniform"]
    assert 0.9 <= glo < 0.95 < ghi <= 0.99
    assert narrow["activation"]["choice"] == ["relu", "silu"]  # best + next best by mean
    with pytest.raises(ValueError):
        narrow_space(spec, [row(0, None, lr=1e-3, gamma=0.95, activation="relu")])


def test_best_trial_is_chosen_among_full_budget_trials() -> None:
    rows = [row(0, 0.3), row(1, 0.9, completed=False), row(2, 0.5), row(3, 0.5)]
    assert pick_best(rows)["trial"] == "trial_002"  # ties -> the earlier trial
    assert pick_best([row(1, 0.9, completed=False), row(2, None)])["trial"] == "trial_001"
    with pytest.raises(RuntimeError):
        pick_best([row(0, None)])


def test_trial_table_keeps_wall_clock_out_of_the_reproducible_files(tmp_path: Path) -> None:
    rows = [row(0, 0.25, lr=1e-3, hiddens=[64, 64]), row(1, -0.5, lr=3e-4, hiddens=[128, 128])]
    write_trial_table(rows, tmp_path)
    table = pd.read_csv(tmp_path / "trials.csv")
    assert list(table["trial"]) == ["trial_000", "trial_001"]
    assert "param_lr" in table and "param_hiddens" in table
    assert not {"seconds", "tune_trial_id"} & set(table.columns)
    stored = json.loads((tmp_path / "trials.json").read_text())
    assert stored[1]["params"]["hiddens"] == [128, 128] and "seconds" not in stored[1]
    timings = pd.read_csv(tmp_path / "trial_timings.csv")
    assert list(timings["seconds"]) == [12.5, 13.5]


def test_profiles() -> None:
    quick, full = tune_settings("quick"), tune_settings("full")
    assert quick.max_concurrent == 1 and quick.search_space == SPACES["quick"]
    assert full.num_samples > quick.num_samples
    assert tune_settings("quick", num_samples=2).num_samples == 2


def test_narrow_from_a_finished_run(tmp_path: Path) -> None:
    """--narrow-from: the old run's space shrunk around its best trial, its best config as base."""
    from trainer.tune import settings_from_narrow

    spec = {"lr": {"loguniform": [1e-4, 1e-2]}, "gamma": {"choice": [0.9, 0.99, 0.995]}}
    settings = tune_settings("quick", name="first", seed=5, space=spec)
    best_cfg = TrainConfig(lr=1e-3, gamma=0.99, hiddens=[32])
    (tmp_path / "search_space.json").write_text(json.dumps(spec))
    (tmp_path / "settings.json").write_text(
        json.dumps({**msgspec.to_builtins(settings), "base_config": {}})
    )
    trials = [
        row(0, 0.9, lr=1e-3, gamma=0.99),
        row(1, 0.2, lr=5e-3, gamma=0.9),
        row(2, 0.5, lr=3e-4, gamma=0.995),
    ]
    (tmp_path / "trials.json").write_text(json.dumps(trials))
    (tmp_path / "best_trial.json").write_text(json.dumps({"config": best_cfg.to_dict()}))
    narrowed, base = settings_from_narrow(tmp_path, name="second")
    assert base == best_cfg
    assert narrowed.name == "second" and narrowed.seed == 5
    assert narrowed.search_space["gamma"] == {"choice": [0.99, 0.995]}
    lo, hi = narrowed.search_space["lr"]["loguniform"]
    assert 1e-4 <= lo < 1e-3 < hi <= 1e-2
