"""Warm-up from marketdata's snapshot (mixin of ``InferenceService``; see the service's docstring).

A symbol's features and the policy's position (and a stateful policy's state) are replayed over
the last N bars before its first live bar is decided (a stateful shadow loaded mid-stream replays
them for itself: ``_start_shadow_warm``); a hand-over or an epoch change also signals the
snapshot bars that closed after the last signal seen (``publish_after``), exactly once. The same
path rebuilds every symbol when the live model's feature pipeline changes (``inference.models``),
and a shadow with its own pipeline replays the snapshot into its own features
(``inference.pipelines.OwnPipelineShadow.replay``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import msgspec

from inference.pipelines import OwnPipelineShadow
from inference.shadow import ShadowSlot
from shared.command_channel import CommandError
from shared.logs import event
from shared.messages import Bar

if TYPE_CHECKING:  # the service imports this module
    from inference.service import SymbolState

log = logging.getLogger("inference")


class WarmUp:
    """Needs the service's ``settings``, ``states``, ``_state``, ``_apply``,
    ``_decide_and_publish``, ``counters``, ``sharding``, ``rebalance``, ``_snapshot_client`` and
    ``_warm_tasks``."""

    settings: Any
    states: dict[str, Any]
    pipeline: Any
    counters: Any
    sharding: Any
    _snapshot_client: Any
    _warm_tasks: set[asyncio.Task[int]]

    # ------------------------------------------------------------------ warm-up
    def _start_warm(self, symbol: str, publish_after: int | None = None) -> None:
        state = self._state(symbol)
        state.warming = True
        task = asyncio.get_running_loop().create_task(self.warm(symbol, publish_after, state))
        self._warm_tasks.add(task)
        task.add_done_callback(self._warm_tasks.discard)

    async def warm(
        self, symbol: str, publish_after: int | None = None, state: SymbolState | None = None
    ) -> int:
        """Apply marketdata's snapshot of ``symbol`` then the buffered live bars; returns the
        number of snapshot bars applied. Snapshot bars closed after ``publish_after`` (a
        hand-over's or an epoch change's catch-up) are signalled, the others only replayed."""
        state = state if state is not None else self._state(symbol)
        state.warming = True
        applied = 0
        bars = await self._snapshot(symbol)
        self.check_fence("warm_up")  # paused while waiting? (inference.sharding, rule 6)
        if self.states.get(symbol) is not state:  # released or reset meanwhile: not ours now
            return 0
        caught_up = 0
        for bar in sorted(bars, key=lambda b: b.ts_event):
            if bar.symbol == symbol and bar.ts_event > state.last_ts:
                if publish_after is not None and bar.ts_event > publish_after:
                    caught_up += self._decide_and_publish(state, bar) is not None
                else:
                    self._apply(state, bar)
                applied += 1
        self.counters.snapshot_bars += applied
        self.counters.caught_up_bars += caught_up
        pending, state.pending = state.pending, []
        state.warm = True
        state.warming = False
        for bar in sorted(pending, key=lambda b: b.ts_event):
            if bar.ts_event > state.last_ts:
                self._decide_and_publish(state, bar)
            else:
                self.counters.stale_bars += 1
        event(
            log,
            "symbol_warm",
            symbol=symbol,
            snapshot_bars=applied,
            caught_up=caught_up,
            buffered=len(pending),
            ready=state.features.ready,
            position=state.position,
        )
        return applied

    async def _snapshot(self, symbol: str) -> list[Bar]:
        """Marketdata's last ``snapshot_bars`` bars of ``symbol`` (empty if it never answers)."""
        for attempt in range(1, self.settings.snapshot_attempts + 1):
            try:
                reply = await self._snapshot_client.request(
                    "snapshot",
                    {"symbol": symbol, "n": self.settings.snapshot_bars},
                    timeout_s=self.settings.snapshot_timeout_s,
                )
                return [msgspec.convert(b, Bar) for b in reply.get("bars", [])]
            except (CommandError, msgspec.ValidationError, AttributeError, TypeError) as exc:
                self.counters.snapshot_failures += 1
                event(
                    log,
                    "snapshot_failed",
                    logging.WARNING,
                    symbol=symbol,
                    attempt=attempt,
                    error=str(exc)[:300],
                )
                if attempt < self.settings.snapshot_attempts:
                    await asyncio.sleep(min(2.0, 0.2 * attempt))
        return []

    # ------------------------------------------------------------------ stateful shadow
    def _start_shadow_warm(self, slot: ShadowSlot) -> None:
        """A stateful shadow loaded mid-stream rebuilds each warm symbol's state (and its
        would-be position) by replaying the snapshot, as the live model does after a reset; it
        is silent for a symbol until then."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a plain call): the shadow starts from zeros instead
            return
        for symbol, state in self.states.items():
            if state.warm:
                slot.warming.add(symbol)
                task = loop.create_task(self._warm_shadow(symbol, slot))
                self._warm_tasks.add(task)
                task.add_done_callback(self._warm_tasks.discard)

    async def _warm_shadow(self, symbol: str, slot: ShadowSlot) -> int:
        bars = await self._snapshot(symbol)
        state = self.states.get(symbol)
        if getattr(self, "shadow", None) is not slot or state is None or symbol not in slot.warming:
            # released or re-warmed meanwhile (``forget``): the symbol's own warm feeds the shadow
            slot.warming.discard(symbol)
            return 0
        if isinstance(slot, OwnPipelineShadow):  # its own features, from the snapshot
            replayed = slot.replay(symbol, bars, state.last_ts, state.breaks)
            event(log, "shadow_symbol_warm", symbol=symbol, version=slot.version, replayed=replayed)
            return replayed
        features = self.pipeline.online()
        replayed = 0
        for bar in sorted(bars, key=lambda b: b.ts_event):
            if bar.symbol != symbol or bar.ts_event > state.last_ts:
                continue  # later bars reach the shadow live
            try:
                row = features.update(bar.open, bar.high, bar.low, bar.close, bar.volume)
            except ValueError:
                continue
            if row is not None:
                slot.decide(symbol, row, state.breaks)
                replayed += 1
        slot.warming.discard(symbol)
        event(log, "shadow_symbol_warm", symbol=symbol, version=slot.version, replayed=replayed)
        return replayed

    async def warm_known_symbols(self) -> None:
        """At start: warm the configured symbols, or the ones marketdata announces (sharded:
        only learn them; the replica takes its share when its join grace ends)."""
        symbols = list(self.settings.symbols)
        if not symbols:
            try:
                status = await self._snapshot_client.request(
                    "status", {}, timeout_s=self.settings.snapshot_timeout_s
                )
                symbols = [str(s) for s in status.get("symbols", [])]
            except (CommandError, AttributeError) as exc:
                event(log, "marketdata_status_failed", logging.WARNING, error=str(exc)[:300])
        if self.sharding is not None:
            self.sharding.symbols.update(symbols)
            self.rebalance()
            return
        for symbol in symbols:
            if symbol not in self.states or not (
                self.states[symbol].warm or self.states[symbol].warming
            ):
                self._start_warm(symbol)
        if self._warm_tasks:
            await asyncio.gather(*list(self._warm_tasks), return_exceptions=True)
