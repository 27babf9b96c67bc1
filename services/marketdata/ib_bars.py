"""Bar arithmetic of the ``ib`` source: IB bars and 5-second bars -> ``shared.messages.Bar``.

Daily bars are stamped at their session's close from the exchange calendar (``shared.sessions``:
16:00 New York, 13:00 on half days), the simulator's replay does the same, so both agree.
``seq`` is the bar's number since the epoch (days for daily bars, bar lengths otherwise), stable
across restarts.
"""

from __future__ import annotations

import collections
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from shared import sessions
from shared.messages import Bar

NS = 1_000_000_000
NY = ZoneInfo("America/New_York")
BAR_SECONDS = {"1d": 86_400, "1h": 3600, "30m": 1800, "5m": 300, "1m": 60}


# ---------------------------------------------------------------------------- bar arithmetic


def session_close_ns(day: dt.date) -> int:
    """The close of ``day``'s session, ns UTC (the label of a daily bar; half days at 13:00)."""
    return sessions.session_close_ns(day)


def session_open_ns(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(9, 30), NY).timestamp()) * NS


def make_bar(
    symbol: str, timeframe: str, close_ns: int, o: float, h: float, lo: float, c: float, v: float
) -> Bar:
    if timeframe == "1d":
        day = dt.datetime.fromtimestamp(close_ns / NS, NY).date()
        open_ns = session_open_ns(day)
        seq = sessions.session_number(day)  # consecutive trading days: no weekend 'gaps'
    else:
        open_ns = close_ns - BAR_SECONDS[timeframe] * NS
        seq = close_ns // (BAR_SECONDS[timeframe] * NS)
    return Bar(
        symbol=symbol,
        timeframe=timeframe,
        bar_open_ts=open_ns,
        open=float(o),
        high=float(h),
        low=float(lo),
        close=float(c),
        volume=max(0.0, float(v)),
        ts_event=close_ns,
        seq=int(seq),
    )


def historical_close_ns(date: dt.date | dt.datetime, timeframe: str) -> int:
    """Close of an IB historical bar: its date's session close (daily) or start + length."""
    if timeframe == "1d":
        day = date.astimezone(NY).date() if isinstance(date, dt.datetime) else date
        return session_close_ns(day)
    start = date if isinstance(date, dt.datetime) else dt.datetime.combine(date, dt.time(), dt.UTC)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    return int(start.timestamp()) * NS + BAR_SECONDS[timeframe] * NS


def from_bar_data(symbol: str, timeframe: str, bar: Any) -> Bar:
    """ib_async ``BarData`` (reqHistoricalData, keepUpToDate updates) -> ``Bar``."""
    close_ns = historical_close_ns(bar.date, timeframe)
    return make_bar(symbol, timeframe, close_ns, bar.open, bar.high, bar.low, bar.close, bar.volume)


def bucket_close_ns(start_ns: int, timeframe: str) -> int:
    """Close of the bar a 5-second bar starting at ``start_ns`` belongs to."""
    if timeframe == "1d":
        return session_close_ns(dt.datetime.fromtimestamp(start_ns / NS, NY).date())
    size = BAR_SECONDS[timeframe] * NS
    return start_ns - start_ns % size + size


def ib_duration(seconds: float, timeframe: str) -> str:
    """A historical request's duration covering ``seconds`` (IB: > 365 days in years)."""
    if timeframe != "1d" and seconds <= 86_400:
        return f"{max(60, math.ceil(seconds))} S"
    days = max(1, math.ceil(seconds / 86_400))
    return f"{days} D" if days <= 365 else f"{math.ceil(days / 365)} Y"


@dataclass
class FiveSecondAggregator:
    """5-second real-time bars -> bars of ``timeframe``, each complete at its close."""

    symbol: str
    timeframe: str
    close_ns: int | None = None
    ohlcv: list[float] = field(default_factory=list)

    def add(self, start_ns: int, o: float, h: float, lo: float, c: float, v: float) -> list[Bar]:
        done: list[Bar] = []
        close_ns = bucket_close_ns(start_ns, self.timeframe)
        if self.close_ns is not None and close_ns != self.close_ns:
            done.append(self._emit())  # a later bar began: the current one is closed
        if self.close_ns is None:
            self.close_ns, self.ohlcv = close_ns, [o, h, lo, c, v]
        else:
            agg = self.ohlcv
            agg[1], agg[2], agg[3], agg[4] = max(agg[1], h), min(agg[2], lo), c, agg[4] + v
        if start_ns + 5 * NS >= close_ns:  # the 5-second bar ending at the close
            done.append(self._emit())
        return done

    def _emit(self) -> Bar:
        assert self.close_ns is not None
        bar = make_bar(self.symbol, self.timeframe, self.close_ns, *self.ohlcv)
        self.close_ns, self.ohlcv = None, []
        return bar


class Pacer:
    """At most ``max_requests`` in any ``window_s`` (IB: 60 historical requests / 10 min)."""

    def __init__(self, max_requests: int, window_s: float, clock: Callable[[], float]) -> None:
        self.max = max_requests
        self.window_s = window_s
        self.clock = clock
        self.times: collections.deque[float] = collections.deque()

    def wait_s(self) -> float:
        now = self.clock()
        while self.times and now - self.times[0] >= self.window_s:
            self.times.popleft()
        if len(self.times) < self.max:
            return 0.0
        return self.times[0] + self.window_s - now

    def take(self) -> None:
        self.times.append(self.clock())
