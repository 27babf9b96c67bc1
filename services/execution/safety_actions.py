"""The execution service's safety actions: what the safety switches make it DO.

``SafetyActions`` owns four actions: ``flatten`` (cancel our working orders, then close the traded
symbols' positions at market), the daily-loss check (observe the broker's equity, halt the day
once and flatten), the dead-man check (silent peers: flatten or cancel, clear on a heartbeat) and
the watchdog loop that runs the checks without bars.

Everything it touches is handed in: the switches (``SafetySwitches``, which persist themselves),
the risk manager (the daily-loss rule), broker, journal, position book, the decision lock with
the event-draining callable, and ``send`` (the service's journal-first order routing). It never
reaches into the service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from execution.broker import Broker, OrderRequest
from execution.order_journal import OrderJournal
from execution.positions import PositionBook
from execution.risk import RiskManager, TradingSchedule
from execution.safety import SafetySwitches
from shared.logs import event

log = logging.getLogger("execution")


class SendOrder(Protocol):
    """The service's journal-first routing: True when the broker took the order."""

    def __call__(
        self, order: OrderRequest, *, day: str, equity: float, exempt: bool = False
    ) -> Awaitable[bool]: ...


class SafetyActions:
    def __init__(
        self,
        *,
        safety: SafetySwitches,
        risk: RiskManager,
        broker: Broker,
        journal: OrderJournal,
        book: PositionBook,
        symbols: frozenset[str],
        schedule: TradingSchedule,
        lock: asyncio.Lock,
        drain_locked: Callable[[], Awaitable[None]],
        send: SendOrder,
        equity: Callable[[], float],
        broker_equity: Callable[[], float | None],
        now_ns: Callable[[], int],
        bar_clock_ns: Callable[[], int],
        mono: Callable[[], float],
        heartbeats: dict[str, float],
        watch_services: Iterable[str],
        heartbeat_timeout_s: float,
        flatten_on_dead_man: bool,
        bar_clock_orders: bool = False,
        on_tick: Callable[[float], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.safety = safety
        self.risk = risk
        self.broker = broker
        self.journal = journal
        self.book = book
        self.symbols = symbols
        self.schedule = schedule
        self.lock = lock  # decisions, flattening and event draining never interleave
        self.drain_locked = drain_locked
        self.send = send
        self.equity = equity
        self.broker_equity = broker_equity
        self.now_ns = now_ns
        self.bar_clock_ns = bar_clock_ns  # the latest bar close seen (0: none yet)
        self.mono = mono
        self.heartbeats = heartbeats  # peer -> last heartbeat (mono clock); the caller fills it
        self.watch_services = watch_services
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.flatten_on_dead_man = flatten_on_dead_man
        self.bar_clock_orders = bar_clock_orders  # closing orders wait for the bar clock
        self.on_tick = on_tick  # the watchdog's other chores (refusal summary flush)
        self.on_error = on_error

    # ------------------------------------------------------------------ flatten
    async def flatten(self, reason: str) -> dict[str, Any]:
        """Cancel our working orders, then close the configured symbols' positions at market."""
        async with self.lock:
            await self.drain_locked()
            cancelled = await self.broker.cancel_all() if self.broker.is_connected() else 0
            sent: list[str] = []
            if not self.broker.is_connected():
                event(
                    log,
                    "flatten_impossible",
                    logging.ERROR,
                    reason=reason,
                    error="broker not connected",
                )
                return {"cancelled": 0, "orders": [], "error": "broker not connected"}
            # only what this service trades: a manual position in another symbol is left alone
            positions = {s: p for s, p in self.book.held().items() if s in self.symbols}
            clock = self.now_ns()
            for symbol, pos in sorted(positions.items()):
                qty = round(pos.quantity)
                if qty == 0:
                    continue
                n = self.journal.next_counter("flatten")
                order = OrderRequest(
                    order_ref=f"flat-{symbol}-{reason}-{n}",
                    symbol=symbol,
                    side="SELL" if qty > 0 else "BUY",
                    quantity=abs(qty),
                    order_type="MKT",
                    not_before_ns=self.bar_clock_ns() if self.bar_clock_orders else 0,
                )
                if await self.send(
                    order, day=self.schedule.day(clock), equity=self.equity(), exempt=True
                ):
                    sent.append(order.order_ref)
            event(
                log, "flattened", logging.WARNING, reason=reason, cancelled=cancelled, orders=sent
            )
            return {"cancelled": cancelled, "orders": sent}

    # ------------------------------------------------------------------ daily loss
    async def check_daily_loss(self) -> None:
        """Observe the broker's equity; the first time today's loss hits the limit, the day is
        halted (persisted by the switches) and everything flattened."""
        if not self.broker.is_connected() or not self.bar_clock_ns():
            return
        equity = self.broker_equity()
        if equity is None:
            return  # no (sane) account value: no evidence of a loss
        day = self.schedule.day(self.now_ns())
        self.journal.observe_equity(day, equity)  # the track record's daily rows
        baseline = self.safety.observe_equity(
            day=day, account=self.broker.account_key, equity=equity
        )
        if self.risk.daily_loss_hit(day, baseline.start_equity, equity):
            event(
                log,
                "daily_loss_limit",
                logging.ERROR,
                day=day,
                start_equity=baseline.start_equity,
                account=baseline.account,
                equity=equity,
                limit=self.risk.limits.max_daily_loss,
            )
            await self.flatten("daily_loss")

    # ------------------------------------------------------------------ dead-man
    async def check_dead_man(self) -> None:
        timeout = self.heartbeat_timeout_s
        was = self.safety.dead_man
        silent, change = self.safety.observe_heartbeats(
            self.heartbeats, self.watch_services, self.mono(), timeout
        )
        if change == "tripped":
            event(
                log,
                "dead_man_tripped",
                logging.ERROR,
                silent=silent,
                flatten=self.flatten_on_dead_man,
            )
            if self.flatten_on_dead_man:
                await self.flatten("deadman")
            elif self.broker.is_connected():
                async with self.lock:
                    cancelled = await self.broker.cancel_all()
                event(
                    log,
                    "dead_man_cancelled",
                    logging.WARNING,
                    cancelled=cancelled,
                    positions="held",
                )
        elif change == "cleared":
            event(log, "dead_man_cleared", logging.WARNING, was=was)

    # ------------------------------------------------------------------ watchdog
    async def watchdog_loop(self) -> None:
        """The dead-man and daily-loss checks without bars; a failure never stops the loop."""
        interval = min(1.0, self.heartbeat_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_dead_man()
                if self.on_tick is not None:
                    self.on_tick(self.mono())
                # equity also moves without bars (IB account updates after a fill)
                await self.check_daily_loss()
            except Exception:
                if self.on_error is None:
                    raise
                self.on_error("watchdog")
