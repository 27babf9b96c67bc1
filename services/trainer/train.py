"""Train one policy with RLlib (new API stack) on the trading env, top to bottom.

    python -m trainer.train --profile quick [--algorithm PPO] [--lr 1e-3 ...] [--out runs/x]

What happens, in order (every step is a function below):

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
import functools
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

from shared.backtest import AccountConfig, BacktestResult, run_policy
from shared.env import ENV_ID
from shared.env_config import EnvConfig
from shared.env_market import MarketData, prepare_market
from shared.observation import build_observations
from trainer.config import TrainConfig, add_source_args, source_overrides
from trainer.progress import quiet_ray, say, setup

RLLIB_ENV = "rltrader-trading"


# ----------------------------------------------------------------------------- 1. Ray


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


# ----------------------------------------------------------------------------- 2. data


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass
class SliceData:
    """One evaluation slice: its bars, env observations and where trading starts."""

    name: str
    env_config: EnvConfig
    market: MarketData
    bars: pd.DataFrame

    @property
    def start(self) -> int:
        return self.market.first

    @functools.cached_property
    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """(obs with position 0, valid rows) for every bar; the env's rows before its first
        decision are zeros, but a backtest's first decision reads the bar before the slice."""
        feats = self.market.features
        valid = np.asarray(np.isfinite(feats).all(axis=1), dtype=bool)
        obs = np.zeros((len(feats), feats.shape[1] + 1), dtype=np.float32)
        obs[valid] = build_observations(feats[valid], np.zeros(int(valid.sum())))
        return obs, valid

    def describe(self) -> dict[str, Any]:
        """The bars the slice covers, as ``shared.data.content_hash`` identifies them: from the
        slice's start (the whole history for an open start, warm-up included) to its end."""
        idx = self.market.index
        start = self.env_config.start
        s0 = 0 if start is None else int(np.searchsorted(idx.asi8, _utc(start).value))
        return {
            "role": self.name,
            "source": self.env_config.source,
            "symbol": self.env_config.symbol,
            "start": idx[s0].isoformat(),
            "end": idx[-1].isoformat(),
            "rows": len(idx) - s0,
            "content_hash": self.market.data_hash,
        }


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


def load_slice(
    cfg: TrainConfig, split: str, normaliser: dict[str, Any] | None, symbol: str | None = None
) -> SliceData:
    from shared.data import load_bars

    symbol = symbol or cfg.symbol
    env_cfg = cfg.env_config(split, normaliser, symbol)
    market = prepare_market(env_cfg)
    bars = load_bars(cfg.source, symbol)
    bars = bars.iloc[: len(market.index)]  # prepare_market cut at the slice's end the same way
    if not bars.index.equals(market.index):
        raise RuntimeError(f"{split}: bars and env market data are not aligned")
    return SliceData(split, env_cfg, market, bars)


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


# ----------------------------------------------------------------------------- policy head


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


def setup_torch(cfg: TrainConfig) -> None:
    import torch

    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)


def load_module(checkpoint: str | Path) -> Any:
    """The trained RLModule from a checkpoint written by ``train`` (no env, no Ray needed)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = Path(checkpoint).resolve() / "learner_group" / "learner" / "rl_module" / "default_policy"
    return RLModule.from_checkpoint(str(path))


# ----------------------------------------------------------------------------- CLI


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--profile`` plus one ``--<field>`` per TrainConfig field (JSON for lists/dicts)."""
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    for name in TrainConfig.__struct_fields__:
        parser.add_argument(
            "--" + name.replace("_", "-").rstrip("-"),
            dest=name,
            default=None,
            help=f"TrainConfig.{name}",
        )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The profile with every ``--<field>`` given; ``--source file|barstore --path P`` becomes
    a source spec (``trainer.config.source_overrides``), ``--symbols A,B`` a list."""
    overrides: dict[str, Any] = {}
    for name in TrainConfig.__struct_fields__:
        raw = getattr(args, name, None)
        if raw is None:
            continue
        if name == "symbols" and not raw.lstrip().startswith("["):
            overrides[name] = [s.strip() for s in raw.split(",") if s.strip()]
            continue
        try:
            overrides[name] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[name] = raw
    if overrides.get("symbols") and "symbol" not in overrides:
        overrides["symbol"] = overrides["symbols"][0]
    if overrides.get("source") in ("file", "barstore"):
        dated = any(k in overrides for k in ("train_end", "val_start", "val_end", "test_start"))
        given = overrides.get("symbols") or (
            [overrides["symbol"]] if "symbol" in overrides else None
        )
        overrides.update(
            source_overrides(
                overrides["source"],
                getattr(args, "path", None),
                symbols=given,
                columns=getattr(args, "columns", None),
                tz=getattr(args, "tz", "UTC"),
                label=getattr(args, "label", "close"),
                bar=getattr(args, "bar", None),
                dated=dated,
            )
        )
    elif getattr(args, "path", None):
        raise SystemExit("--path needs --source file or --source barstore")
    return TrainConfig.profile(args.profile, **overrides)


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
    "PolicyHead",
    "PreparedData",
    "SliceData",
    "TrainResult",
    "backtest_policy",
    "build_algo_config",
    "init_ray",
    "load_module",
    "prepare_data",
    "train",
]

if __name__ == "__main__":
    raise SystemExit(main())
