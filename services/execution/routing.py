"""Sending a decided order: journal first, then the broker, every step on the bus.

``OrderRouter`` owns the path from a decision to the broker: a bracket strategy's stale exits are
cancelled before a reducing or flipping order, the reference (and a bracket's children) is
reserved in the journal BEFORE the broker sees the order; right after the send, the order counts
against the rate limit (closing orders of the safety actions are exempt) and the day's order
count, and ``submitted``, ``rejected`` are published as ``OrderEvent``. A reference the journal
already holds is never sent.

Broker, journal, rate limiter, the shared counters and a publish callable are handed in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from execution.broker import Broker, BrokerError, OrderRequest
from execution.decision import PlaceOrder
from execution.order_journal import OrderJournal, OrderState
from execution.risk import RateLimiter
from shared.logs import event
from shared.messages import Message, OrderEvent

log = logging.getLogger("execution")


def bracket_children(order: OrderRequest) -> tuple[OrderRequest, ...]:
    """A bracket's take-profit and stop-loss as the journal reserves them (``<ref>-tp/-sl``)."""
    if order.order_type != "BRACKET":
        return ()
    exit_side = "SELL" if order.side == "BUY" else "BUY"
    return (
        msgspec.structs.replace(order, order_ref=f"{order.order_ref}-tp", side=exit_side,
                                order_type="LMT", limit_price=order.take_profit),
        msgspec.structs.replace(order, order_ref=f"{order.order_ref}-sl", side=exit_side,
                                order_type="STP", limit_price=order.stop_loss),
    )  # fmt: skip


class OrderRouter:
    def __init__(
        self,
        *,
        broker: Broker,
        journal: OrderJournal,
        rate: RateLimiter,
        counters: dict[str, int],
        publish: Callable[[Message], Any],
        bracket_orders: bool = False,
        log_trades: bool = True,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.rate = rate
        self.counters = counters  # shared with the service's status: orders, rejected, ...
        self.publish = publish
        self.bracket_orders = bracket_orders  # the strategy trades brackets (order_type BRACKET)
        self.log_trades = log_trades

    async def route(self, decision: PlaceOrder, *, day: str, equity: float) -> None:
        """Send a decided order: stale bracket exits cancelled first, then journal, then broker."""
        order = decision.order
        if self.bracket_orders and order.order_type != "BRACKET":
            # reducing or flipping: the old brackets' exits must not close the position again
            for w in self.broker.working_orders():
                if w.symbol == order.symbol and w.is_child:
                    await self.broker.cancel(w.order_ref)
        if decision.notes:
            event(
                log,
                "target_clipped",
                order_ref=order.order_ref,
                desired=decision.desired,
                target=decision.target,
                limits=list(decision.notes),
            )
        await self.send(order, day=day, equity=equity)

    async def send(
        self, order: OrderRequest, *, day: str, equity: float, exempt: bool = False
    ) -> bool:
        """Journal first, then the broker. Returns True when the broker took the order.

        Only the reservation (one committed transaction, parent and bracket children together)
        happens before ``place``; the rate window, the counters, the ``submitted`` event and the
        SENT state with the day's order count (one transaction) follow the send, so the order
        leaves as early as the journal rule allows. Nothing awaits in between (``place`` awaits
        only a contract not qualified yet), so no other decision can run before they are done.
        """
        if not self.journal.reserve(order, children=bracket_children(order)):
            self.counters["duplicates"] += 1
            event(log, "duplicate_order_ref", order_ref=order.order_ref)
            return False
        try:
            broker_id = await self.broker.place(order)
        except BrokerError as exc:
            self._count(order, exempt)
            self.journal.count_order(day, equity)
            self.journal.advance(order.order_ref, OrderState.REJECTED, reason=str(exc))
            self.counters["rejected"] += 1
            self.publish_order(order, "rejected", reason=f"not sent: {exc}")
            event(log, "order_not_sent", logging.ERROR, order_ref=order.order_ref, error=str(exc))
            return False
        self._count(order, exempt)
        self.journal.mark_sent(order.order_ref, broker_id, day, equity)
        if self.log_trades:
            event(
                log,
                "order_sent",
                order_ref=order.order_ref,
                symbol=order.symbol,
                side=order.side,
                quantity=order.quantity,
                order_type=order.order_type,
                limit=order.limit_price,
                broker_order_id=broker_id,
            )
        return True

    def _count(self, order: OrderRequest, exempt: bool) -> None:
        """A decided order counts (rate window, counters) and is announced as submitted,
        whether or not the broker then took it."""
        if not exempt:
            self.rate.record()
        self.counters["orders"] += 1
        self.publish_order(order, "submitted")

    def publish_order(self, order: OrderRequest, status: str, reason: str = "") -> None:
        self.publish(
            OrderEvent(
                symbol=order.symbol,
                order_ref=order.order_ref,
                side=order.side,
                quantity=float(order.quantity),
                order_type=order.order_type,
                status=status,  # type: ignore[arg-type]
                bar_seq=order.bar_seq,
                limit_price=order.limit_price,
                reason=reason,
                ts_event=time.time_ns(),
            )
        )
