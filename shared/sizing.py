"""THE sizing rule: how a target position in [-1, 1] becomes whole shares (issue 14 item 7).

The execution service trades with it, and the env (training reward), the backtester and the
evaluation call the same functions, so the gate scores the strategy that trades:

    stop      = stop_atr_multiple * ATR            (fallback_stop_pct * price before ATR is warm)
    full_size = min(max_position, floor(equity * risk_per_trade / stop))
    desired   = round_half_away(clip(target, -1, 1) * full_size)

then the limits that are about size (``position_after``): ``max_position`` (a cap),
``max_gross_exposure`` (a target that adds exposure is clipped to what the limit leaves), and the
``rebalance_threshold`` (a change smaller than that fraction of the full size that keeps the
position's side is not traded). A full-size position loses ``risk_per_trade`` of equity if the ATR
stop is hit.

When and at what price (execution's behaviour, which the backtester copies): a signal is decided
at the CLOSE of bar t; ``price`` is that close (the signal's ``bar_close``), ``atr`` is the Wilder
ATR after bar t (execution updates it when bar t arrives, before inference's signal for bar t),
``equity`` is the account marked at that close. The order fills at the next bar's open. Nothing
after bar t is read.

The ATR is the seeded Wilder average the ``ta`` package computes (the first true range is
high - low, the first value is the plain mean of ``period`` true ranges, then
``atr = (atr * (n - 1) + tr) / n``), the same definition ``shared.features`` uses.

Settings come from the paper-trading config (``SizingConfig.from_paper_config``); the defaults
are that file's defaults.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray

from shared.config import require
from shared.validate import MAX_PRICE

__all__ = [
    "SizingConfig",
    "WilderATR",
    "atr_series",
    "clip_to_gross_exposure",
    "full_size",
    "full_size_array",
    "position_after",
    "position_after_array",
    "round_half_away",
    "stop_distance",
    "target_fraction",
    "target_shares",
    "within_rebalance_threshold",
]


class SizingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The paper-trading config's sizing keys (same names, same defaults, same bounds)."""

    risk_per_trade: float = 0.01
    max_position: int = 100
    stop_atr_multiple: float = 2.0
    fallback_stop_pct: float = 0.02
    atr_period: int = 14
    rebalance_threshold: float = 0.1
    max_gross_exposure: float = 100_000.0

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.risk_per_trade) and 0 < self.risk_per_trade <= 0.2,
            "risk_per_trade",
            f"must be a fraction of equity in (0, 0.2], got {self.risk_per_trade}",
        )
        require(0 < self.max_position <= 10**9, "max_position", "must be in 1..1e9 shares")
        require(
            math.isfinite(self.stop_atr_multiple) and 0 < self.stop_atr_multiple <= 100,
            "stop_atr_multiple",
            f"must be in (0, 100], got {self.stop_atr_multiple}",
        )
        require(0 < self.fallback_stop_pct < 1, "fallback_stop_pct", "must be in (0, 1)")
        require(1 <= self.atr_period <= 1000, "atr_period", "must be in 1..1000")
        require(0 <= self.rebalance_threshold < 1, "rebalance_threshold", "must be in [0, 1)")
        require(
            math.isfinite(self.max_gross_exposure) and 0 < self.max_gross_exposure <= 1e12,
            "max_gross_exposure",
            f"must be in (0, 1e12], got {self.max_gross_exposure}",
        )

    @classmethod
    def from_paper_config(cls, cfg: Any) -> SizingConfig:
        """From a ``shared.paper_config.PaperTradingConfig`` (the file execution trades with)."""
        return cls(
            risk_per_trade=cfg.risk_per_trade,
            max_position=cfg.max_position,
            stop_atr_multiple=cfg.stop_atr_multiple,
            fallback_stop_pct=cfg.fallback_stop_pct,
            atr_period=cfg.atr_period,
            rebalance_threshold=cfg.rebalance_threshold,
            max_gross_exposure=cfg.max_gross_exposure,
        )


class WilderATR:
    """Online Average True Range with ``ta``'s seeding (see the module docstring)."""

    def __init__(self, period: int = 14) -> None:
        if period < 1:
            raise ValueError("period: must be >= 1")
        self.period = period
        self.bars_seen = 0
        self._trs: list[float] = []
        self._atr = math.nan
        self._prev_close = math.nan

    @property
    def value(self) -> float | None:
        return None if math.isnan(self._atr) else self._atr

    def update(self, high: float, low: float, close: float) -> float | None:
        """Add one bar; a bar with a non-finite or non-positive price is ignored (an infinite
        high would otherwise make the average infinite for good)."""
        if not all(math.isfinite(v) and 0 < v <= MAX_PRICE for v in (high, low, close)):
            return self.value
        if high < low:
            return self.value
        if self.bars_seen == 0:
            tr = high - low
        else:
            prev = self._prev_close
            tr = max(high - low, abs(high - prev), abs(low - prev))
        n = self.period
        if self.bars_seen < n:
            self._trs.append(tr)
            if len(self._trs) == n:
                self._atr = sum(self._trs) / n
        else:
            self._atr = (self._atr * (n - 1) + tr) / float(n)
        self._prev_close = close
        self.bars_seen += 1
        return self.value


def atr_series(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14
) -> NDArray[np.float64]:
    """``WilderATR`` fed bar by bar: element t is the ATR known at bar t's close (NaN while it
    warms up). The same object execution updates, so the values are bit-identical."""
    atr = WilderATR(period)
    h = np.asarray(high, dtype=np.float64).tolist()
    lo = np.asarray(low, dtype=np.float64).tolist()
    c = np.asarray(close, dtype=np.float64).tolist()
    out = np.full(len(c), np.nan)
    for i, (hi, lw, cl) in enumerate(zip(h, lo, c, strict=True)):
        value = atr.update(hi, lw, cl)
        if value is not None:
            out[i] = value
    return out


def _snap(x: float) -> float:
    """Undo float noise before an integer step: 0.29 * 50 is 14.499999999999998 and
    3000 / 1.2 is 2499.9999999999995 in floats; the rule means 14.5 and 2500 (share counts and
    fractions of them never need more than 9 decimals)."""
    return round(x, 9)


def round_half_away(x: float) -> int:
    """0.5 -> 1, -0.5 -> -1 (Python's round() would give 0 for both)."""
    return int(math.copysign(math.floor(abs(_snap(x)) + 0.5), x))


def stop_distance(
    price: float, atr: float | None, stop_atr_multiple: float, fallback_stop_pct: float
) -> float:
    """Distance from entry to the protective stop, in price units."""
    if atr is not None and atr > 0:
        return stop_atr_multiple * atr
    return fallback_stop_pct * price


def full_size(equity: float, stop: float, risk_per_trade: float, max_position: int) -> int:
    """Shares of a full-size position (target = +/-1): risk_per_trade of equity to the stop."""
    if not (math.isfinite(equity) and math.isfinite(stop) and equity > 0 and stop > 0):
        return 0
    return max(0, min(max_position, math.floor(_snap(equity * risk_per_trade / stop))))


def target_fraction(target_position: float) -> float:
    """The target clipped to [-1, 1]. A non-finite target is a bug upstream, never a position:
    ``ValueError`` (``min(1, max(-1, nan))`` would be -1, a full short)."""
    value = float(target_position)
    if not math.isfinite(value):
        raise ValueError(f"target_position must be finite, got {value}")
    return min(1.0, max(-1.0, value))


def target_shares(
    target_position: float, equity: float, stop: float, risk_per_trade: float, max_position: int
) -> int:
    """Signed shares for a target in [-1, 1] (values outside are clipped; NaN/inf raise)."""
    fraction = target_fraction(target_position)
    return round_half_away(fraction * full_size(equity, stop, risk_per_trade, max_position))


def clip_to_gross_exposure(
    target: int, current: int, price: float, other_exposure: float, max_gross_exposure: float
) -> int:
    """A target that would take |shares * price| over all symbols past the limit is clipped to
    what the limit leaves; an existing same-side position is never forced smaller by it."""
    if not (price > 0 and abs(target) * price + other_exposure > max_gross_exposure):
        return target
    room = max(0, math.floor((max_gross_exposure - other_exposure) / price))
    same_side = current != 0 and (target > 0) == (current > 0)
    allowed = max(room, abs(current)) if same_side else room
    if abs(target) > allowed:
        return int(math.copysign(allowed, target)) if allowed else 0
    return target


def within_rebalance_threshold(target: int, held: int, full: int, threshold: float) -> bool:
    """True when moving from ``held`` to ``target`` keeps the side and changes less than
    ``threshold`` x the full size: not worth an order (going flat or flipping always trades)."""
    same_side = target != 0 and held != 0 and (target > 0) == (held > 0)
    return same_side and abs(target - held) < threshold * full


def position_after(
    target_position: float,
    equity: float,
    price: float,
    atr: float | None,
    held: int,
    cfg: SizingConfig,
    other_exposure: float = 0.0,
) -> int:
    """Shares held after one decision: the sized target through the size limits, or ``held``
    when the change is inside the rebalance threshold (execution's ``RiskManager.decide``
    without the switches, hours and order rate, which are not about size)."""
    stop = stop_distance(price, atr, cfg.stop_atr_multiple, cfg.fallback_stop_pct)
    full = full_size(equity, stop, cfg.risk_per_trade, cfg.max_position)
    target = round_half_away(target_fraction(target_position) * full)
    if abs(target) > cfg.max_position:
        target = int(math.copysign(cfg.max_position, target))
    target = clip_to_gross_exposure(target, held, price, other_exposure, cfg.max_gross_exposure)
    if target != held and within_rebalance_threshold(target, held, full, cfg.rebalance_threshold):
        return held
    return target


# ------------------------------------------------------------------------------ arrays (vector env)


def full_size_array(
    equity: NDArray[np.float64],
    price: NDArray[np.float64],
    atr: NDArray[np.float64],
    cfg: SizingConfig,
) -> NDArray[np.float64]:
    """``full_size(equity, stop_distance(price, atr, ...), ...)`` row by row (NaN ATR = not
    warm). ``np.round`` stands in for ``round`` in the snap; both only remove float noise."""
    warm = np.isfinite(atr) & (atr > 0)
    stop = np.where(warm, cfg.stop_atr_multiple * np.where(warm, atr, 0.0), 0.0)
    stop = np.where(warm, stop, cfg.fallback_stop_pct * price)
    ok = np.isfinite(equity) & np.isfinite(stop) & (equity > 0) & (stop > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.floor(np.round(equity * cfg.risk_per_trade / np.where(ok, stop, 1.0), 9))
    return np.where(ok, np.clip(raw, 0.0, float(cfg.max_position)), 0.0)


def position_after_array(
    target_position: NDArray[np.float64],
    equity: NDArray[np.float64],
    price: NDArray[np.float64],
    atr: NDArray[np.float64],
    held: NDArray[np.float64],
    cfg: SizingConfig,
) -> NDArray[np.float64]:
    """``position_after`` for N independent single-symbol accounts (no other exposure)."""
    full = full_size_array(equity, price, atr, cfg)
    x = np.clip(target_position, -1.0, 1.0) * full
    target = np.copysign(np.floor(np.abs(np.round(x, 9)) + 0.5), x)
    target = np.clip(target, -float(cfg.max_position), float(cfg.max_position))
    over = (price > 0) & (np.abs(target) * price > cfg.max_gross_exposure)
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.maximum(0.0, np.floor(cfg.max_gross_exposure / np.where(price > 0, price, 1.0)))
    same = (held != 0) & ((target > 0) == (held > 0))
    allowed = np.where(same, np.maximum(room, np.abs(held)), room)
    target = np.where(over & (np.abs(target) > allowed), np.copysign(allowed, target), target)
    target = target + 0.0  # -0.0 -> 0.0
    keep_side = (target != 0) & (held != 0) & ((target > 0) == (held > 0))
    small = keep_side & (np.abs(target - held) < cfg.rebalance_threshold * full)
    return np.where((target != held) & small, held, target)
