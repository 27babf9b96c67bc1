"""Bars from the price source, answered as IB historical data and 5-second real-time bars.

Historical bars are the source bars aggregated into the requested bar size. A source bar goes to
the bucket that contains its last instant (close - 1 ns): a daily bar stamped at the session close
lands on its own date, a one-minute bar closing 09:31:00 in the 09:30:00 bucket. Requested sizes
finer than the source come back at the source's resolution. ``whatToShow`` (TRADES, MIDPOINT,
BID, ASK ...) is answered from the same bars. Times are UTC.

The end of a request's window ("" = now) is the simulation clock: the close of the symbol's latest
bar, so replayed history answers like live data would have at that moment.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import re
from collections import deque
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibsim.models import SourceBar

NS = 1_000_000_000
DAY_S = 86_400

_BAR_UNITS = {
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": DAY_S,
    "days": DAY_S,
    "week": 7 * DAY_S,
    "weeks": 7 * DAY_S,
    "month": 30 * DAY_S,
    "months": 30 * DAY_S,
}
_DURATION_UNITS = {"S": 1, "D": DAY_S, "W": 7 * DAY_S, "M": 30 * DAY_S, "Y": 365 * DAY_S}


class BarRequestError(ValueError):
    """A historical request IB would refuse (bad bar size, bad duration, bad end time)."""


def parse_bar_size(text: str) -> int:
    """``"5 mins"`` -> 300 seconds."""
    match = re.fullmatch(r"\s*(\d+)\s+([A-Za-z]+)\s*", text)
    if not match or match.group(2).lower() not in _BAR_UNITS or int(match.group(1)) <= 0:
        raise BarRequestError(f"invalid bar size {text!r}")
    return int(match.group(1)) * _BAR_UNITS[match.group(2).lower()]


def parse_duration(text: str) -> int:
    """``"2 D"`` -> seconds (M = 30 days, Y = 365 days)."""
    match = re.fullmatch(r"\s*(\d+)\s*([SDWMY])\s*", text)
    if not match or int(match.group(1)) <= 0:
        raise BarRequestError(f"invalid duration {text!r}")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_ib_time(text: str) -> int:
    """An API date/time as ns UTC: ``20261126 22:50:00 UTC``, ``20261126-22:50:00``,
    ``20261126 17:50:00 US/Eastern``, ``20261126 22:50:00`` (taken as UTC) or ``20261126``."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d{8}", text):
            moment = dt.datetime.strptime(text, "%Y%m%d").replace(tzinfo=dt.UTC)
            return int(moment.timestamp()) * NS
        if re.fullmatch(r"\d{8}-\d{2}:\d{2}:\d{2}", text):
            moment = dt.datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=dt.UTC)
            return int(moment.timestamp()) * NS
        parts = text.split()
        moment = dt.datetime.strptime(parts[0] + parts[1], "%Y%m%d%H:%M:%S")
        zone = ZoneInfo(parts[2]) if len(parts) > 2 else dt.UTC
        return int(moment.replace(tzinfo=zone).timestamp()) * NS
    except (ValueError, IndexError, ZoneInfoNotFoundError):
        raise BarRequestError(f"invalid date/time {text!r}") from None


def format_exec_time(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / NS, dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")


def format_bar_time(start_s: int, bar_seconds: int, format_date: int) -> str:
    """IB's bar date: ``YYYYmmdd`` for daily and longer bars, else ``YYYYmmdd HH:MM:SS UTC``
    (formatDate=1) or epoch seconds (formatDate=2)."""
    moment = dt.datetime.fromtimestamp(start_s, dt.UTC)
    if bar_seconds >= DAY_S:
        return moment.strftime("%Y%m%d")
    if format_date == 2:
        return str(start_s)
    return moment.strftime("%Y%m%d %H:%M:%S UTC")


@dataclass(slots=True)
class AggregatedBar:
    start_s: int  # bucket start, epoch seconds UTC
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int

    def add(self, bar: SourceBar) -> None:
        self.high = max(self.high, bar.high)
        self.low = min(self.low, bar.low)
        self.close = bar.close
        total = self.volume + bar.volume
        if total > 0:
            self.wap = (self.wap * self.volume + _typical(bar) * bar.volume) / total
        self.volume = total
        self.count += 1


def _typical(bar: SourceBar) -> float:
    return (bar.high + bar.low + bar.close) / 3.0


def bucket_start(bar: SourceBar, bar_seconds: int) -> int:
    last_instant_s = (bar.close_ts - 1) // NS
    return last_instant_s - last_instant_s % bar_seconds


def aggregate(bars: list[SourceBar], bar_seconds: int) -> list[AggregatedBar]:
    out: list[AggregatedBar] = []
    for bar in bars:
        start = bucket_start(bar, bar_seconds)
        if out and out[-1].start_s == start:
            out[-1].add(bar)
        else:
            out.append(
                AggregatedBar(
                    start, bar.open, bar.high, bar.low, bar.close, bar.volume, _typical(bar), 1
                )
            )
    return out


def five_second_bars(bar: SourceBar) -> list[AggregatedBar]:
    """Split a source bar into 5-second bars along open -> first extreme -> second extreme -> close.

    The path visits the low first on an up bar and the high first on a down bar (the common
    assumption); every 5-second bar lies inside the source bar's range and together they reproduce
    its open, high, low, close and volume. Bars shorter than 15 s or longer than an hour are
    passed through as one bar stamped 5 s before the close.
    """
    seconds = round(bar.seconds)
    steps = seconds // 5
    close_s = bar.close_ts // NS
    if steps < 3 or seconds > 3600:
        return [
            AggregatedBar(
                close_s - 5, bar.open, bar.high, bar.low, bar.close, bar.volume, _typical(bar), 1
            )
        ]
    first, second = (bar.low, bar.high) if bar.close >= bar.open else (bar.high, bar.low)
    knots = [(0, bar.open), (steps // 3, first), ((2 * steps) // 3, second), (steps, bar.close)]

    def price_at(step: int) -> float:
        for (x0, y0), (x1, y1) in itertools.pairwise(knots):
            if x0 <= step <= x1:
                return y0 if x1 == x0 else y0 + (y1 - y0) * (step - x0) / (x1 - x0)
        return bar.close

    start_s = close_s - steps * 5
    volume = bar.volume / steps
    out = []
    for step in range(steps):
        p0, p1 = price_at(step), price_at(step + 1)
        high, low = max(p0, p1), min(p0, p1)
        out.append(
            AggregatedBar(start_s + 5 * step, p0, high, low, p1, volume, (high + low + p1) / 3.0, 1)
        )
    return out


class BarStore:
    """Recent source bars per symbol, in close-time order, bounded."""

    def __init__(self, max_bars_per_symbol: int) -> None:
        self._max = max_bars_per_symbol
        self._bars: dict[str, list[SourceBar]] = {}
        self._closes: dict[str, list[int]] = {}  # parallel to _bars, for bisection

    def add(self, bar: SourceBar) -> None:
        bars = self._bars.setdefault(bar.symbol, [])
        closes = self._closes.setdefault(bar.symbol, [])
        if closes and bar.close_ts <= closes[-1]:
            if bar.close_ts == closes[-1]:
                bars[-1] = bar  # a corrected repeat of the latest bar replaces it
                return
            bars.clear()  # the source rewound (a replay restarted): start the history again
            closes.clear()
        bars.append(bar)
        closes.append(bar.close_ts)
        if len(bars) > self._max + self._max // 4:
            # trim in chunks so appending stays amortised O(1)
            del bars[: len(bars) - self._max]
            del closes[: len(closes) - self._max]

    def latest(self, symbol: str) -> SourceBar | None:
        bars = self._bars.get(symbol)
        return bars[-1] if bars else None

    def window(self, symbol: str, start_ns: int, end_ns: int) -> list[SourceBar]:
        """Bars whose close lies in (start_ns, end_ns]."""
        closes = self._closes.get(symbol)
        if not closes:
            return []
        lo = bisect.bisect_right(closes, start_ns)
        hi = bisect.bisect_right(closes, end_ns)
        return self._bars[symbol][lo:hi]

    def clear(self) -> None:
        self._bars.clear()
        self._closes.clear()


class PacingLimiter:
    """IB's historical-data pacing: at most ``max_requests`` in any ``window_s`` seconds."""

    def __init__(self, max_requests: int, window_s: float) -> None:
        self._max = max_requests
        self._window_ns = int(window_s * NS)
        self._times: deque[int] = deque()

    def allow(self, now_ns: int) -> bool:
        while self._times and now_ns - self._times[0] >= self._window_ns:
            self._times.popleft()
        if len(self._times) >= self._max:
            return False
        self._times.append(now_ns)
        return True

    def clear(self) -> None:
        self._times.clear()
