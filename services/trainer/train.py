"""Train one policy with RLlib (new API stack) on the trading env, top to bottom.

    python -m trainer.train --profile quick [--algorithm PPO] [--lr 1e-3 ...] [--out runs/x]

What happens, in order (every step is a function below; the pieces each step uses live beside
it: ``trainer.train_data`` the slices, ``trainer.policy_head`` the greedy policy and its
backtests, ``trainer.train_cli`` the flags):

1. ``init_ray``: connect to ``RAY_ADDRESS`` when it is set (an existing cluster; authenticate as
   that cluster requires, e.g. ``RAY_AUTH_TOKEN``), else start a private 2-CPU Ray. Ray's token
   authentication stays at its default (on): the private cluster still listens on the node's
   address, so switching it off would open it to the network.
2. ``prepare_data``: the training slice's features and normaliser (fitted on training bars only);
   the validation slice's observations built with that normaliser.
3. ``build_algo_config``: ``PPOConfig()`` (or APPO / DQN) with every field of ``TrainConfig``:
   the env (``shared.env`` through ``env_creator``; ``VectorTradingEnv`` when
   ``vectorize_mode="vector_entry_point"``), the MLP, the optimiser, the seeds.
4. the loop: ``algo.train()``; each iteration prints env steps/s and the mean episode return;
   every ``eval_every`` iterations the greedy policy is backtested on the validation slice
   (``shared.backtest``, costs on) and its metric (Sharpe by default) is printed;
   checkpoints every ``checkpoint_every`` iterations and at the end.
5. ``<out>/``: ``train_config.json``, ``progress.csv`` (the learning curve), ``summary.json``,
   ``normaliser.json`` and ``checkpoint/``.

Throughput: the default RLlib setup (one env, 4000-step batches of 500-step minibatches, 4
epochs) trains about 1,300 env steps/s here; the ``TrainConfig`` defaults (32 vectorised envs in
one numpy call, 8000-step batches of 2000-step minibatches) are measured by
``bench/bench_rllib.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from shared.env import ENV_ID
from shared.env_config import EnvConfig
from trainer.config import TrainConfig, add_source_args
from trainer.policy_head import PolicyHead, validate_symbols
from trainer.progress import quiet_ray, say, setup
from trainer.train_cli import add_config_args, config_from_args
from trainer.train_data import SliceData, load_slice

RLLIB_ENV = "rltrader-trading"


# ----------------------------------------------------------------------------- 1. Ray, seeds, torch


def init_ray(num_cpus: int = 2) -> None:
    """Join ``RAY_ADDRESS`` if set, else start a private local Ray with ``num_cpus``."""
    import ray
    from ray.tune.registry import register_env

    from trainer.multi_symbol import env_creator

    if ray.is_initialized():  # inside a Tune trial, or called twice
        register_env(RLLIB_ENV, env_creator)
        return
    address = os.environ.get("RAY_ADDRESS", "").strip()
    common: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
        # Workers import shared/trainer from the repository (also on a remote cluster).
        "runtime_env": {"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}},
    }
    if address:
        say("ray", f"connecting to the Ray cluster at RAY_ADDRESS={address}")
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=200 * 1024**2, **common)
    register_env(RLLIB_ENV, env_creator)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_torch(cfg: TrainConfig) -> None:
    import torch

    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)


# ----------------------------------------------------------------------------- 2. data


@dataclass
class PreparedData:
    """The training and validation slices of every symbol (``train``/``validation``: the
    first symbol's, ``trains``/``validations``: all, by symbol) and the one normaliser."""

    train: SliceData
    validation: SliceData
    normaliser: dict[str, Any]
    trains: dict[str, SliceData] = field(default_factory=dict)
    validations: dict[str, SliceData] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.trains = self.trains or {self.train.env_config.symbol: self.train}
        self.validations = self.validations or {self.validation.env_config.symbol: self.validation}

    @property
    def symbols(self) -> list[str]:
        return list(self.validations)

    def slice(self, cfg: TrainConfig, split: str) -> SliceData:
        if split == "train":
            return self.train
        if split == "validation":
            return self.validation
        return load_slice(cfg, split, self.normaliser)


def prepare_data(cfg: TrainConfig) -> PreparedData:
    """One symbol: the normaliser is fitted on its training slice (as the env does). Several: one
    pooled normaliser over every symbol's training rows (``trainer.multi_symbol``)."""
    symbols = cfg.symbol_list
    if len(symbols) == 1:
        train = load_slice(cfg, "train", None, symbols[0])
        normaliser = train.market.normaliser.to_dict()
    else:
        from trainer.multi_symbol import pooled_normaliser

        normaliser = pooled_normaliser(
            cfg.source, symbols, start=cfg.train_start, end=cfg.train_end, features=cfg.features
        )
    trains = {s: load_slice(cfg, "train", normaliser, s) for s in symbols}
    validations = {s: load_slice(cfg, "validation", normaliser, s) for s in symbols}
    first = symbols[0]
    return PreparedData(trains[first], validations[first], normaliser, trains, validations)


# ----------------------------------------------------------------------------- 3. RLlib config


def build_algo_config(cfg: TrainConfig, env_config: EnvConfig) -> Any:
    """The RLlib ``AlgorithmConfig`` for ``cfg`` (new API stack), env config included.

    Several symbols (``cfg.symbol_list``): the env is ``trainer.multi_symbol``'s pooled vector
    env, ``env_config``'s symbol replaced by each of them in turn."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    if cfg.algorithm == "PPO":
        from ray.rllib.algorithms.ppo import PPOConfig

        config: Any = PPOConfig().training(
            lambda_=cfg.lambda_,
            clip_param=cfg.clip_param,
            entropy_coeff=cfg.entropy_coeff,
            vf_loss_coeff=cfg.vf_loss_coeff,
            vf_clip_param=cfg.vf_clip_param,
            minibatch_size=cfg.minibatch_size,
            num_epochs=cfg.num_epochs,
        )
    elif cfg.algorithm == "APPO":
        from ray.rllib.algorithms.appo import APPOConfig

        config = APPOConfig().training(
            lambda_=cfg.lambda_,
            clip_param=cfg.clip_param,
            entropy_coeff=cfg.entropy_coeff,
            vf_loss_coeff=cfg.vf_loss_coeff,
        )
    elif cfg.algorithm == "DQN":
        from ray.rllib.algorithms.dqn import DQNConfig

        config = DQNConfig().training(
            replay_buffer_config={
                "type": "PrioritizedEpisodeReplayBuffer",
                "capacity": cfg.replay_capacity,
            },
            target_network_update_freq=cfg.target_network_update_freq,
            n_step=cfg.n_step,
            epsilon=[(0, 1.0), (cfg.epsilon_timesteps, 0.05)],
            num_steps_sampled_before_learning_starts=min(10_000, cfg.train_batch_size * 2),
        )
    else:  # pragma: no cover - TrainConfig's Literal refuses it first
        raise ValueError(f"unknown algorithm {cfg.algorithm!r}")

    env_dict = env_config.to_dict()
    if len(cfg.symbol_list) > 1:
        from trainer.multi_symbol import SYMBOLS_KEY

        env_dict[SYMBOLS_KEY] = cfg.symbol_list
    config = (
        config.environment(RLLIB_ENV, env_config=env_dict)
        .env_runners(
            num_env_runners=cfg.num_env_runners,
            num_envs_per_env_runner=cfg.num_envs_per_env_runner,
            gym_env_vectorize_mode=cfg.vectorize_mode,
            num_cpus_per_env_runner=1,
        )
        .learners(num_learners=0)
        .training(
            lr=cfg.lr,
            gamma=cfg.gamma,
            grad_clip=cfg.grad_clip,
            train_batch_size_per_learner=cfg.train_batch_size,
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=list(cfg.hiddens),
                fcnet_activation=cfg.activation,
                vf_share_layers=False,
            )
        )
        .debugging(seed=cfg.seed, log_level="ERROR")
        .reporting(metrics_num_episodes_for_smoothing=100)
    )
    quiet_ray()  # RLlib's import set its own logger levels
    if cfg.algorithm == "DQN":
        # DQN samples a few steps per env between updates from the replay buffer: its batch is
        # the replay sample size; an iteration still covers train_batch_size env steps.
        config = (
            config.training(train_batch_size_per_learner=cfg.dqn_batch_size)
            .env_runners(rollout_fragment_length=cfg.dqn_rollout_fragment_length)
            .reporting(min_sample_timesteps_per_iteration=cfg.train_batch_size)
        )
    return config


def build_module(cfg: TrainConfig, observation_space: Any, action_space: Any) -> Any:
    """A fresh (untrained) RLModule of ``cfg`` for given spaces, without Ray or an env."""
    spec = build_algo_config(cfg, cfg.env_config("train")).get_rl_module_spec(
        spaces={"default_policy": (observation_space, action_space)}
    )
    return spec.build()


# ----------------------------------------------------------------------------- 4. the loop


@dataclass
class TrainResult:
    config: TrainConfig
    out_dir: Path | None
    iterations: int
    env_steps: int
    seconds: float
    curve: list[dict[str, Any]]
    validation: dict[str, float]  # metrics of the final policy on the validation slice
    objective: float  # mean over the validation folds of cfg.metric (NaN -> 0 per fold)
    data: PreparedData
    checkpoint: Path | None = None
    algo: Any = None  # the live Algorithm when keep_algo=True (export without a reload)
    head: PolicyHead | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def steps_per_s(self) -> float:
        return self.env_steps / self.seconds if self.seconds > 0 else math.nan


Reporter = Callable[[dict[str, Any]], None]


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def train(
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    data: PreparedData | None = None,
    report: Reporter | None = None,
    keep_algo: bool = False,
    label: str = "train",
) -> TrainResult:
    """Train ``cfg``; ``report(row)`` is called after every validation (Tune hooks in here)."""
    setup_torch(cfg)
    seed_everything(cfg.seed)
    init_ray()
    data = data or prepare_data(cfg)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_bytes(msgspec.json.format(msgspec.json.encode(cfg)))
        (out / "normaliser.json").write_text(json.dumps(data.normaliser, indent=1))

    from trainer.selection import slice_folds

    folds = {sym: slice_folds(cfg, len(v.bars), v.start) for sym, v in data.validations.items()}
    # Prepared data may be shared by several seeds' runs: the env's sampler takes this run's seed.
    algo = build_algo_config(cfg, data.train.env_config.replace(seed=cfg.seed)).build_algo()
    head = PolicyHead(algo.get_module(), cfg.algorithm, cfg.action_space == "discrete")
    say(
        label,
        f"{cfg.algorithm} {','.join(data.symbols)} seed={cfg.seed} hiddens={cfg.hiddens} "
        f"lr={cfg.lr:g} "
        f"batch={cfg.train_batch_size} envs={cfg.num_envs_per_env_runner} "
        f"train bars={sum(t.market.n_decisions for t in data.trains.values())} "
        f"val bars={sum(len(v.bars) - v.start for v in data.validations.values())}",
    )

    curve: list[dict[str, Any]] = []
    env_steps = 0
    t_start = time.perf_counter()
    val_metrics: dict[str, float] = {}
    objective = math.nan
    checkpoint: Path | None = None
    iteration = 0
    for iteration in range(1, cfg.iterations + 1):
        t0 = time.perf_counter()
        result = algo.train()
        dt = time.perf_counter() - t0
        runners = result.get("env_runners", {})
        steps = int(runners.get("num_env_steps_sampled", 0) or 0)
        env_steps = int(result.get("num_env_steps_sampled_lifetime", env_steps + steps) or 0)
        row: dict[str, Any] = {
            "iteration": iteration,
            "env_steps": env_steps,
            "steps_per_s": steps / dt if dt > 0 else math.nan,
            "episode_return_mean": _num(runners.get("episode_return_mean")),
            "episodes": int(runners.get("num_episodes_lifetime", 0) or 0),
            "val_metric": math.nan,
        }
        last = iteration == cfg.iterations or (0 < cfg.max_env_steps <= env_steps)
        if iteration % cfg.eval_every == 0 or last:
            val_metrics, objective, worst = validate_symbols(head, data, folds, cfg.metric)
            row["val_metric"] = objective
            row["val_worst_fold"] = worst
            row["val_total_return"] = val_metrics.get("total_return", math.nan)
            row["val_trades"] = val_metrics.get("n_trades", math.nan)
        curve.append(row)
        say(
            label,
            f"iter {iteration:>3}  steps {env_steps:>9,}  {row['steps_per_s']:>6,.0f} steps/s  "
            f"return {row['episode_return_mean']:>8.3f}"
            + (f"  val {cfg.metric} {objective:.3f}" if math.isfinite(row["val_metric"]) else ""),
        )
        if out is not None and cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0:
            checkpoint = Path(algo.save_to_path(str((out / "checkpoint").resolve())))
        if report is not None and math.isfinite(row["val_metric"]):
            report(row)
        if last:
            break
    seconds = time.perf_counter() - t_start

    if out is not None:
        checkpoint = Path(algo.save_to_path(str((out / "checkpoint").resolve())))
        pd.DataFrame(curve).to_csv(out / "progress.csv", index=False)
    result_obj = TrainResult(
        config=cfg,
        out_dir=out,
        iterations=iteration,
        env_steps=env_steps,
        seconds=seconds,
        curve=curve,
        validation=val_metrics,
        objective=objective,
        data=data,
        checkpoint=checkpoint,
        algo=algo if keep_algo else None,
        head=head if keep_algo else None,
    )
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary(result_obj), indent=2, default=str))
    say(
        label,
        f"done: {iteration} iterations, {env_steps:,} env steps in {seconds:.0f}s "
        f"({result_obj.steps_per_s:,.0f} steps/s); validation {cfg.metric} {objective:.3f}",
    )
    if not keep_algo:
        algo.stop()
    return result_obj


def summary(result: TrainResult) -> dict[str, Any]:
    return {
        "algorithm": result.config.algorithm,
        "seed": result.config.seed,
        "iterations": result.iterations,
        "env_steps": result.env_steps,
        "seconds": round(result.seconds, 2),
        "steps_per_s": round(result.steps_per_s, 1),
        "metric": result.config.metric,
        "objective": result.objective,
        "validation": {k: (v if math.isfinite(v) else None) for k, v in result.validation.items()},
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "data": [
            *(t.describe() for t in result.data.trains.values()),
            *(v.describe() for v in result.data.validations.values()),
        ],
    }


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.train", description=__doc__.split("\n")[0]
    )
    add_config_args(parser)
    add_source_args(parser)
    parser.add_argument("--out", default=None, help="run folder (default runs/train-<time>)")
    parser.add_argument("--json", action="store_true", help="JSON log lines instead of text")
    args = parser.parse_args(argv)
    setup(args.json)
    cfg = config_from_args(args)
    out = Path(args.out or f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}")
    train(cfg, out)
    print(f"run folder: {out}")
    return 0


__all__ = [
    "ENV_ID",
    "PreparedData",
    "TrainResult",
    "build_algo_config",
    "init_ray",
    "prepare_data",
    "train",
]

if __name__ == "__main__":
    raise SystemExit(main())
