"""Book fills into the ledger, mark positions to the latest bar close, log PnL as JSON lines.

The bus side of the monitor; the state and every rule live in ``monitor.core.Accountant``.

On start the book is rebuilt from the ledger (fills, then the last bar close per symbol), so a
restarted monitor continues where it was, with the same equity. Fills published while the monitor
was down are back-filled from execution's journal (command ``fills``) at start and every
``reconcile_interval_s``; when fills wait in quarantine for an unknown order, execution's ``orders``
command is asked too, and a fill whose order becomes known is booked then, exactly once.

Subscriptions: ``fill.`` ``order.`` ``position.`` ``bar.``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

from monitor.config import MonitorSettings
from monitor.core import Accountant
from monitor.gate import UNKNOWN_ORDER
from monitor.ledger import Ledger
from shared.accounting import Book
from shared.bus import CommandError, heartbeat_loop
from shared.logs import event
from shared.messages import PnL
from shared.runtime import BusConnection

log = logging.getLogger("monitor")

JOURNAL_LIMIT = 5_000  # orders asked from execution's journal when fills wait for their order


class MonitorService:
    def __init__(self, settings: MonitorSettings, bus: BusConnection) -> None:
        self.settings = settings
        self.bus = bus
        self.ledger = Ledger(settings.ledger_path)  # LedgerError names the file
        self.accountant = Accountant(self.ledger, settings.initial_cash)
        self.subscriber = bus.subscriber(["fill.", "order.", "position.", "bar."])
        self.execution = bus.command_client("execution")

    @property
    def book(self) -> Book:
        return self.accountant.book

    @property
    def fills_booked(self) -> int:
        return self.accountant.fills_booked

    # ------------------------------------------------------------------ pnl
    def pnl_message(self) -> PnL:
        return PnL(
            account=self.settings.account,
            realized=self.book.realized,
            unrealized=self.book.unrealized,
            fees=self.book.fees,
            equity=self.book.equity,
            positions=self.accountant.positions(),
            ts_event=time.time_ns(),
        )

    def publish_pnl(self) -> None:
        pnl = self.bus.publisher.publish(self.pnl_message())
        assert isinstance(pnl, PnL)
        self.ledger.record_pnl(pnl)
        event(log, "pnl", **self.accountant.pnl_log_fields())
        self.accountant.changed = False

    # ------------------------------------------------------------------ loops
    async def consume(self) -> None:
        while True:
            message = await self.subscriber.recv()
            self.accountant.handle_safely(message)  # never raises

    async def pnl_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.pnl_interval_s)
            try:
                if self.accountant.changed:
                    self.publish_pnl()
                self._check_positions()
            except Exception:
                log.exception("pnl_failed")

    def _check_positions(self) -> None:
        for symbol, broker_qty in self.accountant.broker_positions.items():
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

    async def reconcile_once(self) -> int:
        """One back-fill pass: fills since shortly before the last booked one, then orders when
        fills wait for theirs. Returns how many fills were booked."""
        timeout = self.bus.settings.command_timeout_s
        rows = await self.execution.request(
            "fills",
            {"since_ns": max(0, self.ledger.last_fill_ts() - 10**12)},
            timeout_s=timeout,
        )
        before = self.accountant.counters["released"]
        booked = self.accountant.backfill(rows if isinstance(rows, list) else [])
        if self.ledger.quarantine_counts().get(UNKNOWN_ORDER):
            orders = await self.execution.request(
                "orders", {"limit": JOURNAL_LIMIT}, timeout_s=timeout
            )
            journal = orders.get("journal", []) if isinstance(orders, dict) else []
            self.accountant.register_journal(journal if isinstance(journal, list) else [])
        return booked + self.accountant.counters["released"] - before

    async def reconcile_loop(self) -> None:
        warned = False
        while True:
            try:
                await self.reconcile_once()
                warned = False
            except CommandError as exc:
                if not warned:  # execution may simply not be up yet
                    event(log, "backfill_unavailable", logging.WARNING, error=str(exc)[:200])
                    warned = True
            except Exception:
                log.exception("backfill_failed")
            await asyncio.sleep(self.settings.reconcile_interval_s)

    # ------------------------------------------------------------------ commands
    def status_detail(self) -> dict[str, Any]:
        stats = self.subscriber.stats
        return {
            "ready": True,
            **self.accountant.status(),
            "malformed": stats.malformed,
            "bus_refused": stats.refused.snapshot(),  # refused by the subscriber's validation
            "gaps": stats.gaps,
            "initial_cash": self.settings.initial_cash,
            "equity_basis": "ledger: MONITOR_INITIAL_CASH + booked fills marked at the last bar",
        }

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status_detail()

    async def fills(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.ledger.fills()

    async def orders(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.ledger.order_events()

    async def quarantine(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"quarantine": self.ledger.quarantined(), "conflicts": self.ledger.conflicts()}

    async def pnl(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            **msgspec.to_builtins(self.pnl_message()),
            "initial_cash": self.settings.initial_cash,
        }

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
