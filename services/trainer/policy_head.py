"""A trained RLModule's deterministic decision and its backtests.

``load_module`` reads the RLModule from a ``trainer.train`` checkpoint; ``PolicyHead`` is its
greedy output (what the ONNX export wraps); ``policy_decider`` turns it into the backtester's
``decide(t, position)`` over a slice; ``backtest_policy`` / ``backtest_folds`` /
``validate_symbols`` score it (``shared.backtest``, costs on, the slice's risk rules) the way
``trainer.train``'s loop validates every ``eval_every`` iterations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.backtest import BacktestResult, run_policy
from shared.env_config import EnvConfig
from shared.rebalancing import AccountConfig
from trainer.train_data import SliceData

if TYPE_CHECKING:
    from trainer.train import PreparedData


def load_module(checkpoint: str | Path) -> Any:
    """The trained RLModule from a checkpoint written by ``trainer.train.train`` (no env, no Ray
    needed)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = Path(checkpoint).resolve() / "learner_group" / "learner" / "rl_module" / "default_policy"
    return RLModule.from_checkpoint(str(path))


class PolicyHead:
    """The deterministic decision of an RLModule: ``forward_inference`` -> one row per obs.

    Discrete spaces: one output per action (PPO/APPO action logits, DQN Q-values); the greedy
    action is the argmax. Continuous: the Gaussian's mean (the deterministic action). The ONNX
    export wraps exactly this function (``trainer.export``).
    """

    def __init__(self, module: Any, algorithm: str, discrete: bool) -> None:
        self.module = module
        self.algorithm = algorithm
        self.discrete = discrete

    def forward(self, obs: Any) -> Any:
        if self.algorithm == "DQN":
            return self.module.compute_q_values({"obs": obs})["qf_preds"]
        out = self.module.forward_inference({"obs": obs})["action_dist_inputs"]
        if self.discrete:
            return out
        return out[:, : out.shape[1] // 2]  # [mean, log_std] -> mean

    def outputs(self, obs: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(-1, obs.shape[-1]))
            return self.forward(x).cpu().numpy().astype(np.float64)


def greedy_targets(head: PolicyHead, outputs: np.ndarray, env_cfg: EnvConfig) -> np.ndarray:
    if head.discrete:
        values = np.asarray(env_cfg.action_targets, dtype=np.float64)
        return values[np.argmax(outputs, axis=1)]
    low = -1.0 if env_cfg.allow_short else 0.0
    return np.clip(outputs[:, 0], low, 1.0)


def backtest_policy(head: PolicyHead, data: SliceData) -> BacktestResult:
    """Backtest the greedy policy over the slice (decision at each close, fill at next open)."""
    account: AccountConfig = data.env_config.account()
    return run_policy(
        data.bars,
        policy_decider(head, data),
        account,
        start=data.start,
        name="model",
        risk=data.env_config.risk,  # execution's rules when the model trains under them
    )


def backtest_folds(
    head: PolicyHead, data: SliceData, folds: Any, metric: str
) -> tuple[list[dict[str, float]], float, float]:
    """The greedy policy on each walk-forward fold of the validation slice (``folds``: a
    ``shared.splits.HoldoutPlan`` over ``data.bars``), each from flat with exit costs at its end.

    Returns (per-fold metrics, mean fold ``metric``, worst fold ``metric``); the slice's bars end
    at ``val_end``, so nothing of the hold-out can be read.
    """
    account: AccountConfig = data.env_config.account()
    decide = policy_decider(head, data)
    per = [
        run_policy(
            data.bars,
            decide,
            account,
            start=int(f.test[0]),
            end=int(f.test[-1]) + 1,
            name="model",
            exit_costs=True,
            risk=data.env_config.risk,
        ).metrics
        for f in folds.folds
    ]
    values = [metric_value(m, metric) for m in per]
    return per, sum(values) / len(values), min(values)


def validate_symbols(
    head: PolicyHead, data: PreparedData, folds: dict[str, Any], metric: str
) -> tuple[dict[str, float], float, float]:
    """The greedy policy on every symbol's validation slice and walk-forward folds.

    Returns (metrics, objective, worst): metrics are the whole-slice backtest metrics (the mean
    over symbols) plus ``fold_mean_<metric>``/``fold_worst_<metric>`` and, per symbol,
    ``<SYM>:fold_mean_<metric>``/``<SYM>:fold_worst_<metric>``; the objective is the mean over
    symbols of each symbol's mean fold, the worst the worst fold of any symbol.
    """
    whole: list[dict[str, float]] = []
    out: dict[str, float] = {}
    means, worsts = [], []
    for sym, validation in data.validations.items():
        whole.append(dict(backtest_policy(head, validation).metrics))
        _per, mean, worst = backtest_folds(head, validation, folds[sym], metric)
        out[f"{sym}:fold_mean_{metric}"] = mean
        out[f"{sym}:fold_worst_{metric}"] = worst
        means.append(mean)
        worsts.append(worst)
    for key, value in whole[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            vals = [float(m.get(key, math.nan)) for m in whole]
            out.setdefault(key, sum(vals) / len(vals))
    objective = sum(means) / len(means)
    out[f"fold_mean_{metric}"] = objective
    out[f"fold_worst_{metric}"] = min(worsts)
    return out, objective, min(worsts)


def policy_decider(head: PolicyHead, data: SliceData) -> Callable[[int, float], float]:
    """``decide(t, position)`` of the greedy policy over the slice's bars."""
    env_cfg = data.env_config
    base, valid = data.observations
    if head.discrete:
        # The position is the only sequential input: precompute the decision for every bar and
        # every position the policy can hold, then walk the bars.
        table: dict[float, np.ndarray] = {}
        for pos in env_cfg.action_targets:
            obs = base.copy()
            obs[:, -1] = pos
            table[pos] = np.where(valid, greedy_targets(head, head.outputs(obs), env_cfg), 0.0)

        def decide(t: int, position: float) -> float:
            return float(table[position][t])
    else:

        def decide(t: int, position: float) -> float:
            if not valid[t]:
                return 0.0
            obs = base[t].copy()
            obs[-1] = position
            return float(greedy_targets(head, head.outputs(obs[None, :]), env_cfg)[0])

    return decide


def metric_value(metrics: dict[str, float], name: str) -> float:
    """The objective; an undefined ratio (a policy that never trades) counts as 0."""
    value = float(metrics.get(name, math.nan))
    return value if math.isfinite(value) else 0.0
