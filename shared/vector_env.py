"""``VectorTradingEnv``: ``num_envs`` accounts of one ``EnvConfig`` stepped in one numpy call.

The same timing, sizing, costs, risk rules and rewards as ``shared.env.TradingEnv`` (see that
module's doc), array by array; a test checks sub-env trajectories against the single env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from shared.env_config import EnvConfig
from shared.env_market import MarketData, env_spaces, full_position_exposure, prepare_market
from shared.env_risk import day_ids, stop_levels
from shared.rebalancing import AccountConfig, rebalance_arrays
from shared.sizing import position_after_array

__all__ = ["VectorTradingEnv"]


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
        self.single_observation_space, self.single_action_space = env_spaces(
            self.config, self.market
        )
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
            self.market.prior_variance(int(t))
            * full_position_exposure(self.account, self.market, int(t))
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
