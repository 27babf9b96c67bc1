"""Train a stateful (LSTM / attention) policy with the trainer's own building blocks.

``trainer.train.train`` validates its policy with ``policy_decider``, which scores every bar at
each fixed position in one batch: right for an MLP, wrong for a policy whose state depends on
the path. This module reuses everything else (``init_ray``, ``seed_everything``,
``setup_torch``, ``prepare_data``, ``build_algo_config``) and only swaps the RLModule
(``apply_policy``); the trained module is scored afterwards on the same folds as any model
(``trainer.study`` through ``trainer.evaluate``), with the exported ONNX graph stepping through
the bars and its state carried (``StatefulOnnxPolicy``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.feature_config import FeatureConfig
from shared.manifest import PolicySpec
from shared.normaliser import Normaliser
from trainer.config import TrainConfig
from trainer.policies import PolicyConfig, apply_policy
from trainer.policies.onnx import OnnxStepper
from trainer.progress import say
from trainer.train import (
    PreparedData,
    build_algo_config,
    init_ray,
    prepare_data,
    seed_everything,
    setup_torch,
)


@dataclass
class StatefulRun:
    module: Any  # the trained RLModule
    iterations: int
    env_steps: int
    seconds: float


def train_stateful(
    cfg: TrainConfig,
    policy: PolicyConfig,
    *,
    data: PreparedData | None = None,
    label: str = "train",
) -> StatefulRun:
    """``cfg``'s PPO budget (``iterations`` / ``max_env_steps``) with ``policy``'s module."""
    if cfg.algorithm != "PPO":
        raise ValueError(f"stateful policies are trained with PPO here, not {cfg.algorithm}")
    setup_torch(cfg)
    seed_everything(cfg.seed)
    init_ray()
    data = data or prepare_data(cfg)
    config = build_algo_config(cfg, data.train.env_config.replace(seed=cfg.seed))
    algo = apply_policy(config, policy, cfg.hiddens).build_algo()
    t0 = time.perf_counter()
    env_steps = 0
    iteration = 0
    try:
        for iteration in range(1, cfg.iterations + 1):
            result = algo.train()
            env_steps = int(result.get("num_env_steps_sampled_lifetime", 0) or 0)
            ret = result.get("env_runners", {}).get("episode_return_mean", math.nan)
            say(label, f"{policy.kind} iter {iteration} steps {env_steps:,} return {ret}")
            if 0 < cfg.max_env_steps <= env_steps:
                break
        module = algo.get_module()
    finally:
        algo.stop()
    return StatefulRun(module, iteration, env_steps, time.perf_counter() - t0)


class StatefulOnnxPolicy:
    """An exported stateful graph as ``shared.model_policy.ModelPolicy``'s model (``decide(obs)``,
    ``normaliser``, ``feature_config``), the state carried from one decision to the next.

    ``ModelPolicy`` reads ``normaliser`` once when a backtest starts, so reading it starts the
    state from zeros: every fold and the hold-out begin fresh, as a server resets on a new
    epoch or a gap. Bars still in the feature warm-up are never decided (flat), so the state
    starts at the first warmed-up bar."""

    def __init__(
        self,
        onnx_bytes: bytes,
        spec: PolicySpec,
        normaliser: dict[str, Any],
        feature_config: FeatureConfig,
        action_values: list[float],
        version: str,
    ) -> None:
        self.stepper = OnnxStepper(onnx_bytes, spec)
        self._normaliser = Normaliser.from_dict(normaliser)
        self.feature_config = feature_config
        self.values = np.asarray(action_values, dtype=np.float64)
        self.version = version
        self.size = len(self._normaliser.mean) + 1
        self.state = self.stepper.initial_state(1, self.size)
        self.resets = 0

    @property
    def normaliser(self) -> Normaliser:
        self.reset()
        return self._normaliser

    def reset(self) -> None:
        self.state = self.stepper.initial_state(1, self.size)
        self.resets += 1

    def decide(self, obs: np.ndarray) -> float:
        logits, self.state = self.stepper.step(np.asarray(obs, np.float32)[None, :], self.state)
        row = logits[0]
        if not np.isfinite(row).all():
            return 0.0
        return float(self.values[int(np.argmax(row))])
