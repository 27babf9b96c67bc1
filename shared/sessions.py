"""Exchange sessions from ``exchange_calendars``: session closes (early closes included), gaps
between bars, and when a closed market opens again.

One place for the calendar so marketdata (daily bars stamped at the session close, gap counts,
"market closed until ...") and the simulator (its replayed daily bars) agree to the nanosecond.
Outside the calendar's range (it starts in 1990 and ends about a year ahead) every function
falls back to the plain rule: weekdays, 09:30-16:00 New York.
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

NS = 1_000_000_000
NY = ZoneInfo("America/New_York")
DEFAULT_CALENDAR = "XNYS"
CALENDAR_START = "1990-01-01"


@functools.lru_cache(maxsize=8)
def exchange_calendar(name: str = DEFAULT_CALENDAR) -> Any:
    """The (cached: building one takes about a second) ``exchange_calendars`` calendar."""
    import exchange_calendars

    with warnings.catch_warnings():  # exchange_calendars' pandas deprecation noise
        warnings.simplefilter("ignore")
        return exchange_calendars.get_calendar(name, start=CALENDAR_START)


@functools.lru_cache(maxsize=8)
def _closes(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(session days as int64 ns at midnight UTC, session closes as int64 ns UTC), sorted."""
    cal = exchange_calendar(name)
    closes = cal.closes
    days = pd.DatetimeIndex(closes.index).tz_localize(None).as_unit("ns").asi8
    values = pd.DatetimeIndex(closes.array)
    if values.tz is None:
        values = values.tz_localize("UTC")
    return days, values.as_unit("ns").asi8


def _plain_close_ns(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(16, 0), NY).timestamp()) * NS


def session_close_ns(day: dt.date, calendar: str = DEFAULT_CALENDAR) -> int:
    """The close of ``day``'s session, ns UTC: 16:00 New York, 13:00 on a half day."""
    days, closes = _closes(calendar)
    key = pd.Timestamp(day).value
    i = int(np.searchsorted(days, key))
    if i < len(days) and days[i] == key:
        return int(closes[i])
    return _plain_close_ns(day)


def session_closes_ns(days: Sequence[dt.date], calendar: str = DEFAULT_CALENDAR) -> np.ndarray:
    """``session_close_ns`` for many days at once (replaying years of daily bars)."""
    return np.array([session_close_ns(d, calendar) for d in days], dtype=np.int64)


def session_number(day: dt.date, calendar: str = DEFAULT_CALENDAR) -> int:
    """1 + the number of sessions before ``day`` since ``CALENDAR_START``: consecutive trading days
    get consecutive numbers, so a daily bar's sequence number has no weekend or holiday gaps (a
    subscriber counts a real gap only) and is the same whatever process computes it (order
    references derived from it survive restarts). Past the calendar's range, weekdays count."""
    days, _ = _closes(calendar)
    key = pd.Timestamp(day).value
    if key < days[0]:
        return 1
    if key <= days[-1]:
        return int(np.searchsorted(days, key, side="right"))
    last = pd.Timestamp(days[-1]).date()
    return len(days) + int(np.busday_count(last + dt.timedelta(days=1), day + dt.timedelta(days=1)))


def is_session(day: dt.date, calendar: str = DEFAULT_CALENDAR) -> bool:
    days, _ = _closes(calendar)
    key = pd.Timestamp(day).value
    if not days[0] <= key <= days[-1]:
        return day.weekday() < 5
    i = int(np.searchsorted(days, key))
    return bool(i < len(days) and days[i] == key)


def missing_sessions(prev_close_ns: int, close_ns: int, calendar: str = DEFAULT_CALENDAR) -> int:
    """Sessions that closed strictly between two daily bars' closes (a gap in daily bars)."""
    if close_ns <= prev_close_ns:
        return 0
    days, closes = _closes(calendar)
    inside = days[0] <= pd.Timestamp(prev_close_ns).normalize().value <= days[-1]
    if inside and close_ns <= closes[-1]:
        lo = int(np.searchsorted(closes, prev_close_ns, side="right"))
        hi = int(np.searchsorted(closes, close_ns, side="left"))
        return max(0, hi - lo)
    start = dt.datetime.fromtimestamp(prev_close_ns / NS, NY).date() + dt.timedelta(days=1)
    end = dt.datetime.fromtimestamp(close_ns / NS, NY).date()
    return int(np.busday_count(start, end)) if end > start else 0


def missing_intraday_bars(
    prev_close_ns: int,
    close_ns: int,
    bar_seconds: int,
    calendar: str = DEFAULT_CALENDAR,
    limit: int = 10_000,
) -> int:
    """Bars of ``bar_seconds`` that should have closed strictly between two closes: those whose
    last second lies inside a session. Counted up to ``limit`` (a long outage is one big gap)."""
    step = bar_seconds * NS
    count = 0
    ts = prev_close_ns + step
    while ts < close_ns and count < limit:
        if is_open_ns(ts - NS, calendar):
            count += 1
        ts += step
    return count


def is_open_ns(ts_ns: int, calendar: str = DEFAULT_CALENDAR) -> bool:
    """Whether the market is in a session at ``ts_ns`` (regular hours, half days included)."""
    day = dt.datetime.fromtimestamp(ts_ns / NS, NY).date()
    if not is_session(day, calendar):
        return False
    open_ns = int(dt.datetime.combine(day, dt.time(9, 30), NY).timestamp()) * NS
    return open_ns <= ts_ns < session_close_ns(day, calendar)


def next_open_ns(ts_ns: int, calendar: str = DEFAULT_CALENDAR) -> int:
    """The next session open at or after ``ts_ns`` (09:30 New York of the next session day)."""
    day = dt.datetime.fromtimestamp(ts_ns / NS, NY).date()
    for _ in range(30):  # the longest market closure since 1990 is a few days
        if is_session(day, calendar):
            open_ns = int(dt.datetime.combine(day, dt.time(9, 30), NY).timestamp()) * NS
            if open_ns >= ts_ns:
                return open_ns
        day += dt.timedelta(days=1)
    return ts_ns


def market_closed_until(ts_ns: int, calendar: str = DEFAULT_CALENDAR) -> str | None:
    """``"closed until <iso ts>"`` while the market is closed at ``ts_ns``; None while open."""
    if is_open_ns(ts_ns, calendar):
        return None
    until = dt.datetime.fromtimestamp(next_open_ns(ts_ns, calendar) / NS, dt.UTC)
    return f"closed until {until.isoformat()}"
