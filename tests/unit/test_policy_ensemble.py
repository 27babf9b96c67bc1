"""Ensembles of PPO policies as ONE ONNX graph that inference serves unchanged.

Members are randomly initialised (seeded) RLlib PPO modules exported with ``trainer.export``'s
own ``export_onnx``; their artifacts carry the shipped baseline's observation, features and
normaliser, so the running default pipeline accepts them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import onnxruntime as ort
import pytest
from trainer.config import TrainConfig
from trainer.ensemble import EnsembleError, build_ensemble, top_k
from trainer.onnx_export import export_onnx
from trainer.policy_head import PolicyHead
from trainer.train import build_module

from shared.features import FeaturePipeline
from shared.manifest import ActionSpace, read_manifest
from shared.model_store import write_artifact
from tests.model_artifacts import baseline_folder

pytestmark = pytest.mark.unit


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return np.asarray(z / z.sum(axis=1, keepdims=True))


def _member(root: Path, seed: int, sharpe: float, **changes: Any) -> Path:
    import gymnasium as gym
    import torch

    base = read_manifest(baseline_folder())
    size = base.observation.size
    torch.manual_seed(seed)
    module = build_module(
        TrainConfig(hiddens=[16]),
        gym.spaces.Box(-np.inf, np.inf, (size,), np.float32),
        gym.spaces.Discrete(3),
    )
    onnx_bytes = export_onnx(PolicyHead(module, "PPO", True), size)
    fields: dict[str, Any] = {
        "version": f"member_{seed}",
        "algorithm": "PPO",
        "action_meaning": "argmax over the PPO policy's action logits -> target position",
        "validation_metrics": {"fold_mean_sharpe": sharpe},
    }
    manifest = msgspec.structs.replace(base, **{**fields, **changes})
    return write_artifact(root, manifest, onnx_bytes)


def _run(folder: Path, obs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["logits"], {"obs": obs})[0], dtype=np.float64)


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("members")
    return [_member(root, seed, sharpe) for seed, sharpe in ((1, 0.2), (2, 0.9), (3, 0.5))]


def test_ensemble_probabilities_are_the_mean_of_the_members(
    members: list[Path], tmp_path: Path
) -> None:
    folder = build_ensemble(members, tmp_path, version="ens-3")
    obs = np.random.default_rng(0).normal(0.0, 3.0, size=(2000, 12)).astype(np.float32)
    want = np.mean([_softmax(_run(m, obs)) for m in members], axis=0)
    got = _softmax(_run(folder, obs))
    assert float(np.max(np.abs(got - want))) <= 1e-6
    # the members disagree somewhere, so the mean is not any single member's answer
    singles = [np.argmax(_run(m, obs), axis=1) for m in members]
    assert any((s != singles[0]).any() for s in singles[1:])
    manifest = read_manifest(folder)
    assert manifest.policy is not None
    assert manifest.policy.kind == "ensemble"
    assert manifest.policy.combination == "mean_probability"
    assert manifest.policy.members == ["member_2", "member_3", "member_1"]  # best first
    assert (manifest.onnx_input, manifest.onnx_output) == ("obs", "logits")


def test_inference_loader_serves_the_ensemble_as_one_model(
    members: list[Path], tmp_path: Path
) -> None:
    """Inference's own loader (``inference.models.ModelControl._load``, called read-only)
    accepts the artifact, and its decision is the argmax of the mean probability."""
    from inference.models import ModelControl

    build_ensemble(members, tmp_path, version="ens-served")
    control = ModelControl.__new__(ModelControl)  # only the loader's two attributes
    control.root = tmp_path
    control.pipeline = FeaturePipeline()
    model = control._load("ens-served")
    assert model.version == "ens-served" and model.batchable
    obs = np.random.default_rng(1).normal(0.0, 3.0, size=(300, 12)).astype(np.float32)
    mean_p = np.mean([_softmax(_run(m, obs)) for m in members], axis=0)
    values = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(model.decide_batch(obs), values[np.argmax(mean_p, axis=1)])


def test_top_k_keeps_the_best_validation_members(members: list[Path], tmp_path: Path) -> None:
    chosen = top_k([read_manifest(m) for m in members], 2, "fold_mean_sharpe")
    assert [m.version for m in chosen] == ["member_2", "member_3"]
    folder = build_ensemble(members, tmp_path, version="ens-top2", k=2)
    manifest = read_manifest(folder)
    assert manifest.policy is not None and manifest.policy.members == ["member_2", "member_3"]
    assert manifest.validation_metrics["member_0:fold_mean_sharpe"] == 0.9


def test_members_that_cannot_be_one_model_are_refused(members: list[Path], tmp_path: Path) -> None:
    other = _member(
        tmp_path / "other",
        4,
        0.1,
        action_space=ActionSpace(kind="discrete", action_values=[0.0, 0.5, 1.0]),
    )
    with pytest.raises(EnsembleError, match="action_space differs"):
        build_ensemble([members[0], other], tmp_path / "out")
    dqn = _member(tmp_path / "dqn", 5, 0.1, algorithm="DQN")
    with pytest.raises(EnsembleError, match="Q-values"):
        build_ensemble([members[0], dqn], tmp_path / "out")
    with pytest.raises(EnsembleError, match="at least two"):
        build_ensemble([members[0]], tmp_path / "out")


def test_continuous_members_average_their_targets(tmp_path: Path) -> None:
    """Gaussian-mean members (continuous actions): the graph's output is the mean target."""
    import gymnasium as gym
    import torch

    base = read_manifest(baseline_folder())
    size = base.observation.size
    cfg = TrainConfig(hiddens=[16], action_space="continuous")
    folders = []
    for seed in (7, 8):
        torch.manual_seed(seed)
        module = build_module(
            cfg,
            gym.spaces.Box(-np.inf, np.inf, (size,), np.float32),
            gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
        )
        onnx_bytes = export_onnx(PolicyHead(module, "PPO", False), size)
        manifest = msgspec.structs.replace(
            base,
            version=f"cont_{seed}",
            algorithm="PPO",
            action_space=ActionSpace(kind="continuous", low=-1.0, high=1.0, action_values=[]),
            action_meaning="Gaussian mean clipped to [-1, 1] = target position",
        )
        folders.append(write_artifact(tmp_path / "members", manifest, onnx_bytes))
    folder = build_ensemble(folders, tmp_path, version="cont-ens")
    manifest = read_manifest(folder)
    assert manifest.policy is not None and manifest.policy.combination == "mean_target"
    obs = np.random.default_rng(2).normal(0.0, 3.0, size=(500, size)).astype(np.float32)
    want = np.mean([_run(f, obs) for f in folders], axis=0)
    np.testing.assert_allclose(_run(folder, obs), want, atol=1e-6)
