"""Sizing and risk limits of the execution service (pure logic, no I/O; unit-tested in isolation).

Sizing: a target position in [-1, 1] (a fraction of the allowed size) becomes shares with

    stop      = stop_atr_multiple * ATR            (fallback_stop_pct * price before ATR is warm)
    full_size = min(max_position, floor(equity * risk_per_trade / stop))
    target    = round_half_away(target_position * full_size)

so a full-size position loses ``risk_per_trade`` of equity if the ATR stop is hit. The ATR is the
seeded Wilder average the ``ta`` package computes (the first true range is high - low, the first
value is the plain mean of ``period`` true ranges, then ``atr = (atr * (n - 1) + tr) / n``), the
same definition ``shared.features`` uses, so backtest and live size alike.

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
from shared.validate import MAX_PRICE

log = logging.getLogger("execution.risk")


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


def target_shares(
    target_position: float, equity: float, stop: float, risk_per_trade: float, max_position: int
) -> int:
    """Signed shares for a target in [-1, 1] (values outside are clipped; NaN/inf raise)."""
    fraction = target_fraction(target_position)
    return round_half_away(fraction * full_size(equity, stop, risk_per_trade, max_position))


def target_fraction(target_position: float) -> float:
    """The target clipped to [-1, 1]. A non-finite target is a bug upstream, never a position:
    ``ValueError`` (``min(1, max(-1, nan))`` would be -1, a full short)."""
    value = float(target_position)
    if not math.isfinite(value):
        raise ValueError(f"target_position must be finite, got {value}")
    return min(1.0, max(-1.0, value))


class TradingSchedule:
    """Trading days, local session hours and the exchange calendar's holidays."""

    def __init__(self, hours: TradingHours, weekdays: frozenset[int]) -> None:
        self.hours = hours
        self.tz = zoneinfo.ZoneInfo(hours.tz)
        self.weekdays = weekdays
        self.start_min, self.end_min = hours.minutes()
        if hours.calendar:
            # load now: building the calendar takes ~0.5 s, which must not stall the first signal
            _calendar(hours.calendar)

    def local(self, ts_ns: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).astimezone(self.tz)

    def day(self, ts_ns: int) -> str:
        """The trading day (local date, ISO) that ``ts_ns`` belongs to."""
        return self.local(ts_ns).date().isoformat()

    def refusal(self, ts_ns: int) -> str | None:
        """None when ``ts_ns`` is inside the trading window, else why not."""
        when = self.local(ts_ns)
        stamp = when.strftime("%Y-%m-%d %H:%M %Z")
        if when.weekday() not in self.weekdays:
            return f"outside trading days: {stamp} is a {when.strftime('%a')}"
        minute = when.hour * 60 + when.minute + (when.second + when.microsecond / 1e6) / 60.0
        if not (self.start_min <= minute <= self.end_min):
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
        if price > 0 and abs(target) * price + other_exposure > self.limits.max_gross_exposure:
            room = max(0, math.floor((self.limits.max_gross_exposure - other_exposure) / price))
            same_side = current != 0 and (target > 0) == (current > 0)
            allowed = max(room, abs(current)) if same_side else room
            if abs(target) > allowed:
                target = int(math.copysign(allowed, target)) if allowed else 0
                notes.append(f"max_gross_exposure {self.limits.max_gross_exposure:g}")
        delta = target - round(position + working)
        if delta == 0:
            return Decision(target=target, delta=0, notes=tuple(notes))
        held = round(position + working)
        same_side = target != 0 and held != 0 and (target > 0) == (held > 0)
        if same_side and abs(delta) < self.limits.rebalance_threshold * full:
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
