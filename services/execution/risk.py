"""Sizing and risk limits of the execution service (pure logic, no I/O; unit-tested in isolation).

Sizing: a target position in [-1, 1] (a fraction of the allowed size) becomes shares with

    stop      = stop_atr_multiple * ATR            (fallback_stop_pct * price before ATR is warm)
    full_size = min(max_position, floor(equity * risk_per_trade / stop))
    target    = round_half_away(target_position * full_size)

so a full-size position loses ``risk_per_trade`` of equity if the ATR stop is hit. The rule, the
Wilder ATR and the size limits (gross exposure clip, rebalance threshold) live in
``shared.sizing``, which the env, the backtester and the evaluation call too (issue 14 item 7);
they are re-exported here under their old names.

Limits, in the order they are applied to a signal (``RiskManager.decide``):

1. blocks: kill switch engaged, daily loss limit hit today, dead-man tripped, live account not
   confirmed, broker not connected -> refused;
2. trading day and hours (``TradingSchedule``) -> refused outside;
3. max position per symbol -> target clipped;
4. reduce-only -> the target may only move toward zero;
5. max gross exposure (sum of |shares * price| over symbols) -> a target that adds exposure is
   clipped to what the limit leaves;
6. delta = target - (position + working orders); zero -> nothing to do; a delta smaller than
   ``rebalance_threshold`` x full size that keeps the position's side -> nothing to do;
7. max orders per minute (wall clock, a sliding 60 s window) -> refused.

Time. Trading hours, trading days and the trading "day" of the daily loss limit are evaluated on
the BAR's timestamp (the close of the bar the signal decided on), not on the wall clock. A replay of
2020 history then trades exactly the sessions it would have traded in 2020 (with the wall clock a
replay run at night or on a weekend would refuse every order), and with live bars the bar close is
within seconds of the wall clock anyway. Orders per minute and the dead-man rule are about this
process and its peers, so they use the wall clock.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import time
import warnings
import zoneinfo
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from execution.safety import SafetySwitches
from shared.logs import event
from shared.paper_config import PaperTradingConfig, TradingHours
from shared.sizing import (
    WilderATR,
    clip_to_gross_exposure,
    full_size,
    round_half_away,
    stop_distance,
    target_fraction,
    target_shares,
    within_rebalance_threshold,
)

__all__ = [
    "Decision",
    "RateLimiter",
    "RiskLimits",
    "RiskManager",
    "TradingHours",
    "TradingSchedule",
    "WilderATR",
    "full_size",
    "round_half_away",
    "stop_distance",
    "target_fraction",
    "target_shares",
]

log = logging.getLogger("execution.risk")


class TradingSchedule:
    """Trading days, local session hours and the exchange calendar's holidays."""

    def __init__(self, hours: TradingHours, weekdays: frozenset[int]) -> None:
        self.hours = hours
        self.tz = zoneinfo.ZoneInfo(hours.tz)
        self.weekdays = weekdays
        self.start_min, self.end_min = hours.minutes()
        self._last_local: tuple[int, dt.datetime | None] = (0, None)
        if hours.calendar:
            # load now: building the calendar takes ~0.5 s, which must not stall the first signal
            _calendar(hours.calendar)

    def local(self, ts_ns: int) -> dt.datetime:
        # one conversion per bar time: a signal asks for it several times (hours, day, loss)
        cached_ts, cached = self._last_local
        if cached_ts == ts_ns and cached is not None:
            return cached
        when = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).astimezone(self.tz)
        self._last_local = (ts_ns, when)
        return when

    def day(self, ts_ns: int) -> str:
        """The trading day (local date, ISO) that ``ts_ns`` belongs to."""
        return self.local(ts_ns).date().isoformat()

    def refusal(self, ts_ns: int) -> str | None:
        """None when ``ts_ns`` is inside the trading window, else why not."""
        when = self.local(ts_ns)
        if when.weekday() not in self.weekdays:
            stamp = when.strftime("%Y-%m-%d %H:%M %Z")  # formatted only for a refusal
            return f"outside trading days: {stamp} is a {when.strftime('%a')}"
        minute = when.hour * 60 + when.minute + (when.second + when.microsecond / 1e6) / 60.0
        if not (self.start_min <= minute <= self.end_min):
            stamp = when.strftime("%Y-%m-%d %H:%M %Z")
            return f"outside trading hours {self.hours.start}-{self.hours.end}: {stamp}"
        if self.hours.calendar:
            session = _is_session(self.hours.calendar, when.date().isoformat())
            if session is False:
                return f"not a {self.hours.calendar} session: {when.date().isoformat()} (holiday)"
        return None


@functools.lru_cache(maxsize=8)
def _calendar(name: str) -> Any:
    import exchange_calendars

    with warnings.catch_warnings():  # exchange_calendars' pandas deprecation noise
        warnings.simplefilter("ignore")
        return exchange_calendars.get_calendar(name, start="1990-01-01")


@functools.lru_cache(maxsize=4096)
def _is_session(calendar: str, day: str) -> bool | None:
    """True/False from the exchange calendar; None outside the calendar's range (not checked)."""
    cal = _calendar(calendar)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(cal.is_session(day))
    except Exception:  # DateOutOfBounds and friends: fall back to the weekday rule
        event(log, "calendar_out_of_range", logging.WARNING, calendar=calendar, day=day)
        return None


class RateLimiter:
    """At most ``limit`` events in any ``window_s`` seconds (sliding window)."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()

    def allowed(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self._trim(now)
        return len(self._times) < self.limit

    def record(self, now: float | None = None) -> None:
        self._times.append(time.monotonic() if now is None else now)

    def count(self, now: float | None = None) -> int:
        self._trim(time.monotonic() if now is None else now)
        return len(self._times)


@dataclass(frozen=True)
class RiskLimits:
    """The numbers the manager enforces (paper config merged with env overrides)."""

    risk_per_trade: float
    max_position: int
    max_gross_exposure: float
    max_orders_per_minute: int
    max_daily_loss: float
    stop_atr_multiple: float
    fallback_stop_pct: float
    reduce_only: bool = False
    rebalance_threshold: float = 0.0

    @classmethod
    def from_config(cls, cfg: PaperTradingConfig) -> RiskLimits:
        return cls(
            risk_per_trade=cfg.risk_per_trade,
            max_position=cfg.max_position,
            max_gross_exposure=cfg.max_gross_exposure,
            max_orders_per_minute=cfg.max_orders_per_minute,
            max_daily_loss=cfg.max_daily_loss,
            stop_atr_multiple=cfg.stop_atr_multiple,
            fallback_stop_pct=cfg.fallback_stop_pct,
            reduce_only=cfg.reduce_only,
            rebalance_threshold=cfg.rebalance_threshold,
        )


@dataclass(frozen=True)
class Decision:
    """What to do about one signal: send ``delta`` shares (signed), or nothing and why."""

    target: int  # shares after limits
    delta: int  # signed shares to order (0: nothing)
    refused: str = ""  # non-empty: refused, with the reason
    notes: tuple[str, ...] = ()  # limits that clipped the target

    @property
    def send(self) -> bool:
        return not self.refused and self.delta != 0


@dataclass
class RiskManager:
    """Limits, sizing and the per-signal decision. The switches that block trading (kill, daily
    loss, dead-man, live guard, reduce-only) belong to ``switches`` (execution.safety); the
    properties below only read and write through to it."""

    limits: RiskLimits
    schedule: TradingSchedule
    switches: SafetySwitches | None = None  # None: in-memory switches from the limits
    rate: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.rate = RateLimiter(self.limits.max_orders_per_minute)
        if self.switches is None:
            self.switches = SafetySwitches(reduce_only=self.limits.reduce_only)

    @property
    def safety(self) -> SafetySwitches:
        assert self.switches is not None  # set in __post_init__
        return self.switches

    @property
    def killed(self) -> bool:
        return self.safety.killed

    @killed.setter
    def killed(self, on: bool) -> None:
        self.safety.killed = on

    @property
    def halted_day(self) -> str:
        return self.safety.halted_day

    @halted_day.setter
    def halted_day(self, day: str) -> None:
        self.safety.halted_day = day

    @property
    def dead_man(self) -> str:
        return self.safety.dead_man

    @dead_man.setter
    def dead_man(self, reason: str) -> None:
        self.safety.dead_man = reason

    @property
    def live_refused(self) -> str:
        return self.safety.live_refused

    @live_refused.setter
    def live_refused(self, reason: str) -> None:
        self.safety.live_refused = reason

    def blocked(self, day: str) -> str:
        """Why no new order may be sent now ('' when none blocks)."""
        return self.safety.blocked(day, self.limits.max_daily_loss)

    def sizing(
        self, target_position: float, equity: float, price: float, atr: float | None
    ) -> tuple[int, int]:
        """(desired signed shares, full size) for a target in [-1, 1]."""
        stop = stop_distance(
            price, atr, self.limits.stop_atr_multiple, self.limits.fallback_stop_pct
        )
        full = full_size(equity, stop, self.limits.risk_per_trade, self.limits.max_position)
        fraction = target_fraction(target_position)
        return round_half_away(fraction * full), full

    def decide(
        self,
        *,
        desired: int,
        position: float,
        working: float,
        price: float,
        other_exposure: float,
        bar_ts_ns: int,
        now: float | None = None,
        full: int = 0,
    ) -> Decision:
        """Apply the limits to a desired signed share target (see the module docstring)."""
        day = self.schedule.day(bar_ts_ns)
        block = self.blocked(day)
        if block:
            return Decision(target=int(position), delta=0, refused=block)
        outside = self.schedule.refusal(bar_ts_ns)
        if outside:
            return Decision(target=int(position), delta=0, refused=outside)
        notes: list[str] = []
        target = desired
        cap = self.limits.max_position
        if abs(target) > cap:
            target = int(math.copysign(cap, target))
            notes.append(f"max_position {cap}")
        current = round(position)
        if self.safety.reduce_only:
            if current == 0 or (target != 0 and (target > 0) != (current > 0)):
                reduced = 0
            else:
                reduced = int(math.copysign(min(abs(target), abs(current)), current))
            if reduced != target:
                notes.append("reduce_only")
                target = reduced
        clipped = clip_to_gross_exposure(
            target, current, price, other_exposure, self.limits.max_gross_exposure
        )
        if clipped != target:
            target = clipped
            notes.append(f"max_gross_exposure {self.limits.max_gross_exposure:g}")
        delta = target - round(position + working)
        if delta == 0:
            return Decision(target=target, delta=0, notes=tuple(notes))
        held = round(position + working)
        if within_rebalance_threshold(target, held, full, self.limits.rebalance_threshold):
            notes.append(f"rebalance_threshold {self.limits.rebalance_threshold:g}")
            return Decision(target=held, delta=0, notes=tuple(notes))
        if not self.rate.allowed(now):
            return Decision(
                target=target,
                delta=0,
                notes=tuple(notes),
                refused=f"max_orders_per_minute {self.limits.max_orders_per_minute} reached",
            )
        return Decision(target=target, delta=delta, notes=tuple(notes))

    def daily_loss_hit(self, day: str, start_equity: float, equity: float) -> bool:
        """True the first time the day's loss reaches the limit (the caller flattens). A
        non-finite equity or a non-positive start is no evidence of a loss (a broken number)."""
        if self.halted_day == day:
            return False
        if not (math.isfinite(start_equity) and math.isfinite(equity)):
            return False
        if start_equity <= 0:
            return False
        if start_equity - equity >= self.limits.max_daily_loss:
            self.safety.halt_day(day)  # persisted by the switches
            return True
        return False
