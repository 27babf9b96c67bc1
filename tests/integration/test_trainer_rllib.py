"""Real RLlib + Ray Tune on the real env, tiny budgets (marked slow; about a minute on 2 cores).

* the same seed and data give the same trial table (two searches of a tiny space);
* the pipeline trains the best trial, exports it (parity-checked), gates it on the validation
  folds with the seed spread recorded, scores the final hold-out only if promoted; the
  checkpoint re-exports to an ONNX model with the same outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from trainer.tune import tune_run, tune_settings

from shared.loaded_model import load_artifact

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = {
    "iterations": 2,
    "eval_every": 1,
    "train_batch_size": 1000,
    "minibatch_size": 250,
    "num_epochs": 2,
    "num_envs_per_env_runner": 8,
    "hiddens": [16, 16],
    "symbols": ["AAPL"],
}
SPACE = {
    "lr": {"loguniform": [1e-4, 1e-3]},
    "gamma": {"choice": [0.9, 0.99]},
    "reward": {"choice": ["log_return", "diff_sharpe"]},
}


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    import ray
    from trainer.progress import quiet_ray

    quiet_ray()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def first_search(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _search(tmp_path_factory.mktemp("search"), spread=1)


def _search(root: Path, spread: int = 0) -> tuple[Path, dict]:
    settings = tune_settings(
        "quick",
        name="tiny",
        num_samples=3,
        seed=3,
        grace_period=1,
        spread_seeds=spread,
        space=SPACE,
        trial_overrides=TINY,
    )
    return tune_run(settings, None, root)


def test_same_seed_and_data_give_the_same_trial_table(
    first_search: tuple[Path, dict], tmp_path: Path
) -> None:
    first, best = first_search
    second, _ = _search(tmp_path)
    for name in ("trials.csv", "trials.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    trials = json.loads((first / "trials.json").read_text())
    assert [t["trial"] for t in trials] == ["trial_000", "trial_001", "trial_002"]
    assert all(t["objective"] is not None for t in trials)
    assert len({t["params"]["lr"] for t in trials}) == 3  # really different configs
    # the rest of the run folder
    for name in (
        "trial_timings.csv",
        "best_trial.json",
        "summary.md",
        "search_space.json",
        "plots/learning_curves.png",
        "plots/param_lr.png",
        "curves/trial_000.csv",
    ):
        assert (first / name).exists(), name
    spread = best["seed_spread"]
    assert len(spread["objectives"]) == 2 and spread["min"] <= spread["mean"] <= spread["max"]
    assert (first / "seeds" / "seed_4" / "checkpoint").exists()


def test_pipeline_trains_the_best_trial_then_exports_and_gates(
    first_search: tuple[Path, dict], tmp_path: Path
) -> None:
    from trainer.export import inputs_from_run
    from trainer.export import main as export_main
    from trainer.onnx_export import parity_observations
    from trainer.pipeline import run_pipeline

    opt, best = first_search
    summary = run_pipeline(
        "quick",
        output_dir=tmp_path,
        from_tune=str(opt),
        overrides=TINY,
        push=False,
        plots=False,
        seeds=2,
    )
    artifact = Path(summary["artifact"])
    model = load_artifact(artifact)
    m = model.manifest
    assert m.tune_trial_id == best["trial_id"] == f"tiny/{best['trial']}"
    assert m.promotion.verdict == summary["verdict"] in ("promoted", "rejected")
    assert summary["parity"] <= 1e-5
    assert json.loads(m.provenance)["train_config"]["lr"] == best["params"]["lr"]
    assert (tmp_path / "paper_trading" / "paper_trading_config.json").exists()
    v = m.validation_metrics
    assert v["gate_folds"] == 4 and "gate_model_worst_sharpe" in v
    assert v["seed_spread_n"] == 2.0  # the chosen config retrained on seeds 3 and 4
    assert artifact.name.endswith("_median-of-2-seeds")
    assert v["seed_spread_worst"] <= v["seed_spread_mean"]
    promoted = m.promotion.verdict == "promoted"
    assert m.test_metrics["holdout_scored"] == (1.0 if promoted else 0.0)
    assert m.test_metrics["holdout_models_scored"] == (2.0 if promoted else 0.0)  # both seeds
    assert summary["holdout"]["holdout_models_scored"] == m.test_metrics["holdout_models_scored"]

    # the checkpoint alone re-exports to the same policy
    run = Path(summary["run"])  # the promoted (median) seed's run
    assert (
        export_main(
            ["--run", str(run), "--output-dir", str(tmp_path / "again"), "--no-plots", "--no-paper"]
        )
        == 0
    )
    (again,) = [p for p in (tmp_path / "again" / "best_models").iterdir() if p.is_dir()]
    reloaded = load_artifact(again)
    inputs = inputs_from_run(run)
    obs = parity_observations(m.observation.size, [inputs.slices["test"]], (-1.0, 0.0, 1.0))
    np.testing.assert_allclose(reloaded.outputs(obs), model.outputs(obs), atol=1e-6)
    assert reloaded.manifest.tune_trial_id == m.tune_trial_id
    assert reloaded.manifest.seeds == m.seeds
    assert m.seeds["tune_search"] == 3 and m.seeds["train"] in (3, 4)
