"""The execution service: target positions -> sized, risk-checked, idempotent orders at a broker.

Streams in: ``signal.*`` (TargetPosition), ``bar.*`` (prices, ATR, the simulated broker's fills,
the bar clock), ``hb.*`` (peers' liveness for the dead-man rule). Streams out: ``order.<SYM>``
(OrderEvent lifecycle), ``fill.<SYM>`` (Fill with the broker's exec id and commission),
``position.<SYM>`` (after fills and reconciliation), ``hb.execution``.

One signal is handled like this (``on_signal``):

1. ``order_ref = f"{strategy}-{symbol}-{bar_seq}"``; if the journal or the broker (open and
   completed orders) already knows it, nothing is sent (a repeated or replayed signal);
2. desired shares from the target (risk.py sizing), then the limits (risk.py ``decide``), minus the
   broker's position and our working orders -> a signed delta;
3. the reference is committed to the SQLite journal, THEN the order goes to the broker. A process
   killed between the two finds the reference on restart and never sends it again.

Broker events (status, fills, positions, connection changes) are drained in the same asyncio loop,
before each decision too, so a decision always sees every fill the broker already reported.

Layout: this module wires the parts and runs the loops (bus, broker events, heartbeat, track
record). The decision itself is ``decision.py``; sending a decided order (journal first, then the
broker) ``routing.py`` (``OrderRouter``); broker events and reconciliation ``reconcile.py``
(``Reconciler``); the switches ``safety.py`` and what they make the service do (flatten, the
daily-loss and dead-man checks, the watchdog loop) ``safety_actions.py`` (``SafetyActions``); last
bars, ATR, the bar clock and the ATR warm-up ``market.py`` (``MarketState``); positions
``positions.py``; the order lifecycle ``order_journal.py``; the status snapshot ``status.py``
(``ExecutionStatus``); the operator commands ``commands.py`` (``ExecutionCommands``, registered by
``__main__``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from execution.broker import (
    Broker,
    BrokerError,
    BrokerPosition,
)
from execution.commands import ExecutionCommands, track_record
from execution.config import ExecutionConfig
from execution.daily_baseline import DailyBaseline
from execution.decision import (
    MarketView,
    OnTarget,
    Refusal,
    decide_order,
    order_ref_for,
)
from execution.input_guard import InputGuard, is_finite
from execution.market import MarketState
from execution.order_journal import OrderJournal
from execution.positions import PositionBook
from execution.reconcile import Reconciler
from execution.refusals import RefusalSummary
from execution.risk import RiskLimits, RiskManager, TradingSchedule
from execution.routing import OrderRouter
from execution.safety import SafetySwitches
from execution.safety_actions import SafetyActions
from execution.status import ExecutionStatus
from shared.bus import heartbeat_loop
from shared.logs import event
from shared.messages import Bar, Heartbeat, Message, OrderEvent, TargetPosition
from shared.runtime import BusConnection

log = logging.getLogger("execution")
# Often enough that the WAL stays small (a few hundred orders at most between two), rarely enough
# that the checkpoint's fsync is no load.
JOURNAL_CHECKPOINT_INTERVAL_S = 5.0


class ExecutionService:
    def __init__(
        self,
        config: ExecutionConfig,
        bus: BusConnection,
        broker: Broker,
        journal: OrderJournal,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.paper = config.paper
        self.settings = config.settings
        self.bus = bus
        self.broker = broker
        self.journal = journal
        self._mono = wall_clock
        self.symbols = frozenset(self.paper.symbols)
        self.schedule = TradingSchedule(self.paper.trading_hours, self.paper.weekday_numbers())
        limits = RiskLimits.from_config(self.paper)
        # the one owner of kill / reduce-only / daily-loss halt / dead-man / live guard
        self.safety = SafetySwitches(journal, reduce_only=limits.reduce_only)
        self.risk = RiskManager(limits, self.schedule, self.safety)
        self.guard = InputGuard()  # refusals of hostile numbers, per reason (status: refusals)
        self.refusals = RefusalSummary(log)  # refused signals: one log line a minute per reason
        # last bars, ATR, the bar clock
        self.market = MarketState(self.paper.atr_period, self.settings.atr_warmup_bars)
        self.atr = self.market.atr  # the same dict (a read-only view)
        self.book = PositionBook()  # the broker's positions + fills it has not reported yet
        self.hb_seen: dict[str, float] = {}
        self.started = self._mono()
        self.bus_running = False
        self.counters: dict[str, int] = {
            "bars": 0,
            "signals": 0,
            "orders": 0,
            "fills": 0,
            "duplicates": 0,
            "refused": 0,
            "rejected": 0,
            "recovered_fills": 0,
            "adopted_orders": 0,  # ours at the broker, lost from the journal by a host crash
            "reconnects": 0,
            "ref_collisions": 0,
            "handler_errors": 0,
        }
        self._lock = asyncio.Lock()  # decisions, flattening and event draining never interleave
        self._stopping = False
        self.reconciler = Reconciler(  # broker events and reconciliation
            broker=broker,
            journal=journal,
            book=self.book,
            safety=self.safety,
            publish=self._publish,
            symbols=self.symbols,
            counters=self.counters,
            guard=self.guard,
            on_error=self._handler_failed,
            log_trades=self.paper.logging.log_trades,
            live_confirmed=config.live_confirmed,
            paper_path=config.paper_path,
            track_record=config.live_track_refusal,
        )
        self.router = OrderRouter(  # journal first, then the broker; OrderEvents on the bus
            broker=broker,
            journal=journal,
            rate=self.risk.rate,
            counters=self.counters,
            publish=self._publish,
            bracket_orders=self.paper.order_type == "BRACKET",
            log_trades=self.paper.logging.log_trades,
        )
        self.safety_actions = SafetyActions(  # flatten, daily-loss and dead-man checks, watchdog
            safety=self.safety,
            risk=self.risk,
            broker=broker,
            journal=journal,
            book=self.book,
            symbols=self.symbols,
            schedule=self.schedule,
            lock=self._lock,
            drain_locked=self._drain_locked,
            send=self.router.send,
            equity=self.equity,
            broker_equity=self.broker_equity,
            now_ns=self._now_ns,
            bar_clock_ns=lambda: self.market.clock_ns,
            mono=self._mono,
            heartbeats=self.hb_seen,
            watch_services=self.paper.monitoring.watch_services,
            heartbeat_timeout_s=self.paper.monitoring.heartbeat_timeout_s,
            flatten_on_dead_man=self.paper.flatten_on_dead_man,
            bar_clock_orders=self.settings.clock == "bar",
            on_tick=self.refusals.flush,
            on_error=self._handler_failed,
        )
        self.status = ExecutionStatus(  # the status snapshot (status command, heartbeat)
            broker=broker,
            safety=self.safety,
            risk=self.risk,
            schedule=self.schedule,
            market=self.market,
            book=self.book,
            guard=self.guard,
            counters=self.counters,
            clock=self.settings.clock,
            now_ns=self._now_ns,
            bus_running=lambda: self.bus_running,
        )
        self.commands = ExecutionCommands(  # the operator commands (__main__ registers them)
            safety=self.safety,
            book=self.book,
            journal=journal,
            broker=broker,
            flatten=self.safety_actions.flatten,
            status_detail=self.status_detail,
        )

    # ================================================================== lifecycle
    async def run(self) -> None:
        """Connect the broker and run every loop until cancelled."""
        subscriber = self.bus.subscriber(["signal.", "bar.", "hb."])
        tasks = [
            asyncio.create_task(self._bus_loop(subscriber)),
            asyncio.create_task(self._events_loop()),
            asyncio.create_task(self._connect_broker()),
            asyncio.create_task(self.safety_actions.watchdog_loop()),
            asyncio.create_task(self._track_record_loop()),
            asyncio.create_task(self._journal_checkpoint_loop()),
            asyncio.create_task(
                heartbeat_loop(
                    self.bus.publisher,
                    "execution",
                    self.bus.settings.heartbeat_interval_s,
                    self.status_detail,
                )
            ),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self._stopping = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            subscriber.close()
            await self.broker.close()

    async def _connect_broker(self) -> None:
        delay = self.settings.reconnect_min_s
        while not self.broker.is_connected():
            try:
                await self.broker.connect()
            except BrokerError as exc:
                event(
                    log,
                    "broker_connect_failed",
                    logging.WARNING,
                    broker=self.broker.name,
                    error=str(exc),
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_s)
        if self.settings.warmup_bars:
            await self._warm_up()

    async def _warm_up(self) -> None:
        """ATR warm-up from marketdata's snapshot, so a late start sizes with a real ATR."""
        client = self.bus.command_client("marketdata")
        try:
            await self.market.warm_up(client.request, self.symbols, self.guard)
        finally:
            client.close()

    # ================================================================== bus
    async def _bus_loop(self, subscriber: Any) -> None:
        self.bus_running = True
        try:
            while True:
                message = await subscriber.recv()
                try:
                    await self.on_message(message)
                except Exception:  # a bug in a handler never stops the loop
                    self._handler_failed("bus", getattr(message, "symbol", "")[:32])
        finally:
            self.bus_running = False

    async def on_message(self, message: Any) -> None:
        """One decoded bus message to its handler."""
        if isinstance(message, Bar):
            await self.on_bar(message)
        elif isinstance(message, TargetPosition):
            await self.on_signal(message)
        elif (
            isinstance(message, Heartbeat)
            and message.service != "execution"
            and self.guard.admit(message)
        ):
            self.hb_seen[message.service] = self._mono()

    def _handler_failed(self, where: str, detail: str = "") -> None:
        """Log a handler's exception with its traceback; the calling loop goes on."""
        self.counters["handler_errors"] += 1
        log.error(
            "handler_failed",
            exc_info=True,
            extra={"fields": {"loop": where, "detail": detail}},
        )

    async def on_bar(self, bar: Bar) -> None:
        self.counters["bars"] += 1
        if not self.guard.admit(bar):
            return  # NaN/inf/negative prices never reach the ATR, the marks or the broker
        if not self.market.observe(bar):
            return  # replayed or out of order: already counted
        self.broker.on_bar(bar)
        await self.drain()
        await self.safety_actions.check_daily_loss()

    def _now_ns(self, bar_ts_ns: int = 0) -> int:
        if self.settings.clock == "bar":
            return bar_ts_ns or self.market.clock_ns or time.time_ns()
        return time.time_ns()

    # ================================================================== signals
    async def on_signal(self, signal: TargetPosition) -> None:
        self.counters["signals"] += 1
        if not self.guard.admit(signal):
            return  # a NaN target is no position: refused and counted, never clamped
        async with self._lock:
            await self._drain_locked()
            await self._decide(signal)

    async def _decide(self, sig: TargetPosition) -> None:
        symbol = sig.symbol
        ref = order_ref_for(sig.strategy, symbol, sig.bar_seq)
        known_ts = self.journal.bar_ts_of(ref)  # from memory: no query per signal
        if known_ts is not None or ref in self.broker.known_order_refs():
            if known_ts and sig.bar_close_ts and known_ts != sig.bar_close_ts:
                # same reference, different bar: the producer's bar numbering restarted
                self.counters["ref_collisions"] += 1
                event(
                    log,
                    "order_ref_collision",
                    logging.ERROR,
                    order_ref=ref,
                    journal_bar_ts=known_ts,
                    signal_bar_ts=sig.bar_close_ts,
                    hint="bar_seq must identify the bar across restarts",
                )
            else:
                self.counters["duplicates"] += 1
                event(log, "duplicate_signal", order_ref=ref)
            return
        connected = self.broker.is_connected()
        view = MarketView(
            position=self._position(symbol),
            working=self._working(symbol) if connected else 0.0,  # refused anyway
            other_exposure=sum(
                abs(p.quantity) * (self.market.price(s) or p.avg_cost)
                for s, p in self.book.all().items()
                if s != symbol
            ),
            atr=self.market.atr_for(symbol).value,
            equity=self.equity(),
            last_price=self.market.price(symbol),
            tradable=symbol in self.symbols,
            broker_connected=connected,
            broker_name=self.broker.name,
        )
        clock = self._now_ns(sig.bar_close_ts)
        decision = decide_order(sig, view, self.risk, self.paper, clock)
        if isinstance(decision, Refusal):
            self._refuse(ref, sig, decision.reason, quantity=decision.quantity)
            return
        if isinstance(decision, OnTarget):
            event(
                log,
                "on_target",
                order_ref=ref,
                target=decision.target,
                position=decision.position,
                level=logging.DEBUG,
            )
            return
        await self.router.route(decision, day=self.schedule.day(clock), equity=view.equity)

    def _refuse(self, ref: str, sig: TargetPosition, reason: str, quantity: float = 0.0) -> None:
        self.counters["refused"] += 1
        self.bus.publisher.publish(
            OrderEvent(
                symbol=sig.symbol,
                order_ref=ref,
                side="BUY" if sig.target_position >= 0 else "SELL",
                quantity=float(quantity),
                order_type=self.paper.order_type,
                status="skipped",
                bar_seq=sig.bar_seq,
                reason=reason,
                ts_event=time.time_ns(),
            )
        )
        event(log, "order_refused", order_ref=ref, reason=reason, level=logging.DEBUG)
        self.refusals.record(reason, self._mono())

    # ================================================================== broker events
    async def _events_loop(self) -> None:
        while True:
            first = await self.broker.events.get()
            async with self._lock:
                await self.reconciler.handle(first)
                await self._drain_locked()

    async def drain(self) -> None:
        """Handle every broker event already queued (fills before the next decision)."""
        async with self._lock:
            await self._drain_locked()

    async def _drain_locked(self) -> None:
        queue = self.broker.events
        while not queue.empty():
            await self.reconciler.handle(queue.get_nowait())

    @property
    def positions(self) -> dict[str, BrokerPosition]:
        """Every position the book knows (read-only view; the book is the owner)."""
        return self.book.all()

    @property
    def baseline(self) -> DailyBaseline | None:
        """Today's daily-loss baseline (owned by the safety switches)."""
        return self.safety.baseline

    # ================================================================== accounting
    def equity(self) -> float:
        """The broker's equity for sizing (the configured cash until the broker knows it)."""
        value = self.broker_equity()
        return value if value is not None else self.settings.sim_initial_cash

    def broker_equity(self) -> float | None:
        """The broker's account value when it is a finite positive number, else None."""
        value = self.broker.equity()
        return float(value) if is_finite(value) and value is not None and value > 0 else None

    def _position(self, symbol: str) -> float:
        return self.book.quantity(symbol)

    def _working(self, symbol: str) -> float:
        total = 0.0
        for w in self.broker.working_orders():
            if w.symbol == symbol and not w.is_child:
                total += w.remaining if w.side == "BUY" else -w.remaining
        return total

    async def _journal_checkpoint_loop(self) -> None:
        """WAL checkpoints (an fsync each) in a worker thread, never inside an order's commit."""
        while True:
            await asyncio.sleep(JOURNAL_CHECKPOINT_INTERVAL_S)
            try:
                await asyncio.to_thread(self.journal.checkpoint)
            except Exception:
                self._handler_failed("journal_checkpoint")

    # ================================================================== track record
    async def _track_record_loop(self) -> None:
        while True:
            await asyncio.sleep(self.paper.logging.track_record_interval_s)
            try:
                event(
                    log,
                    "paper_track_record",
                    account=self.broker.account,
                    paper=self.broker.is_paper() if self.broker.is_connected() else None,
                    **track_record(self.journal),
                )
            except Exception:
                self._handler_failed("track_record")

    # ================================================================== status and bus output
    def track_record(self) -> dict[str, Any]:
        """Paper track record from the daily equity journal and the compare reports the live
        guard reads (commands.track_record)."""
        return track_record(self.journal, self.config.live_track_record())

    def status_detail(self) -> dict[str, Any]:
        """The status snapshot (status.py): the ``status`` command and the heartbeat's detail."""
        return self.status.detail()

    def _publish(self, message: Message) -> None:
        self.bus.publisher.publish(message)
