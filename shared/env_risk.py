"""Execution's risk rules inside the training environment (issue 15 item 5), opt-in.

A policy trained with ``EnvConfig.risk`` set is trained under the limits it will trade with:

* max position: already the shared sizer's cap (``shared.sizing``), always on;
* ATR stop: when a position opens (from flat, or flipping side) at the decision on bar t, its
  stop is ``round(close_t - side * stop_distance(close_t, ATR_t), 2)``, the price execution's
  bracket puts its stop-loss child at (``execution.decision.build_order``: the signal's bar
  close, the sizing ATR, rounded to cents). Adding to or trimming a position keeps the stop.
  When a later decision bar's CLOSE is at or through the stop, the decision is forced flat: the
  position is closed at the next bar's open through the cost model (spread, slippage,
  commission), as every env fill is. Execution's stop order triggers inside the bar and fills at
  the stop (or the open on a gap); the env sees closes only (a decision is taken at a close and
  filled at the next open), so a bar that dips through the stop and recovers is not stopped here,
  and a stopped position pays the move to the next open. Documented difference, not hidden;
* daily loss halt: the day's baseline is the equity marked at the last close of the previous
  trading day (the episode's initial cash on its first day), as ``execution.daily_baseline``
  keeps it; when the equity marked at a decision bar's close is ``max_daily_loss`` or more
  below it, that decision and every later one of the same trading day are forced flat (flat and
  no new positions for the rest of the day, execution's halt + flatten). The trading day is the
  bar's close time in ``day_tz`` (execution's ``TradingSchedule.day``).

Off by default (``EnvConfig.risk = None``). With the rules on, an env episode equals
``shared.backtest.run_backtest(..., risk=rules)`` of the same actions (``shared.backtest_risk``
walks the decisions with these same functions; tested bar by bar), and ``trainer.evaluate``
scores a model under the rules its manifest records (``env_risk_rules``), so walk-forward
validation, the promotion gate and the hold-out judge the policy that was trained. Settings come
from the paper-trading config (``RiskRules.from_paper_config``), whose defaults are these.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shared.config import require
from shared.sizing import SizingConfig, stop_distance

__all__ = ["RiskRules", "RiskState", "day_ids", "stop_level", "stop_levels", "stop_triggered"]


class RiskRules(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which of execution's rules the env enforces, with the paper config's numbers."""

    stop_loss: bool = True
    daily_loss_halt: bool = True
    max_daily_loss: float = 5_000.0
    day_tz: str = "America/New_York"

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.max_daily_loss) and self.max_daily_loss >= 0,
            "max_daily_loss",
            f"must be a finite amount >= 0, got {self.max_daily_loss}",
        )

    @classmethod
    def from_paper_config(cls, cfg: Any) -> RiskRules:
        """From a ``shared.paper_config.PaperTradingConfig`` (the file execution trades with)."""
        return cls(max_daily_loss=cfg.max_daily_loss, day_tz=cfg.trading_hours.tz)


def day_ids(index: pd.DatetimeIndex, tz: str) -> NDArray[np.int64]:
    """Trading-day number of every bar: the local date of its close time in ``tz``."""
    idx = pd.DatetimeIndex(index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx
    local = idx.tz_convert(tz)
    midnight = local.normalize().tz_localize(None).as_unit("ns")  # the index may be in s/us
    return np.asarray(midnight.asi8 // 86_400_000_000_000, dtype=np.int64)


def stop_level(side: float, close: float, atr: float, sizing: SizingConfig) -> float:
    """Execution's bracket stop-loss price for a position of ``side`` opened at ``close``."""
    a = atr if math.isfinite(atr) else None
    dist = stop_distance(close, a, sizing.stop_atr_multiple, sizing.fallback_stop_pct)
    return round(close - math.copysign(1.0, side) * dist, 2)


def stop_levels(
    side: NDArray[np.float64],
    close: NDArray[np.float64],
    atr: NDArray[np.float64],
    sizing: SizingConfig,
) -> NDArray[np.float64]:
    """``stop_level`` row by row (rows with side 0 get NaN)."""
    out = np.full(len(side), np.nan)
    for i in np.flatnonzero(side != 0.0).tolist():
        out[i] = stop_level(float(side[i]), float(close[i]), float(atr[i]), sizing)
    return out


def stop_triggered(qty: float, stop: float, close: float) -> bool:
    """A long closing at or below its stop, or a short at or above it (no stop: NaN, False)."""
    return (qty > 0 and close <= stop) or (qty < 0 and close >= stop)


class RiskState:
    """One account's stop and daily-loss bookkeeping (the single env's; the vector env keeps
    the same numbers in arrays)."""

    def __init__(self, day: int, equity: float) -> None:
        self.stop = math.nan
        self.day = day
        self.day_start_equity = equity
        self.last_equity = equity
        self.halted_day: int | None = None

    def observe(self, day: int, equity: float, max_daily_loss: float) -> bool:
        """The equity marked at a decision bar's close; True when the day is (now) halted."""
        if day != self.day:
            self.day = day
            self.day_start_equity = self.last_equity
        self.last_equity = equity
        if self.halted_day != day and self.day_start_equity - equity >= max_daily_loss:
            self.halted_day = day
        return self.halted_day == day

    def after_fill(
        self, old_qty: float, new_qty: float, close: float, atr: float, sizing: SizingConfig
    ) -> None:
        """Set the stop when a position opens or flips; drop it when flat."""
        if new_qty == 0.0:
            self.stop = math.nan
        elif old_qty == 0.0 or (old_qty > 0) != (new_qty > 0):
            self.stop = stop_level(new_qty, close, atr, sizing)
