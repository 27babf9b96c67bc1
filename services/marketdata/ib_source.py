"""``MARKETDATA_SOURCE=ib``: live bars from TWS, IB Gateway or ibsim through ib_async.

On every (re)connection, per symbol:

1. subscribe to live bars first and hold what arrives (nothing can fall between backfill and
   subscription): ``MARKETDATA_IB_BARS=realtime`` (default) aggregates 5-second real-time bars to
   ``MARKETDATA_BAR_SIZE``, a bar is complete when the 5-second bar ending at its close arrives
   (or one of a later bar does); ``keep_up_to_date`` uses ``reqHistoricalData(keepUpToDate)``
   and publishes a bar when IB starts the next one;
2. backfill with ``reqHistoricalData`` up to the market clock (``reqCurrentTime``): at the first
   connection ``MARKETDATA_IB_WARMUP_BARS`` of history (snapshots only, not published); after a
   reconnect, every bar since the last published one, published once, in close order; bars not
   yet closed at the market clock are left for the live stream;
3. publish the held live bars that are newer than the last published one.

A bar is published only if it closes after the symbol's last published bar, so a bar is never
published twice. Historical requests go through a client-side pacer (``MARKETDATA_IB_PACING_*``);
an IB pacing violation (162) backs off and retries, logged, not fatal. An unknown symbol (200)
stops the source with IB's error text. Daily bars are stamped at 16:00 America/New_York (as the
packaged history); half days are not modelled yet. ``seq`` is the bar's number since the epoch
(days for daily bars, bar lengths otherwise), stable across restarts.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from ib_async import IB, Stock

from marketdata.config import IB_BAR_SIZES, MarketDataSettings
from shared.bus import heartbeat_loop
from shared.logs import event
from shared.messages import Bar
from shared.runtime import BusConnection

log = logging.getLogger("marketdata.ib")

NS = 1_000_000_000
NY = ZoneInfo("America/New_York")
DAILY_SESSION_NS = (6 * 3600 + 30 * 60) * NS
BAR_SECONDS = {"1d": 86_400, "1h": 3600, "30m": 1800, "5m": 300, "1m": 60}
PACING_VIOLATION = 162
NO_SECURITY = 200


class SourceError(RuntimeError):
    """The source cannot go on (an unknown symbol, a refused subscription)."""


# ---------------------------------------------------------------------------- bar arithmetic


def session_close_ns(day: dt.date) -> int:
    """16:00 New York on ``day``, ns UTC (the label of a daily bar)."""
    return int(dt.datetime.combine(day, dt.time(16, 0), NY).timestamp()) * NS


def make_bar(
    symbol: str, timeframe: str, close_ns: int, o: float, h: float, lo: float, c: float, v: float
) -> Bar:
    if timeframe == "1d":
        open_ns = close_ns - DAILY_SESSION_NS
        seq = dt.datetime.fromtimestamp(close_ns / NS, NY).date().toordinal()
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


# ---------------------------------------------------------------------------- the source


class IbBarSource:
    def __init__(
        self,
        settings: MarketDataSettings,
        bus: BusConnection | None,
        ib_factory: Callable[[], IB] = IB,
        publish: Callable[[Bar], None] | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.timeframe = settings.bar_size
        self.symbols = [s.upper() for s in settings.symbols]
        self._ib_factory = ib_factory
        self._publish_fn = publish or (lambda bar: bus.publisher.publish(bar))  # type: ignore[union-attr]
        self.history: dict[str, collections.deque[Bar]] = {
            s: collections.deque(maxlen=settings.snapshot_size) for s in self.symbols
        }
        self.last_close: dict[str, int] = {s: 0 for s in self.symbols}
        self.pacer = Pacer(
            settings.ib_pacing_max_requests, settings.ib_pacing_window_s, time.monotonic
        )
        self.published = 0
        self.backfilled = 0  # bars published by reconnect backfills
        self.connections = 0
        self.pacing_violations = 0
        self.connected = False
        self.live = False  # connected, backfilled and subscribed
        self._held: dict[str, list[Bar]] | None = None
        self._errors: dict[int, tuple[int, str]] = {}

    # ------------------------------------------------------------------ publishing
    def _accept(self, bar: Bar, publish: bool) -> bool:
        """Keep ``bar`` (and publish it) unless it is not newer than the last one."""
        if bar.ts_event <= self.last_close[bar.symbol]:
            return False
        self.last_close[bar.symbol] = bar.ts_event
        self.history[bar.symbol].append(bar)
        if publish:
            self._publish_fn(bar)
            self.published += 1
        return True

    def on_live_bar(self, bar: Bar) -> None:
        if self._held is not None:  # still backfilling: hold it, in arrival order
            self._held[bar.symbol].append(bar)
        else:
            self._accept(bar, publish=True)

    # ------------------------------------------------------------------ the connection loop
    async def run(self) -> None:
        while True:
            ib = self._ib_factory()
            try:
                await self._session(ib)
            except SourceError:
                raise
            except (ConnectionError, OSError, TimeoutError) as exc:
                event(log, "ib_connect_failed", logging.WARNING, error=str(exc) or repr(exc))
            finally:
                self.connected = self.live = False
                self._held = None
                ib.disconnect()
            await asyncio.sleep(self.settings.ib_reconnect_s)

    async def _session(self, ib: IB) -> None:
        s = self.settings
        lost = asyncio.Event()
        ib.disconnectedEvent += lost.set
        ib.errorEvent += self._on_error
        await ib.connectAsync(
            s.ib_host, s.ib_port, clientId=s.ib_client_id, timeout=s.ib_connect_timeout_s
        )
        self.connected = True
        first = self.connections == 0
        self.connections += 1
        event(log, "ib_connected", host=s.ib_host, port=s.ib_port, connection=self.connections)
        self._held = {sym: [] for sym in self.symbols}
        for sym in self.symbols:
            self._subscribe(ib, sym)
        for sym in self.symbols:
            await self._backfill(ib, sym, first)
        held, self._held = self._held, None
        for sym in self.symbols:
            for bar in held[sym]:
                self._accept(bar, publish=True)
        self.live = True
        event(log, "ib_live", symbols=self.symbols, published=self.published)
        await lost.wait()
        event(log, "ib_disconnected", logging.WARNING, published=self.published)

    def _on_error(self, req_id: int, code: int, text: str, contract: Any = None) -> None:
        self._errors[req_id] = (code, text)

    def _subscribe(self, ib: IB, symbol: str) -> None:
        contract = Stock(symbol, "SMART", "USD")
        if self.settings.ib_bars == "realtime":
            agg = FiveSecondAggregator(symbol, self.timeframe)
            bars = ib.reqRealTimeBars(contract, 5, "TRADES", True)

            def on_realtime(bars: Any, has_new: bool) -> None:
                small = bars[-1]
                start_ns = int(small.time.timestamp()) * NS
                o, h, lo, c = small.open_, small.high, small.low, small.close
                for bar in agg.add(start_ns, o, h, lo, c, small.volume):
                    self.on_live_bar(bar)

            bars.updateEvent += on_realtime
        else:
            # keepUpToDate: the bar before the newest one is closed when IB starts a new one
            task = asyncio.ensure_future(
                ib.reqHistoricalDataAsync(
                    contract,
                    "",
                    ib_duration(2 * 86_400, self.timeframe),
                    IB_BAR_SIZES[self.timeframe],
                    "TRADES",
                    True,
                    2,
                    keepUpToDate=True,
                )
            )

            def on_update(bars: Any, has_new: bool) -> None:
                if has_new and len(bars) >= 2:
                    self.on_live_bar(from_bar_data(symbol, self.timeframe, bars[-2]))

            task.add_done_callback(
                lambda t: t.result().updateEvent.__iadd__(on_update) if t.result() else None
            )

    async def _historical(self, ib: IB, symbol: str, duration: str) -> list[Any]:
        backoff = self.settings.ib_pacing_backoff_s
        while True:
            wait = self.pacer.wait_s()
            if wait > 0:
                event(log, "ib_pacing_wait", seconds=round(wait, 1), symbol=symbol)
                await asyncio.sleep(wait)
            self.pacer.take()
            self._errors.clear()
            bars = await ib.reqHistoricalDataAsync(
                Stock(symbol, "SMART", "USD"),
                "",
                duration,
                IB_BAR_SIZES[self.timeframe],
                "TRADES",
                True,
                2,
            )
            if bars:
                return list(bars)
            errors = list(self._errors.values())
            if any(code == NO_SECURITY for code, _ in errors):
                raise SourceError(f"{symbol}: {errors[0][1]}")
            if any(code == PACING_VIOLATION and "pacing" in text.lower() for code, text in errors):
                self.pacing_violations += 1
                event(log, "ib_pacing_violation", logging.WARNING, symbol=symbol, backoff_s=backoff)
                await asyncio.sleep(backoff)
                backoff *= 2
                continue
            event(log, "ib_no_history", logging.WARNING, symbol=symbol, errors=errors)
            return []

    async def _backfill(self, ib: IB, symbol: str, first: bool) -> None:
        now_ns = int((await ib.reqCurrentTimeAsync()).timestamp()) * NS
        length_s = BAR_SECONDS[self.timeframe]
        if first or not self.last_close[symbol]:
            # trading days -> calendar days for daily bars
            span_s = self.settings.ib_warmup_bars * length_s * (1.5 if length_s >= 86_400 else 1)
        else:
            span_s = (now_ns - self.last_close[symbol]) / NS + length_s
        raw = await self._historical(ib, symbol, ib_duration(span_s, self.timeframe))
        bars = sorted(
            (from_bar_data(symbol, self.timeframe, b) for b in raw), key=lambda b: b.ts_event
        )
        count = 0
        for bar in bars:
            if bar.ts_event > now_ns:
                continue  # not closed yet: the live stream publishes it at its close
            if self._accept(bar, publish=not first):
                count += 0 if first else 1
        self.backfilled += count
        event(log, "ib_backfilled", symbol=symbol, bars=len(bars), published=count, warmup=first)

    # ------------------------------------------------------------------ commands
    async def snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        symbol = str(args.get("symbol", ""))
        if symbol not in self.history:
            raise ValueError(f"unknown symbol {symbol!r}; serving {self.symbols}")
        n = min(int(args.get("n", self.settings.snapshot_size)), self.settings.snapshot_size)
        bars = list(self.history[symbol])[-n:] if n > 0 else []
        return {"symbol": symbol, "bars": [msgspec.to_builtins(b) for b in bars]}

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status_detail()

    def status_detail(self) -> dict[str, Any]:
        return {
            "ready": True,
            "source": "ib",
            "connected": self.connected,
            "live": self.live,
            "connections": self.connections,
            "published": self.published,
            "backfilled": self.backfilled,
            "pacing_violations": self.pacing_violations,
            "last_close": dict(self.last_close),
            "symbols": self.symbols,
        }

    async def heartbeats(self) -> None:
        assert self.bus is not None
        await heartbeat_loop(
            self.bus.publisher,
            "marketdata",
            self.bus.settings.heartbeat_interval_s,
            self.status_detail,
        )
