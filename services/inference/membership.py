"""Wiring of ``inference.sharding`` into the service: peers' heartbeats in, hand-overs applied,
this replica's heartbeat out at once on any change (mixin of ``InferenceService``)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from shared.logs import event
from shared.messages import Heartbeat

log = logging.getLogger("inference")


class ShardMembership:
    """Needs the service's ``sharding``, ``states``, ``shadow``, ``bus``, ``_flush_symbol``,
    ``_reset_symbol`` and ``status_detail``."""

    sharding: Any
    states: dict[str, Any]
    shadow: Any
    bus: Any

    # ------------------------------------------------------------------ sharding
    def on_peer_heartbeat(self, hb: Heartbeat) -> None:
        sharding = self.sharding
        now = time.monotonic()
        if (
            sharding is not None
            and hb.service == "inference"
            and sharding.on_heartbeat(hb.producer, hb.detail, now)
        ):
            self.rebalance()

    def rebalance(self) -> None:
        """Apply the hand-over rule (``inference.sharding``) and announce any change at once."""
        sharding = self.sharding
        if sharding is None:
            return
        changes = sharding.reconcile(time.monotonic())
        for symbol in changes.released:
            self._flush_symbol(symbol)
            self.states.pop(symbol, None)
            if self.shadow is not None:
                self.shadow.forget(symbol)
            event(log, "symbol_released", symbol=symbol)
        for symbol in changes.acquired:
            cutoff = sharding.last_signal_ts.get(symbol)
            event(log, "symbol_acquired", symbol=symbol, catch_up_after=cutoff)
            self._reset_symbol(symbol, cutoff)
        if changes:
            self.publish_heartbeat()

    async def membership(self) -> None:
        """Expire silent peers and end the join grace; hand-overs follow at once."""
        sharding = self.sharding
        if sharding is None:
            return
        tick = min(0.1, self.bus.settings.heartbeat_interval_s / 4)
        was_joining = True
        while True:
            now = time.monotonic()
            expired = sharding.expire(now)
            joining = sharding.joining(now)
            if expired or (was_joining and not joining):
                self.rebalance()
                self.publish_heartbeat()
            was_joining = joining
            await asyncio.sleep(tick)

    def publish_heartbeat(self, leaving: bool = False) -> None:
        detail = self.status_detail()
        if leaving:
            detail = {**detail, "leaving": True, "serves": []}
        self.bus.publisher.publish(
            Heartbeat(service="inference", ready=True, detail=detail, ts_event=time.time_ns())
        )
