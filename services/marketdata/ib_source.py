"""``MARKETDATA_SOURCE=ib``: live bars from TWS, IB Gateway or ibsim through ib_async.

On every (re)connection, per symbol:

1. subscribe to live bars first and hold what arrives (nothing can fall between backfill and
   subscription): ``MARKETDATA_IB_BARS=realtime`` (default) aggregates 5-second real-time bars to
   ``MARKETDATA_BAR_SIZE``, a bar is complete when the 5-second bar ending at its close arrives
   (or one of a later bar does); ``keep_up_to_date`` uses ``reqHistoricalData(keepUpToDate)``
   and publishes a bar when IB starts the next one;
2. backfill with ``reqHistoricalData`` up to the market clock (``reqCurrentTime``): at the first
   connection ``MARKETDATA_IB_WARMUP_BARS`` of history (snapshots only, not published); after a
   reconnect, every bar since the last published one, published once, in close order, with
   ``Bar.backfill=True``; bars not yet closed at the market clock are left for the live stream;
3. publish the held live bars that are newer than the last published one.

Every bar goes through ``marketdata.pipeline`` (validation, quarantine, epoch, bar store): a bar
is published only if it is valid and closes after the symbol's last one, so never twice. A
reconnect starts a new epoch. Historical requests go through a client-side pacer
(``MARKETDATA_IB_PACING_*``).

IB errors: an unknown symbol (200) stops the source with IB's error text (the process exits 2);
a pacing violation (162 on historical data, 420 on real-time bars) backs off, doubling, and
retries, logged, not fatal; no market data subscription (354, or the 10167 delayed-data warning)
stops the source with what to subscribe to, unless ``MARKETDATA_IB_ALLOW_DELAYED=1``, which asks
for delayed data (``reqMarketDataType(3)``) and goes on with it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from ib_async import IB, Stock

from marketdata.config import IB_BAR_SIZES, MarketDataSettings
from marketdata.ib_bars import (
    BAR_SECONDS,
    NS,
    FiveSecondAggregator,
    Pacer,
    from_bar_data,
    ib_duration,
)
from marketdata.pipeline import BarPipeline
from shared import sessions
from shared.bus import heartbeat_loop
from shared.logs import event
from shared.messages import Bar
from shared.runtime import BusConnection

__all__ = ["FiveSecondAggregator", "IbBarSource", "Pacer", "SourceError", "from_bar_data"]

log = logging.getLogger("marketdata.ib")

PACING_VIOLATION = 162
REALTIME_PACING = 420
# A snapshot asked while the first warm-up backfill runs waits for it this long at most (the
# backfill takes ~0.3 s for two symbols here; execution's snapshot request times out at 2 s).
# Answered at once instead, it would be empty, and inference would warm up from live bars.
SNAPSHOT_WAIT_S = 1.5
NO_SECURITY = 200
NOT_SUBSCRIBED = 354
DELAYED_DATA = 10167
DELAYED = 3  # reqMarketDataType: delayed data where there is no subscription

SUBSCRIPTION_HINT = (
    "the IB account has no real-time market data subscription for this symbol. Subscribe in "
    "Client Portal -> Settings -> Market Data Subscriptions (US stocks: 'US Securities Snapshot "
    "and Futures Value Bundle' plus 'US Equity and Options Add-On Streaming Bundle', i.e. NYSE "
    "(Network A/CTA), AMEX (Network B/CTA) and NASDAQ (Network C/UTP)); a paper account shares "
    "the live account's subscriptions once 'share real-time market data' is enabled. Or set "
    "MARKETDATA_IB_ALLOW_DELAYED=1 to trade on 15-minute delayed data"
)


class SourceError(RuntimeError):
    """The source cannot go on (an unknown symbol, a refused subscription)."""


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
        publish_fn = publish or (lambda bar: bus.publisher.publish(bar))  # type: ignore[union-attr]
        self.pipeline = BarPipeline(settings.state_dir, publish_fn, settings.bar_store)
        self.history: dict[str, collections.deque[Bar]] = {
            s: collections.deque(maxlen=settings.snapshot_size) for s in self.symbols
        }
        self.last_close: dict[str, int] = {s: 0 for s in self.symbols}
        self.pacer = Pacer(
            settings.ib_pacing_max_requests, settings.ib_pacing_window_s, time.monotonic
        )
        self.connections = 0
        self.pacing_violations = 0
        self.connected = False
        self.live = False  # connected, backfilled and subscribed
        self.delayed = False  # serving delayed data (MARKETDATA_IB_ALLOW_DELAYED)
        self._held: dict[str, list[Bar]] | None = None
        self._history_loaded = asyncio.Event()  # the first connection's backfill is done
        self._errors: dict[int, tuple[int, str]] = {}
        self._realtime_symbol: dict[int, str] = {}
        self._fatal: SourceError | None = None
        self._stop_session: asyncio.Event | None = None
        self._clock_offset_ns = 0  # market clock (reqCurrentTime) - wall clock
        self._ib: IB | None = None

    @property
    def published(self) -> int:
        return self.pipeline.published

    @property
    def backfilled(self) -> int:
        return self.pipeline.backfilled

    # ------------------------------------------------------------------ publishing
    def _accept(self, bar: Bar, publish: bool, backfill: bool = False) -> bool:
        """Validate ``bar`` and keep it (publish it unless warm-up); False if it was refused."""
        stamped = self.pipeline.offer(bar, publish=publish, backfill=backfill)
        if stamped is None:
            return False
        self.last_close[bar.symbol] = bar.ts_event
        self.history[bar.symbol].append(stamped)
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
                self._ib = None
                ib.disconnect()
            if self._fatal is not None:
                raise self._fatal
            await asyncio.sleep(self.settings.ib_reconnect_s)

    async def _session(self, ib: IB) -> None:
        s = self.settings
        stop = self._stop_session = asyncio.Event()
        ib.disconnectedEvent += stop.set
        ib.errorEvent += self._on_error
        await ib.connectAsync(
            s.ib_host, s.ib_port, clientId=s.ib_client_id, timeout=s.ib_connect_timeout_s
        )
        self._ib = ib
        self.connected = True
        first = self.connections == 0
        self.connections += 1
        if not first:
            self.pipeline.new_epoch()  # a reconnect: subscribers see the stream restart
        event(
            log,
            "ib_connected",
            host=s.ib_host,
            port=s.ib_port,
            client_id=s.ib_client_id,
            connection=self.connections,
            epoch=self.pipeline.epoch,
        )
        if s.ib_allow_delayed:
            ib.reqMarketDataType(DELAYED)
        await self._refresh_clock(ib)
        self._held = {sym: [] for sym in self.symbols}
        for sym in self.symbols:
            self._subscribe(ib, sym)
        for sym in self.symbols:
            await self._backfill(ib, sym, first)
        self._history_loaded.set()
        held, self._held = self._held, None
        for sym in self.symbols:
            for bar in held[sym]:
                self._accept(bar, publish=True)
        self.live = True
        event(log, "ib_live", symbols=self.symbols, published=self.published)
        interval = self._heartbeat_interval()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                await self._refresh_clock(ib)
        if self._fatal is None:
            event(log, "ib_disconnected", logging.WARNING, published=self.published)

    def _heartbeat_interval(self) -> float:
        return self.bus.settings.heartbeat_interval_s if self.bus is not None else 1.0

    async def _refresh_clock(self, ib: IB) -> None:
        """The market's clock (the simulator's is simulated) for "market closed until ..."."""
        try:
            now = await asyncio.wait_for(ib.reqCurrentTimeAsync(), 5.0)
        except (TimeoutError, ConnectionError):
            return
        self._clock_offset_ns = int(now.timestamp() * NS) - time.time_ns()

    def market_now_ns(self) -> int:
        return time.time_ns() + self._clock_offset_ns

    # ------------------------------------------------------------------ IB errors
    def _on_error(self, req_id: int, code: int, text: str, contract: Any = None) -> None:
        self._errors[req_id] = (code, text)
        symbol = self._realtime_symbol.get(req_id) or getattr(contract, "symbol", "") or "?"
        if code == NO_SECURITY and req_id in self._realtime_symbol:
            self._fail(f"{symbol}: IB error {code}: {text}")
        elif code == DELAYED_DATA and self.settings.ib_allow_delayed:
            if not self.delayed:
                event(log, "ib_delayed_data", logging.WARNING, symbol=symbol, error=text)
            self.delayed = True
        elif code in (NOT_SUBSCRIBED, DELAYED_DATA):
            self._fail(f"{symbol}: IB error {code}: {text} -- {SUBSCRIPTION_HINT}")
        elif code == REALTIME_PACING and req_id in self._realtime_symbol:
            self._realtime_paced(req_id, text)

    def _fail(self, message: str) -> None:
        if self._fatal is None:
            self._fatal = SourceError(message)
            event(log, "ib_refused", logging.ERROR, error=message)
        if self._stop_session is not None:
            self._stop_session.set()

    def _realtime_paced(self, req_id: int, text: str) -> None:
        """420 on reqRealTimeBars: back off (doubling per symbol) and subscribe again."""
        symbol = self._realtime_symbol.pop(req_id)
        self.pacing_violations += 1
        backoff = self.settings.ib_pacing_backoff_s
        event(log, "ib_pacing_violation", logging.WARNING, symbol=symbol, code=420, error=text)
        ib = self._ib

        def again() -> None:
            if self._ib is ib and ib is not None and ib.isConnected():
                self._subscribe(ib, symbol)

        asyncio.get_running_loop().call_later(backoff, again)

    # ------------------------------------------------------------------ subscriptions
    def _subscribe(self, ib: IB, symbol: str) -> None:
        contract = Stock(symbol, "SMART", "USD")
        if self.settings.ib_bars == "realtime":
            agg = FiveSecondAggregator(symbol, self.timeframe)
            bars = ib.reqRealTimeBars(contract, 5, "TRADES", True)
            self._realtime_symbol[bars.reqId] = symbol

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
            if self._fatal is not None:
                raise self._fatal
            if bars:
                return list(bars)
            errors = list(self._errors.values())
            if any(code == NO_SECURITY for code, _ in errors):
                raise SourceError(f"{symbol}: IB error {NO_SECURITY}: {errors[0][1]}")
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
            if bar.ts_event <= self.last_close[symbol]:
                continue  # already published before the drop
            if self._accept(bar, publish=not first, backfill=not first):
                count += 0 if first else 1
        event(log, "ib_backfilled", symbol=symbol, bars=len(bars), published=count, warmup=first)

    # ------------------------------------------------------------------ commands
    async def snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        symbol = str(args.get("symbol", ""))
        if symbol not in self.history:
            raise ValueError(f"unknown symbol {symbol!r}; serving {self.symbols}")
        n = min(int(args.get("n", self.settings.snapshot_size)), self.settings.snapshot_size)
        if self._held is not None and not self._history_loaded.is_set():
            # connected and loading the warm-up history: answer with it, not with nothing
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._history_loaded.wait(), SNAPSHOT_WAIT_S)
        bars = list(self.history[symbol])[-n:] if n > 0 else []
        # the current epoch on every bar: a subscriber warming up from it is in this epoch
        epoch = self.pipeline.epoch
        return {
            "symbol": symbol,
            "bars": [msgspec.to_builtins(msgspec.structs.replace(b, epoch=epoch)) for b in bars],
        }

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status_detail()

    def status_detail(self) -> dict[str, Any]:
        if not self.connected:
            market = "unknown (not connected)"
        else:
            market = sessions.market_closed_until(self.market_now_ns()) or "open"
        return {
            "ready": True,
            "source": "ib",
            "gateway": self.settings.ib_endpoint,
            "client_id": self.settings.ib_client_id,
            "connected": self.connected,
            "live": self.live,
            "delayed": self.delayed,
            "market": market,
            "connections": self.connections,
            "pacing_violations": self.pacing_violations,
            "last_close": dict(self.last_close),
            "symbols": self.symbols,
            **self.pipeline.status(),
        }

    async def heartbeats(self) -> None:
        assert self.bus is not None
        await heartbeat_loop(
            self.bus.publisher,
            "marketdata",
            self.bus.settings.heartbeat_interval_s,
            self.status_detail,
        )
