"""Broker events and reconciliation: what the broker reports, turned into journal, book and bus.

``Reconciler`` owns one responsibility: every event the broker puts on its queue (order status,
fills, position reports, connection changes) is admitted, applied to the order journal and the
position book, and published on the bus; after every (re)connection it checks the live guard and
reconciles (missed fills recovered, reservations the broker never saw marked lost, the book
replaced by the broker's positions, every position published).

Everything it touches is handed in (journal, book, safety switches, broker, a publish callable,
the shared counters); it never reaches into the service. The caller serialises calls (the service
drains the broker's queue under its decision lock), so nothing here locks.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import msgspec

from execution.broker import (
    Broker,
    BrokerError,
    BrokerEvent,
    BrokerFill,
    BrokerPosition,
    ConnectionChange,
    OrderRequest,
    OrderUpdate,
)
from execution.input_guard import InputGuard
from execution.order_journal import OrderJournal, OrderState
from execution.positions import PositionBook
from execution.safety import SafetySwitches
from shared.logs import event
from shared.messages import Fill, Message, OrderEvent, Position

log = logging.getLogger("execution")

# A broker's status report -> the journal's lifecycle state it stands for.
UPDATE_TO_STATE = {
    "submitted": OrderState.SENT,
    "acknowledged": OrderState.ACKNOWLEDGED,
    "filled": OrderState.FILLED,
    "cancelled": OrderState.CANCELLED,
    "rejected": OrderState.REJECTED,
}

RECOVER_OVERLAP_NS = 60 * 10**9  # executions re-asked from a minute before the last one booked
# This service's order references: <strategy>-<SYMBOL>-<bar_seq>[-tp|-sl] (decision.order_ref_for,
# routing.bracket_children) and flat-<SYMBOL>-<reason>-<n> (safety_actions' flattening).
OWN_REF = re.compile(
    r"^(?:[A-Za-z0-9_]+-(?P<symbol>[^-]+)-(?P<seq>\d+)(?:-tp|-sl)?|flat-(?P<flat>[^-]+)-.+)$"
)


class Reconciler:
    """Applies broker events to the journal and the book, and reconciles after a (re)connect."""

    def __init__(
        self,
        *,
        broker: Broker,
        journal: OrderJournal,
        book: PositionBook,
        safety: SafetySwitches,
        publish: Callable[[Message], Any],
        symbols: frozenset[str],
        counters: dict[str, int],
        guard: InputGuard | None = None,
        on_error: Callable[[str, str], None] | None = None,
        log_trades: bool = True,
        live_confirmed: bool = False,
        paper_path: Any = "",
        track_record: Callable[[], str] | None = None,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.book = book
        self.safety = safety
        self.publish = publish
        self.symbols = symbols
        self.counters = counters  # shared with the service's status: fills, rejected, ...
        self.guard = guard if guard is not None else InputGuard()
        self.on_error = on_error
        self.log_trades = log_trades
        self.live_confirmed = live_confirmed
        self.paper_path = paper_path
        # the paper track record a live account needs beyond the two keys ('' = enough)
        self.track_record = track_record
        self.reconciliations = 0

    # ------------------------------------------------------------------ events
    async def handle(self, ev: BrokerEvent) -> None:
        """One broker event; a failure is logged with its traceback and the next one goes on."""
        try:
            if self.guard.admit_broker_event(ev):
                await self.dispatch(ev)
        except Exception:
            if self.on_error is None:
                raise
            self.on_error("broker", type(ev).__name__)

    async def dispatch(self, ev: BrokerEvent) -> None:
        if isinstance(ev, OrderUpdate):
            self.on_order_update(ev)
        elif isinstance(ev, BrokerFill):
            self.on_fill(ev)
        elif isinstance(ev, BrokerPosition):
            self.on_position(ev)
        elif isinstance(ev, ConnectionChange):
            await self.on_connection(ev)

    def on_order_update(self, up: OrderUpdate) -> None:
        state = UPDATE_TO_STATE[up.status]
        entry = self.journal.get(up.order_ref)
        if entry is None:
            return  # not ours (another client, manual order)
        reason = up.reason
        if up.status == "rejected" and up.error_code:
            reason = f"IB error {up.error_code}: {up.reason}"
        if not self.journal.advance(
            up.order_ref, state, up.broker_order_id or None, reason or None
        ):
            return
        if up.status == "rejected":
            self.counters["rejected"] += 1
            event(
                log,
                "order_rejected",
                logging.ERROR,
                order_ref=up.order_ref,
                code=up.error_code,
                reason=up.reason,
            )
        self.publish(
            OrderEvent(
                symbol=up.symbol,
                order_ref=up.order_ref,
                side=entry.side,  # type: ignore[arg-type]
                quantity=float(entry.quantity),
                order_type=entry.order_type,
                status=up.status,
                bar_seq=entry.bar_seq,
                broker_order_id=up.broker_order_id,
                limit_price=entry.limit_price,
                reason=reason,
                ts_event=up.ts_ns or time.time_ns(),
            )
        )

    def on_fill(self, fill: BrokerFill) -> None:
        entry = self.journal.get(fill.order_ref)
        if entry is None and not self._adopt(fill):
            event(log, "foreign_fill_ignored", exec_id=fill.exec_id, order_ref=fill.order_ref)
            return
        if self.journal.fill_published(fill.exec_id):
            return
        self.publish(
            Fill(
                symbol=fill.symbol,
                exec_id=fill.exec_id,
                order_ref=fill.order_ref,
                side=fill.side,
                quantity=fill.quantity,
                price=fill.price,
                commission=fill.commission,
                account=fill.account or self.broker.account,
                ts_event=fill.ts_ns or time.time_ns(),
            )
        )
        self.journal.save_fill(fill, published=True)
        self.counters["fills"] += 1
        if fill.recovered:
            self.counters["recovered_fills"] += 1
        else:  # live: the broker's position report follows; until then count the fill ourselves
            self.book.on_live_fill(fill)
        if self.log_trades:
            event(
                log,
                "fill",
                exec_id=fill.exec_id,
                order_ref=fill.order_ref,
                symbol=fill.symbol,
                side=fill.side,
                quantity=fill.quantity,
                price=fill.price,
                commission=fill.commission,
                recovered=fill.recovered,
            )

    def _adopt(self, fill: BrokerFill) -> bool:
        """A fill of one of OUR orders the journal does not hold: its reservation was lost with
        the last seconds of the journal in a host crash (``EXECUTION_JOURNAL_SYNC=normal``, see
        the README). Ours = a traded symbol and this service's reference format; the order is
        journalled from the fill (as sent, never to be sent again) and the fill then booked as
        usual. Anything else (a manual order, another client's) stays foreign."""
        ref, symbol = fill.order_ref, fill.symbol
        match = OWN_REF.match(ref)
        if symbol not in self.symbols or match is None:
            return False
        if (match["symbol"] or match["flat"]) != symbol:
            return False
        adopted = OrderRequest(
            order_ref=ref,
            symbol=symbol,
            side=fill.side,
            quantity=int(abs(fill.quantity)) or 1,
            bar_seq=int(match["seq"] or 0),
        )
        self.journal.reserve(adopted)
        self.journal.advance(ref, OrderState.SENT, reason="adopted from the broker's fill")
        self.counters["adopted_orders"] += 1
        event(log, "order_adopted", logging.WARNING, order_ref=ref, exec_id=fill.exec_id)
        return True

    def on_position(self, pos: BrokerPosition) -> None:
        self.book.on_broker_position(pos)
        self.publish_position(pos)

    def publish_position(self, pos: BrokerPosition) -> None:
        self.publish(
            Position(
                symbol=pos.symbol,
                quantity=pos.quantity,
                avg_cost=pos.avg_cost,
                account=pos.account or self.broker.account,
                ts_event=time.time_ns(),
            )
        )

    async def on_connection(self, change: ConnectionChange) -> None:
        if not change.connected:
            event(
                log,
                "broker_disconnected",
                logging.WARNING,
                broker=self.broker.name,
                reason=change.reason,
            )
            return
        self.check_live_guard()
        await self.reconcile()
        self.counters["reconnects"] += 1  # connections reconciled (the first one included)

    # ------------------------------------------------------------------ (re)connection
    def check_live_guard(self) -> None:
        paper = self.broker.is_paper()
        confirmed = self.live_confirmed
        refusal = (
            f"account {self.broker.account} is a LIVE account: refusing to trade (set"
            f" allow_live in {self.paper_path} AND"
            " EXECUTION_CONFIRM_LIVE=yes-i-mean-live)"
        )
        if not paper and confirmed and self.track_record is not None:
            missing = self.track_record()  # read now: a new report counts at the next connect
            if missing:
                confirmed = False
                refusal = f"account {self.broker.account} is a LIVE account: {missing}"
        self.safety.observe_account(paper=paper, confirmed=confirmed, refusal=refusal)
        if paper:
            return
        if self.safety.live_refused:
            event(
                log,
                "live_account_refused",
                logging.ERROR,
                account=self.broker.account,
                reason=self.safety.live_refused,
            )
        else:
            event(log, "live_trading_confirmed", logging.WARNING, account=self.broker.account)

    async def reconcile(self) -> None:
        """At start and after every reconnect: positions, missed fills, orders, then publish."""
        broker_positions = self.broker.positions()
        # missed executions first: a recovered fill is already inside the broker's positions
        since = max(0, self.journal.last_exec_ns() - RECOVER_OVERLAP_NS)
        try:
            fills = await self.broker.recover_fills(since)
        except BrokerError as exc:
            event(log, "recover_fills_failed", logging.ERROR, error=str(exc))
            fills = []
        for fill in fills:
            self.on_fill(msgspec.structs.replace(fill, recovered=True))
        known = self.broker.known_order_refs()
        lost = 0
        for entry in self.journal.open_entries():
            if entry.order_ref not in known and self.journal.advance(
                entry.order_ref,
                OrderState.LOST,
                reason="reserved but unknown to the broker after reconnect",
            ):
                lost += 1
        corrected = self._mismatches(broker_positions) if self.reconciliations else {}
        self.book.replace_all(broker_positions)
        self.reconciliations += 1
        if corrected:
            event(log, "positions_corrected", logging.WARNING, positions=corrected)
        for symbol in sorted(self.symbols | set(broker_positions)):
            pos = broker_positions.get(symbol) or BrokerPosition(
                symbol=symbol, quantity=0.0, account=self.broker.account
            )
            self.publish_position(pos)
        event(
            log,
            "reconciled",
            account=self.broker.account,
            paper=self.broker.is_paper(),
            positions={s: p.quantity for s, p in broker_positions.items()},
            recovered_fills=len(fills),
            lost_reservations=lost,
            working=len(self.broker.working_orders()),
        )

    def _mismatches(self, reported: dict[str, BrokerPosition]) -> dict[str, dict[str, float]]:
        """Symbols where the book (before this reconciliation) disagrees with the broker."""
        out: dict[str, dict[str, float]] = {}
        for symbol in sorted(set(self.book.all()) | set(reported)):
            book_qty = self.book.quantity(symbol)
            pos = reported.get(symbol)
            broker_qty = pos.quantity if pos else 0.0
            if book_qty != broker_qty:
                out[symbol] = {"book": book_qty, "broker": broker_qty}
        return out
