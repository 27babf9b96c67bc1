"""Seed spread: the chosen config on N seeds, the MEDIAN seed promoted and named so, and the
results table (mean ± std, worst seed, beside both benchmarks, per symbol and pooled)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from trainer.config import PROFILE_SEEDS, TrainConfig
from trainer.export_manifest import new_version
from trainer.seed_spread import SeedRuns, median_index, results_table, spread_stats

pytestmark = pytest.mark.unit


def test_the_median_seed_is_chosen_not_the_best() -> None:
    assert median_index([0.9, -0.2, 0.4]) == 2
    assert median_index([0.1, 0.5, 0.3, 0.2]) == 3  # even count: the lower middle (0.2)
    assert median_index([0.3, 0.3, 0.3]) == 1
    assert median_index([1.0]) == 0
    with pytest.raises(ValueError):
        median_index([])
    assert PROFILE_SEEDS["quick"] == 3 and PROFILE_SEEDS["full"] >= 5


def test_spread_statistics() -> None:
    s = spread_stats([1.0, 2.0, 4.0])
    assert s == {
        "n": 3.0,
        "mean": 7 / 3,
        "std": pytest.approx(1.5275252),
        "worst": 1.0,
        "best": 4.0,
    }
    assert spread_stats([0.5])["std"] == 0.0
    assert spread_stats([float("nan"), 1.0])["worst"] == 0.0  # an undefined ratio counts as 0


def _runs() -> SeedRuns:
    cfg = TrainConfig(symbols=["AAPL", "AMZN"])
    results = [
        SimpleNamespace(
            config=cfg.replace(seed=seed),
            objective=(a + b) / 2,
            validation={"AAPL:fold_mean_sharpe": a, "AMZN:fold_mean_sharpe": b},
        )
        for seed, (a, b) in enumerate([(1.0, 0.0), (0.2, 0.2), (-1.0, 0.4)])
    ]
    return SeedRuns(cfg, results)  # type: ignore[arg-type]


def test_seed_runs_report_how_the_artifact_was_chosen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runs = _runs()
    assert runs.seeds == [0, 1, 2] and runs.chosen == 1  # objectives 0.5, 0.2, -0.3
    assert runs.suffix == "median-of-3-seeds"
    assert new_version(tmp_path, suffix=runs.suffix).endswith("_median-of-3-seeds")
    info = runs.export_info()
    assert "median of 3 seeds" in info["chosen_by"] and "seed 1" in info["chosen_by"]
    assert info["numbers"]["seed_chosen"] == 1.0
    assert info["numbers"]["seed_spread_worst"] == -0.3
    assert info["numbers"]["AAPL:seed_spread_mean"] == pytest.approx(0.2 / 3)
    assert info["report"]["per_symbol"]["AMZN"] == [0.0, 0.2, 0.4]


def test_results_table_says_where_the_policy_loses() -> None:
    runs = _runs()
    validation = {
        "AAPL:buy_and_hold_fold_mean_sharpe": 0.1,
        "AAPL:ma_crossover_fold_mean_sharpe": -0.5,
        "AMZN:buy_and_hold_fold_mean_sharpe": 0.9,
        "AMZN:ma_crossover_fold_mean_sharpe": 0.0,
        "gate_buy_and_hold_sharpe": 0.5,
        "gate_ma_crossover_sharpe": -0.25,
    }
    table = results_table(runs, validation, {})
    assert "| AAPL | 0.07 ± 1.01 (worst -1.00) | 0.10 | -0.50 | not scored" in table
    assert "AAPL (validation folds: below Buy-and-Hold)" in table
    assert "AMZN (validation folds: below Buy-and-Hold)" in table
    assert "the MA crossover" not in table.split("NOT beat")[1].split("pooled")[0].split("AMZN")[0]
    runs.holdout = {
        0: {"AAPL": 1.0, "AMZN": 1.0},
        1: {"AAPL": 2.0, "AMZN": 1.0},
        2: {"AAPL": 3.0, "AMZN": 1.0},
    }
    test = {
        "AAPL:buy_and_hold_sharpe": 0.5,
        "AAPL:ma_crossover_sharpe": 0.5,
        "AMZN:buy_and_hold_sharpe": 0.5,
        "AMZN:ma_crossover_sharpe": 0.5,
        "buy_and_hold_sharpe": 0.5,
        "ma_crossover_sharpe": 0.5,
    }
    table = results_table(runs, validation, test)
    assert (
        "| pooled | 0.13 ± 0.40 (worst -0.30) | 0.50 | -0.25 | 1.50 ± 0.50 (worst 1.00) |" in table
    )
    assert "final hold-out" not in table.split("NOT beat")[1]  # it beats both there
