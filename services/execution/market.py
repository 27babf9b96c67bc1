"""Per-symbol market state of the execution service: the last bar, the ATR and the bar clock.

``MarketState`` changes for one reason: what the service knows about prices. Live bars go through
``observe`` (a replayed or out-of-order bar is not counted twice); ``warm_up`` fills the ATR from
marketdata's snapshot so that a late start sizes with a real ATR. Bars are admitted by the
caller's ``InputGuard`` before they reach this state (warm-up bars through the guard handed in).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from execution.input_guard import InputGuard, valid_price
from execution.risk import WilderATR
from shared.command_channel import CommandError
from shared.logs import event
from shared.messages import Bar

log = logging.getLogger("execution")

SnapshotRequest = Callable[..., Awaitable[Any]]


class MarketState:
    def __init__(self, atr_period: int, warmup_bars: int = 300) -> None:
        self.atr_period = atr_period
        self.warmup_bars = warmup_bars  # snapshot bars the ATR is warmed with
        self.atr: dict[str, WilderATR] = {}
        self.last_bar: dict[str, Bar] = {}
        self.clock_ns = 0  # the latest bar close seen (the bar clock)

    def atr_for(self, symbol: str) -> WilderATR:
        atr = self.atr.get(symbol)
        if atr is None:
            atr = self.atr[symbol] = WilderATR(self.atr_period)
        return atr

    def price(self, symbol: str) -> float | None:
        bar = self.last_bar.get(symbol)
        return bar.close if bar and valid_price(bar.close) else None

    def observe(self, bar: Bar) -> bool:
        """Take an admitted live bar; False when it is replayed or out of order (not counted)."""
        previous = self.last_bar.get(bar.symbol)
        if previous is not None and bar.ts_event <= previous.ts_event:
            return False
        self.last_bar[bar.symbol] = bar
        self.atr_for(bar.symbol).update(bar.high, bar.low, bar.close)
        self.clock_ns = max(self.clock_ns, bar.ts_event)
        return True

    async def warm_up(
        self, request: SnapshotRequest, symbols: Iterable[str], guard: InputGuard
    ) -> None:
        """ATR warm-up from marketdata's ``snapshot`` command (``request`` is a command client's
        request); a symbol that already has bars is left alone."""
        for symbol in sorted(symbols):
            atr = self.atr_for(symbol)
            if atr.bars_seen:
                continue
            try:
                reply = await request(
                    "snapshot",
                    {"symbol": symbol, "n": self.warmup_bars},
                    timeout_s=2.0,
                )
            except CommandError as exc:
                event(log, "warmup_unavailable", symbol=symbol, error=str(exc)[:200])
                continue
            bars = reply.get("bars", []) if isinstance(reply, dict) else []
            if symbol in self.last_bar:
                continue  # live bars arrived meanwhile: they warm it up instead
            used = 0
            for raw in bars:
                try:
                    bar = msgspec.convert(raw, Bar)
                except msgspec.ValidationError:
                    continue
                if not guard.admit(bar):
                    continue
                atr.update(bar.high, bar.low, bar.close)
                self.last_bar[symbol] = bar  # a live bar already seen is not counted twice
                used += 1
            event(log, "warmup", symbol=symbol, bars=used, atr=atr.value)
