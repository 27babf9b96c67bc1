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

Where the parts live: the config in ``shared.env_config``, the market preparation (bars, features,
normaliser, spaces) in ``shared.env_market``, the vectorised env in ``shared.vector_env``; this
module holds the single env and the RLlib / gymnasium glue.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shared.env_config import EnvConfig
from shared.env_market import MarketData, env_spaces, full_position_exposure, prepare_market
from shared.env_risk import RiskState, day_ids, stop_triggered
from shared.observation import build_observation
from shared.rebalancing import clip_target, rebalance, resize
from shared.vector_env import VectorTradingEnv

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
        self.observation_space, self.action_space = env_spaces(self.config, self.market)
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
        self.dsr_b = self.market.prior_variance(self.t) * full_position_exposure(
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
            vector_entry_point="shared.vector_env:VectorTradingEnv",
        )
    return env_id
