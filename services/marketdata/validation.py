"""Every bar is checked before it is published; a bad one is quarantined, never published.

Rules, in order (``BarValidator.check``):

1. sanity: finite prices > 0, ``high >= max(open, close)``, ``low <= min(open, close)``,
   volume >= 0, ``bar_open_ts < ts_event`` -> quarantined (reason ``ohlc: ...``);
2. a bar with the close time of one already accepted: identical (OHLCV equal to 1e-9 relative)
   -> an exact duplicate, dropped and counted (a reconnect's backfill overlapping the live
   stream); different -> a conflicting duplicate, quarantined;
3. a close time before the symbol's last accepted close -> quarantined (``not monotonic``);
4. otherwise accepted; missing bars before it (against the exchange calendar:
   ``shared.sessions``) are counted as gaps, the bar is still published.

Quarantined bars are kept with their reason in ``quarantine.sqlite`` (table ``quarantine``) under
the marketdata state dir, counted per reason in ``status`` and the heartbeat detail, and logged at
most once per reason per minute.
"""

from __future__ import annotations

import collections
import enum
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from shared import sessions
from shared.logs import event
from shared.messages import Bar

log = logging.getLogger("marketdata.validation")

BAR_SECONDS = {"1d": 86_400, "1h": 3600, "30m": 1800, "5m": 300, "1m": 60}
LOG_EVERY_S = 60.0
RECENT_BARS = 2048  # per symbol: how far back an exact duplicate is recognised


class Verdict(enum.Enum):
    PUBLISH = "publish"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


class Quarantine:
    """Quarantined bars with their reason, in a small SQLite table (``path``)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY, symbol TEXT NOT NULL,"
            " ts_event INTEGER NOT NULL, reason TEXT NOT NULL, bar TEXT NOT NULL,"
            " quarantined_at INTEGER NOT NULL)"
        )
        self._db.commit()

    def add(self, bar: Bar, reason: str) -> None:
        self._db.execute(
            "INSERT INTO quarantine (symbol, ts_event, reason, bar, quarantined_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                bar.symbol,
                bar.ts_event,
                reason,
                json.dumps(msgspec.to_builtins(bar)),
                time.time_ns(),
            ),
        )
        self._db.commit()

    def rows(self) -> list[dict[str, Any]]:
        cur = self._db.execute("SELECT symbol, ts_event, reason, bar FROM quarantine ORDER BY id")
        return [
            {"symbol": s, "ts_event": ts, "reason": r, "bar": json.loads(b)}
            for s, ts, r, b in cur.fetchall()
        ]

    def close(self) -> None:
        self._db.close()


def sanity_error(bar: Bar) -> str | None:
    """Why ``bar`` is not a possible bar, or None."""
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(math.isfinite(p) and p > 0 for p in prices):
        return "ohlc: prices must be finite and > 0"
    if not math.isfinite(bar.volume) or bar.volume < 0:
        return "ohlc: volume must be finite and >= 0"
    if bar.high < max(bar.open, bar.close):
        return "ohlc: high below open or close"
    if bar.low > min(bar.open, bar.close):
        return "ohlc: low above open or close"
    if bar.bar_open_ts >= bar.ts_event:
        return "ohlc: bar opens at or after its close"
    return None


def same_bar(a: Bar, b: Bar) -> bool:
    fields = ("open", "high", "low", "close", "volume")
    return a.bar_open_ts == b.bar_open_ts and all(
        math.isclose(getattr(a, f), getattr(b, f), rel_tol=1e-9, abs_tol=1e-12) for f in fields
    )


class BarValidator:
    """Decides, per bar, publish / drop a duplicate / quarantine (see the module docstring)."""

    def __init__(
        self,
        quarantine: Quarantine,
        calendar: str = sessions.DEFAULT_CALENDAR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quarantine = quarantine
        self.calendar = calendar
        self.clock = clock
        self.last_close: dict[str, int] = {}
        self._recent: dict[str, collections.OrderedDict[int, Bar]] = {}
        self.duplicates = 0
        self.gaps = 0
        self.quarantined: collections.Counter[str] = collections.Counter()
        self._logged: dict[str, float] = {}

    def check(self, bar: Bar) -> Verdict:
        reason = sanity_error(bar)
        recent = self._recent.setdefault(bar.symbol, collections.OrderedDict())
        if reason is None:
            seen = recent.get(bar.ts_event)
            if seen is not None:
                if same_bar(seen, bar):
                    self.duplicates += 1
                    return Verdict.DUPLICATE
                reason = "conflicting duplicate: same close time, different bar"
            elif bar.ts_event <= self.last_close.get(bar.symbol, 0):
                reason = "not monotonic: closes before the last published bar"
        if reason is not None:
            self._quarantine(bar, reason)
            return Verdict.QUARANTINED
        self._count_gap(bar)
        self.last_close[bar.symbol] = bar.ts_event
        recent[bar.ts_event] = bar
        while len(recent) > RECENT_BARS:
            recent.popitem(last=False)
        return Verdict.PUBLISH

    def _count_gap(self, bar: Bar) -> None:
        prev = self.last_close.get(bar.symbol)
        if prev is None:
            return
        if bar.timeframe == "1d":
            missing = sessions.missing_sessions(prev, bar.ts_event, self.calendar)
        elif bar.timeframe in BAR_SECONDS:
            missing = sessions.missing_intraday_bars(
                prev, bar.ts_event, BAR_SECONDS[bar.timeframe], self.calendar
            )
        else:
            return
        if missing:
            self.gaps += missing
            event(log, "bar_gap", logging.WARNING, symbol=bar.symbol, missing=missing)

    def _quarantine(self, bar: Bar, reason: str) -> None:
        self.quarantine.add(bar, reason)
        self.quarantined[reason] += 1
        now = self.clock()
        if now - self._logged.get(reason, -math.inf) >= LOG_EVERY_S:
            self._logged[reason] = now
            event(
                log,
                "bar_quarantined",
                logging.WARNING,
                symbol=bar.symbol,
                ts_event=bar.ts_event,
                reason=reason,
                count=self.quarantined[reason],
            )

    def status(self) -> dict[str, Any]:
        return {
            "quarantined": sum(self.quarantined.values()),
            "quarantine_reasons": dict(self.quarantined),
            "duplicates_dropped": self.duplicates,
            "gaps": self.gaps,
        }
