"""The monitor's state machine without the bus: validate, gate and book fills, learn orders, mark.

``Accountant.handle(message)`` takes any decoded bus message; ``handle_safely`` is what the receive
loop calls: nothing a message does can raise out of it (a handler bug is logged with its traceback,
counted, and the loop goes on).

Every message is checked with ``shared.validate.problem`` first (the bus layer checks too; the
monitor still defends itself). Refusals, quarantines and exec-id conflicts are counted per reason
and logged at WARNING at most once per reason per minute (``RefusalCounter``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec

from monitor.gate import UNKNOWN_ORDER, KnownOrder, Verdict, inconsistency, same_fill
from monitor.ledger import Ledger, row_to_fill
from shared.accounting import Book
from shared.logs import event, fields
from shared.messages import Bar, Fill, Message, OrderEvent, Position
from shared.validate import (
    MAX_DETAIL_ITEMS,
    MAX_ID_LEN,
    MAX_QUANTITY,
    RefusalCounter,
    problem,
    valid_symbol,
)

log = logging.getLogger("monitor")

MAX_SYMBOLS = 10_000  # distinct symbols kept in memory and in ``marks``
LOG_POSITIONS = 50  # positions written into one pnl log line at most


class JournalOrder(msgspec.Struct, kw_only=True):
    """The fields of one entry of execution's ``orders`` command that the gate needs."""

    order_ref: str
    symbol: str
    side: Literal["BUY", "SELL"]
    quantity: float


class Accountant:
    def __init__(
        self,
        ledger: Ledger,
        initial_cash: float,
        alert_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.book = Book(initial_cash=initial_cash)
        self.alerts = RefusalCounter(interval_s=alert_interval_s, clock=clock)
        self.counters = {
            "booked": 0,
            "duplicates": 0,
            "released": 0,
            "backfilled": 0,
            "handler_errors": 0,
            "invalid_in_ledger": 0,
        }
        self.broker_positions: dict[str, float] = {}
        self.changed = True
        self._rebuild()

    # ------------------------------------------------------------------ start
    def _rebuild(self) -> None:
        """The ledger is the source of truth: book every stored fill, then restore the marks."""
        for row in self.ledger.fills():
            fill = row_to_fill(row)
            if problem(fill) is not None:  # written by an older version: never book it
                self.counters["invalid_in_ledger"] += 1
                continue
            self.book.apply_fill(fill.symbol, fill.side, fill.quantity, fill.price, fill.commission)
        if self.counters["invalid_in_ledger"]:
            event(
                log,
                "ledger_invalid_rows",
                logging.ERROR,
                ledger=self.ledger.path,
                rows=self.counters["invalid_in_ledger"],
            )
        for symbol, price in self.ledger.marks().items():
            self.book.mark(symbol, price)
        for row in self.ledger.quarantined():  # an order learnt just before a stop
            if row["reason"] == UNKNOWN_ORDER and self.ledger.known_order(row["order_ref"]):
                self.release(row["order_ref"])

    @property
    def fills_booked(self) -> int:
        return self.ledger.fill_count()

    # ------------------------------------------------------------------ messages
    def handle_safely(self, message: Message) -> None:
        try:
            self.handle(message)
        except Exception:  # a handler bug must not stop the receive loop
            self.counters["handler_errors"] += 1
            log.error(
                "handler_failed",
                exc_info=True,
                extra=fields(kind=type(message).__name__, topic=message.topic()[:64]),
            )

    def handle(self, message: Message) -> None:
        reason = problem(message)
        if reason is not None:
            self._alert(f"refused_{type(message).__name__.lower()}:{reason}")
            return
        if isinstance(message, Fill):
            self.admit(message, "bus")
        elif isinstance(message, Bar):
            self.on_bar(message)
        elif isinstance(message, OrderEvent):
            self.on_order_event(message)
        elif isinstance(message, Position) and self._symbol_room(
            message.symbol, self.broker_positions
        ):
            self.broker_positions[message.symbol] = message.quantity

    def on_bar(self, bar: Bar) -> None:
        if not self._symbol_room(bar.symbol, self.book.symbols):
            return
        self.ledger.record_mark(bar.symbol, bar.close, bar.ts_event)
        self.book.mark(bar.symbol, bar.close)
        self.changed = self.changed or self.book.symbol(bar.symbol).quantity != 0

    def on_order_event(self, order: OrderEvent) -> None:
        if self.ledger.record_order_event(order):
            event(
                log,
                "order",
                symbol=order.symbol,
                order_ref=order.order_ref,
                status=order.status,
                side=order.side,
                quantity=order.quantity,
                reason=order.reason[:200],
            )
        if order.status != "skipped" and order.quantity > 0:
            self.register_order(order.order_ref, order.symbol, order.side, order.quantity, "bus")

    # ------------------------------------------------------------------ orders
    def register_order(
        self, order_ref: str, symbol: str, side: str, quantity: float, source: str
    ) -> None:
        """Learn one of execution's orders; quarantined fills waiting for it are booked now."""
        if not (order_ref and len(order_ref) <= MAX_ID_LEN and valid_symbol(symbol)):
            self._alert("bad_order:reference_or_symbol")
            return
        if side not in ("BUY", "SELL") or not 0 < quantity <= MAX_QUANTITY:
            self._alert("bad_order:side_or_quantity")
            return
        if not self._symbol_room(symbol, self.book.symbols):
            return
        known = self.ledger.known_order(order_ref)
        if known is not None:
            if KnownOrder.from_row(known) != KnownOrder(order_ref, symbol, side, float(quantity)):
                self._alert("order_conflict", order_ref=order_ref, source=source)
            return
        self.ledger.record_known_order(order_ref, symbol, side, quantity, source, time.time_ns())
        self.release(order_ref)

    def register_journal(self, entries: Iterable[Any]) -> int:
        """Orders from execution's ``orders`` command (``journal`` entries); returns how many."""
        count = 0
        for raw in entries:
            try:
                entry = msgspec.convert(raw, JournalOrder)
            except msgspec.ValidationError:
                self._alert("bad_order:journal_entry")
                continue
            self.register_order(
                entry.order_ref, entry.symbol, entry.side, entry.quantity, "journal"
            )
            count += 1
        return count

    def release(self, order_ref: str) -> int:
        """Book the quarantined fills of ``order_ref`` that are consistent now (each once)."""
        known = self.ledger.known_order(order_ref)
        if known is None:
            return 0
        order = KnownOrder.from_row(known)
        released = 0
        for row in self.ledger.quarantined(order_ref):
            if row["reason"] != UNKNOWN_ORDER:
                continue
            fill = row_to_fill(row)
            why = inconsistency(fill, order, self.ledger.filled_quantity(order_ref))
            if why is not None:
                self.ledger.set_quarantine_reason(fill.exec_id, why)
                self._alert(f"quarantine:{why}", exec_id=fill.exec_id, order_ref=order_ref)
            elif self.ledger.release(fill.exec_id, time.time_ns()):
                self._apply(fill, "quarantine")
                self.counters["released"] += 1
                released += 1
        return released

    # ------------------------------------------------------------------ fills
    def admit(self, fill: Fill, source: str) -> Verdict:
        """Book ``fill`` when it is valid, new and consistent with a known order."""
        reason = problem(fill)
        if reason is not None:
            self._alert(f"refused_fill:{reason}")
            return "refused"
        now = time.time_ns()
        seen = self.ledger.find_exec(fill.exec_id)
        if seen is not None:
            table, row = seen
            if same_fill(fill, row):
                self.counters["duplicates"] += 1
                return "duplicate"
            if self.ledger.record_conflict(fill, now):
                self._alert("exec_id_conflict", exec_id=fill.exec_id, existing=table)
            else:
                self.counters["duplicates"] += 1  # the same conflicting fill again
            return "conflict"
        known = self.ledger.known_order(fill.order_ref)
        order = None if known is None else KnownOrder.from_row(known)
        why = inconsistency(fill, order, self.ledger.filled_quantity(fill.order_ref))
        if why is not None:
            self.ledger.quarantine(fill, why, now)
            self._alert(f"quarantine:{why}", exec_id=fill.exec_id, order_ref=fill.order_ref)
            return "quarantined"
        if not self._symbol_room(fill.symbol, self.book.symbols):
            return "refused"
        self.ledger.record_fill(fill, now)
        self._apply(fill, source)
        return "booked"

    def backfill(self, rows: Iterable[Any]) -> int:
        """Fills from execution's ``fills`` command; returns how many were booked now."""
        booked = 0
        for raw in rows:
            try:
                fill = msgspec.convert(raw, Fill)
            except msgspec.ValidationError:
                self._alert("refused_fill:backfill_shape")
                continue
            booked += self.admit(fill, "backfill") == "booked"
        self.counters["backfilled"] += booked
        return booked

    def _apply(self, fill: Fill, source: str) -> None:
        realized = self.book.apply_fill(
            fill.symbol, fill.side, fill.quantity, fill.price, fill.commission
        )
        self.counters["booked"] += 1
        self.changed = True
        event(
            log,
            "fill",
            source=source,
            symbol=fill.symbol,
            side=fill.side,
            quantity=fill.quantity,
            price=fill.price,
            commission=round(fill.commission, 6),
            exec_id=fill.exec_id,
            order_ref=fill.order_ref,
            position=self.book.symbol(fill.symbol).quantity,
            realized=round(realized, 6),
            equity=round(self.book.equity, 2),
        )

    # ------------------------------------------------------------------ helpers
    def _symbol_room(self, symbol: str, known: Any) -> bool:
        if symbol in known or len(known) < MAX_SYMBOLS:
            return True
        self._alert("too_many_symbols")
        return False

    def _alert(self, reason: str, **detail: Any) -> None:
        if self.alerts.add(reason):
            event(
                log,
                "refused" if reason.startswith(("refused", "bad_")) else "alert",
                logging.WARNING,
                reason=reason,
                count=self.alerts.counts[reason],
                **detail,
            )

    def positions(self, limit: int = MAX_DETAIL_ITEMS) -> dict[str, float]:
        """Positions by symbol, open ones first, at most ``limit`` of them (bounded messages)."""
        items = sorted(self.book.positions().items(), key=lambda kv: (kv[1] == 0, kv[0]))
        return dict(items[:limit])

    def status(self) -> dict[str, Any]:
        return {
            "fills": self.fills_booked,
            **{k: v for k, v in self.counters.items() if k != "booked"},
            "orders_known": self.ledger.known_order_count(),
            "quarantined": self.ledger.quarantine_counts(),
            "conflicts": self.ledger.conflict_count(),
            "alerts": self.alerts.snapshot(),
            "equity": self.book.equity,
        }

    def pnl_log_fields(self) -> dict[str, Any]:
        open_positions = {s: q for s, q in self.book.positions().items() if q != 0}
        shown = dict(sorted(open_positions.items())[:LOG_POSITIONS])
        return {
            "realized": round(self.book.realized, 2),
            "unrealized": round(self.book.unrealized, 2),
            "fees": round(self.book.fees, 2),
            "equity": round(self.book.equity, 2),
            "positions": shown,
            "positions_omitted": len(open_positions) - len(shown),
        }
