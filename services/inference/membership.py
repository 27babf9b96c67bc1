"""Wiring of ``inference.sharding`` into the service: peers' heartbeats in, hand-overs applied,
this replica's heartbeat out at once on any change (mixin of ``InferenceService``).

The self-fence (rule 6 of ``inference.sharding``) is checked, before anything else, at every
place a paused replica can act first after it resumes: ``handle_batch`` (bars, heartbeats and
signals queued in its SUB socket), the periodic heartbeat (``heartbeat_detail``), any other
heartbeat (``publish_heartbeat``) and the membership tick (whose expiry would otherwise find every
peer silent and take every symbol)."""

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
    ``_reset_symbol``, ``status_detail`` and (the fence) ``_batch``."""

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
            self.check_fence("membership_tick")  # first: after a pause every peer looks expired
            now = time.monotonic()
            expired = sharding.expire(now)
            joining = sharding.joining(now)
            if expired or (was_joining and not joining):
                self.rebalance()
                self.publish_heartbeat()
            was_joining = joining
            await asyncio.sleep(tick)

    def publish_heartbeat(self, leaving: bool = False) -> None:
        if not leaving and self.check_fence("heartbeat"):
            return  # the fence has just announced the empty set
        detail = self.status_detail()
        if leaving:
            detail = {**detail, "leaving": True, "serves": []}
        self._send_heartbeat(detail)

    def _send_heartbeat(self, detail: dict[str, Any]) -> None:
        if self.sharding is not None:  # stamped before the send (sharding, rule 6: a pause
            self.sharding.heartbeat_sent(time.monotonic())  # in between may only over-fence)
        self.bus.publisher.publish(
            Heartbeat(service="inference", ready=True, detail=detail, ts_event=time.time_ns())
        )

    def heartbeat_detail(self) -> dict[str, Any]:
        """The periodic heartbeat's detail (``shared.bus.heartbeat_loop`` publishes it at once,
        with no await in between): the fence first, so a heartbeat sent after a pause never
        lists the serves of before it."""
        self.check_fence("heartbeat_loop")
        detail = self.status_detail()
        if self.sharding is not None:
            self.sharding.heartbeat_sent(time.monotonic())
        return detail

    # ------------------------------------------------------------------ self-fence
    def check_fence(self, where: str = "receive_batch") -> bool:
        """Rule 6 of ``inference.sharding``: if this replica's last heartbeat is older than the
        peer timeout, release everything (nothing published for it: queued decisions dropped,
        warm-ups abandoned), re-join as a new replica and say so at once; True if it fenced.
        ``where``: the task that woke first after the pause (logged)."""
        sharding = self.sharding
        if sharding is None:
            return False
        now = time.monotonic()
        silent_s = now - (sharding.last_heartbeat if sharding.last_heartbeat is not None else now)
        released = sharding.fence(now)
        if released is None:
            return False
        batch = getattr(self, "_batch", None)
        if batch is not None:  # decisions queued before the pause: none is published
            batch.clear()
        for symbol in released:
            self.states.pop(symbol, None)  # a warm-up in flight finds its state gone: silent
            if self.shadow is not None:
                self.shadow.forget(symbol)
        event(
            log,
            "self_fenced",
            logging.WARNING,
            silent_s=round(silent_s, 3),
            peer_timeout_s=sharding.peer_timeout_s,
            released=released,
            self_fences=sharding.self_fences,
            where=where,
        )
        self._send_heartbeat(self.status_detail())
        return True
