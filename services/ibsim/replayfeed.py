"""Price source (c), opt-in with ``IBSIM_PRICE_SOURCE=replay``: the simulator is the market.

It loads the packaged history itself (``shared.data.load_bars``), hands every bar that closes
before ``IBSIM_REPLAY_START`` to the exchange at once (the history a client backfills with
``reqHistoricalData``), then replays the rest on a simulated clock: ``IBSIM_REPLAY_SPEED`` = N
runs N x real time (a bar is handed over when the clock reaches its close), 0 = as fast as
possible. Fills, ``reqHistoricalData`` (keepUpToDate) and ``reqRealTimeBars`` all come from these
bars. ``IBSIM_REPLAY_AUTOSTART=false`` holds the clock until the control command
``replay {"action": "start"}`` (tests start clients first); ``pause`` holds it again, ``status``
says where it is. The market clock (``now_ns``) answers ``reqCurrentTime``.

With a state dir (``IBSIM_STATE_DIR``) the replay's cursor is saved after every step
(``replay-cursor.json``), so a restarted simulator resumes the market where it stopped (the bars
already replayed become history) instead of going back to ``IBSIM_REPLAY_START``; a different
dataset, symbol list, start or end ignores the saved cursor.

Daily bars are stamped at their session's close from the exchange calendar (``shared.sessions``:
13:00 New York on half days, 16:00 otherwise) and open at 09:30, so the simulator's book and the
bars marketdata publishes agree.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ibsim.exchange import Exchange
from shared import sessions
from shared.data import load_bars
from shared.logs import event

log = logging.getLogger("ibsim.replay")

_BAR_LENGTH_NS = {
    "30m": 30 * 60 * 1_000_000_000,
    "1h": 3600 * 1_000_000_000,
}
_DAILY_SESSION_NS = (6 * 3600 + 30 * 60) * 1_000_000_000  # 09:30 -> 16:00 New York


def bar_length_ns(timeframe: str) -> int:
    return _BAR_LENGTH_NS.get(timeframe, _DAILY_SESSION_NS)


def _stamps(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(close, open) ns UTC of each bar: daily bars at their session's close and 09:30 open."""
    timeframe = str(df.attrs.get("timeframe", "1d"))
    close_ts = df.index.as_unit("ns").asi8.copy()
    if timeframe not in _BAR_LENGTH_NS:  # daily
        days = df.index.tz_convert("America/New_York").date
        close_ts = sessions.session_closes_ns(list(days))
        opens = pd.DatetimeIndex(
            [pd.Timestamp(d).tz_localize("America/New_York") + pd.Timedelta("9h30m") for d in days]
        )
        return close_ts, opens.as_unit("ns").asi8.copy()
    return close_ts, close_ts - bar_length_ns(timeframe)


@dataclass
class _Series:
    symbol: str
    close_ts: np.ndarray  # int64 ns
    ohlcv: np.ndarray  # (n, 5)
    open_ts: np.ndarray  # int64 ns


class ReplayFeed:
    """Replays packaged bars into an ``Exchange`` on a simulated clock."""

    def __init__(
        self,
        exchange: Exchange,
        dataset: str,
        symbols: list[str],
        start: str,
        end: str = "",
        speed: float = 1.0,
        autostart: bool = True,
        cursor_file: Path | None = None,
    ) -> None:
        self.exchange = exchange
        self.cursor_file = cursor_file
        self._identity = {"dataset": dataset, "symbols": symbols, "start": start, "end": end}
        self.speed = speed
        self.series: dict[str, _Series] = {}
        start_ns = pd.Timestamp(start, tz="UTC").value
        end_ns = pd.Timestamp(end, tz="UTC").value if end else None
        for symbol in symbols:
            df = load_bars(dataset, symbol)
            close_ts, open_ts = _stamps(df)
            keep = close_ts < end_ns if end_ns is not None else np.ones(len(df), dtype=bool)
            self.series[symbol] = _Series(
                symbol,
                close_ts[keep],
                df[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)[keep],
                open_ts[keep],
            )
        self._first_live = {
            s: int(np.searchsorted(v.close_ts, start_ns)) for s, v in self.series.items()
        }
        live = [v.close_ts[self._first_live[s] :] for s, v in self.series.items()]
        self.timeline = np.unique(np.concatenate(live)) if live else np.array([], np.int64)
        self._next = dict(self._first_live)
        self.cursor = 0  # timeline steps replayed
        self.bars_fed = 0
        self.finished = len(self.timeline) == 0
        self._running = asyncio.Event()
        if autostart:
            self._running.set()
        self._clock_ns = start_ns  # market time while paused / between anchors
        self._anchor_wall = time.monotonic()
        history = [
            int(v.close_ts[self._first_live[s] - 1])
            for s, v in self.series.items()
            if self._first_live[s] > 0
        ]
        if history:
            self._clock_ns = max(history)
        self._restore()

    # ------------------------------------------------------------------ cursor persistence
    def _restore(self) -> None:
        if self.cursor_file is None or not self.cursor_file.exists():
            return
        saved = json.loads(self.cursor_file.read_text())
        if saved.get("identity") != self._identity:
            event(log, "replay_cursor_ignored", reason="different dataset, symbols or period")
            return
        self.cursor = min(int(saved["cursor"]), len(self.timeline))
        if self.cursor == 0:
            return
        horizon = int(self.timeline[self.cursor - 1])
        for symbol, s in self.series.items():
            self._next[symbol] = int(np.searchsorted(s.close_ts, horizon, side="right"))
        self._clock_ns = horizon
        self.finished = self.cursor >= len(self.timeline)
        event(log, "replay_resumed", cursor=self.cursor, of=len(self.timeline), at_ns=horizon)

    def _save(self) -> None:
        if self.cursor_file is None:
            return
        self.cursor_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cursor_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"identity": self._identity, "cursor": self.cursor}))
        os.replace(tmp, self.cursor_file)

    # ------------------------------------------------------------------ clock
    def now_ns(self) -> int:
        """The market clock: advances at ``speed`` x real time while running."""
        if self._running.is_set() and self.speed > 0 and not self.finished:
            elapsed = time.monotonic() - self._anchor_wall
            return self._clock_ns + int(elapsed * self.speed * 1e9)
        return self._clock_ns

    def _feed(self, symbol: str, index: int) -> None:
        s = self.series[symbol]
        o, h, lo, c, v = (float(x) for x in s.ohlcv[index])
        close_ts = int(s.close_ts[index])
        open_ts = int(s.open_ts[index])
        self.exchange.on_bar(symbol, close_ts, o, h, lo, c, v, bar_open_ts=open_ts)
        self.bars_fed += 1

    def load_history(self) -> int:
        """Hand every bar before the replay start, and every bar a resumed replay already
        played, to the exchange (what backfills answer)."""
        count = 0
        for symbol, first in self._next.items():
            for i in range(first):
                self._feed(symbol, i)
                count += 1
        event(log, "replay_history_loaded", bars=count, symbols=list(self.series))
        return count

    def start(self) -> None:
        if not self._running.is_set():
            self._clock_ns = self.now_ns()
            self._anchor_wall = time.monotonic()
            self._running.set()

    def pause(self) -> None:
        if self._running.is_set():
            self._clock_ns = self.now_ns()
            self._running.clear()

    def status(self) -> dict[str, object]:
        return {
            "running": self._running.is_set(),
            "finished": self.finished,
            "cursor": self.cursor,
            "steps": len(self.timeline),
            "bars_fed": self.bars_fed,
            "now_ns": self.now_ns(),
            "speed": self.speed,
            "last_close_ns": int(self.timeline[self.cursor - 1]) if self.cursor else None,
        }

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        event(
            log,
            "replay_waiting" if not self._running.is_set() else "replay_started",
            steps=len(self.timeline),
            speed=self.speed,
        )
        self._anchor_wall = time.monotonic()
        while self.cursor < len(self.timeline):
            await self._running.wait()
            close_ns = int(self.timeline[self.cursor])
            if self.speed > 0:
                wait_s = (close_ns - self.now_ns()) / 1e9 / self.speed
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                    continue  # re-check: a pause may have come in while sleeping
            for symbol, s in self.series.items():
                i = self._next[symbol]
                if i < len(s.close_ts) and s.close_ts[i] == close_ns:
                    try:
                        self._feed(symbol, i)
                    except ValueError as exc:  # a bar the exchange refuses is skipped, loudly
                        event(log, "bar_refused", logging.WARNING, symbol=symbol, error=str(exc))
                    self._next[symbol] = i + 1
            self.cursor += 1
            self._save()
            # the clock is re-anchored at this close so sleeping never drifts
            self._clock_ns = close_ns
            self._anchor_wall = time.monotonic()
            if self.speed == 0:
                await asyncio.sleep(0)
        self.finished = True
        event(log, "replay_finished", steps=self.cursor, bars=self.bars_fed)
        await asyncio.Event().wait()
