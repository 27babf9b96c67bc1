"""Book fills into the ledger, mark positions to the latest bar close, log PnL as JSON lines.

On start the book is rebuilt from the ledger, so a restarted monitor continues where it was. Fills
published while the monitor was down are back-filled from execution's journal (command ``fills``)
at start and every ``reconcile_interval_s``; the ledger's exec_id key makes that idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

from monitor.config import MonitorSettings
from monitor.ledger import Ledger
from shared.accounting import Book
from shared.bus import CommandError, heartbeat_loop
from shared.logs import event
from shared.messages import Bar, Fill, OrderEvent, PnL, Position
from shared.runtime import BusConnection

log = logging.getLogger("monitor")


class MonitorService:
    def __init__(self, settings: MonitorSettings, bus: BusConnection) -> None:
        self.settings = settings
        self.bus = bus
        self.ledger = Ledger(settings.ledger_path)
        self.book = Book(initial_cash=settings.initial_cash)
        self.fills_booked = 0
        self.duplicates_ignored = 0
        self.backfilled = 0
        self._changed = True
        self._broker_positions: dict[str, float] = {}
        for row in self.ledger.fills():  # rebuild the book: the ledger is the source of truth
            self.book.apply_fill(
                row["symbol"], row["side"], row["quantity"], row["price"], row["commission"]
            )
            self.fills_booked += 1
        self.subscriber = bus.subscriber(["fill.", "order.", "position.", "bar."])
        self.execution = bus.command_client("execution")

    # ------------------------------------------------------------------ booking
    def book_fill(self, fill: Fill, source: str) -> bool:
        if not self.ledger.record_fill(fill, time.time_ns()):
            self.duplicates_ignored += 1
            return False
        realized = self.book.apply_fill(
            fill.symbol, fill.side, fill.quantity, fill.price, fill.commission
        )
        self.fills_booked += 1
        self._changed = True
        sym = self.book.symbol(fill.symbol)
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
            position=sym.quantity,
            realized=round(realized, 6),
            equity=round(self.book.equity, 2),
        )
        return True

    def pnl_message(self) -> PnL:
        return PnL(
            account=self.settings.account,
            realized=self.book.realized,
            unrealized=self.book.unrealized,
            fees=self.book.fees,
            equity=self.book.equity,
            positions=self.book.positions(),
            ts_event=time.time_ns(),
        )

    def publish_pnl(self) -> None:
        pnl = self.bus.publisher.publish(self.pnl_message())
        assert isinstance(pnl, PnL)
        self.ledger.record_pnl(pnl)
        event(
            log,
            "pnl",
            realized=round(pnl.realized, 2),
            unrealized=round(pnl.unrealized, 2),
            fees=round(pnl.fees, 2),
            equity=round(pnl.equity, 2),
            positions=pnl.positions,
        )
        self._changed = False

    # ------------------------------------------------------------------ loops
    async def consume(self) -> None:
        while True:
            message = await self.subscriber.recv()
            if isinstance(message, Fill):
                self.book_fill(message, "bus")
            elif isinstance(message, Bar):
                self.book.mark(message.symbol, message.close)
                self._changed = self._changed or self.book.symbol(message.symbol).quantity != 0
            elif isinstance(message, OrderEvent):
                if self.ledger.record_order_event(message):
                    event(
                        log,
                        "order",
                        symbol=message.symbol,
                        order_ref=message.order_ref,
                        status=message.status,
                        side=message.side,
                        quantity=message.quantity,
                        reason=message.reason,
                    )
            elif isinstance(message, Position):
                self._broker_positions[message.symbol] = message.quantity

    async def pnl_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.pnl_interval_s)
            if self._changed:
                self.publish_pnl()
            self._check_positions()

    def _check_positions(self) -> None:
        for symbol, broker_qty in self._broker_positions.items():
            ledger_qty = self.book.symbol(symbol).quantity
            if abs(broker_qty - ledger_qty) > 1e-9:
                event(
                    log,
                    "position_mismatch",
                    logging.WARNING,
                    symbol=symbol,
                    broker=broker_qty,
                    ledger=ledger_qty,
                )

    async def reconcile_loop(self) -> None:
        warned = False
        while True:
            try:
                rows = await self.execution.request(
                    "fills",
                    {"since_ns": max(0, self.ledger.last_fill_ts() - 10**12)},
                    timeout_s=self.bus.settings.command_timeout_s,
                )
                new = sum(self.book_fill(msgspec.convert(row, Fill), "backfill") for row in rows)
                self.backfilled += new
                warned = False
            except (CommandError, msgspec.ValidationError) as exc:
                if not warned:  # execution may simply not be up yet
                    event(log, "backfill_unavailable", logging.WARNING, error=str(exc))
                    warned = True
            await asyncio.sleep(self.settings.reconcile_interval_s)

    # ------------------------------------------------------------------ commands
    def status_detail(self) -> dict[str, Any]:
        stats = self.subscriber.stats
        return {
            "ready": True,
            "fills": self.fills_booked,
            "duplicates": self.duplicates_ignored,
            "backfilled": self.backfilled,
            "malformed": stats.malformed,
            "gaps": stats.gaps,
            "equity": self.book.equity,
        }

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status_detail()

    async def fills(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.ledger.fills()

    async def orders(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.ledger.order_events()

    async def pnl(self, args: dict[str, Any]) -> dict[str, Any]:
        return msgspec.to_builtins(self.pnl_message())  # type: ignore[no-any-return]

    async def heartbeats(self) -> None:
        await heartbeat_loop(
            self.bus.publisher,
            "monitor",
            self.bus.settings.heartbeat_interval_s,
            self.status_detail,
        )

    def close(self) -> None:
        self.subscriber.close()
        self.execution.close()
        self.ledger.close()
