"""Every filled share of our own orders is in exactly one place the execution service sees: a
working order, a position report, or a booked fill (``execution.ib_broker``).

IB reports an execution in pieces: the order status ("Filled"), the execution, the position,
and the commission report, which the adapter waits for before it hands the fill over (a fill is
never booked with a commission of 0). In the gaps the service must neither forget the shares
(and order them again: found by the stability loop, the same 20 shares sold twice) nor count
them twice (the position report already holds a fill handed over later). The adapter's events
are driven here in each order IB can send them, with ib_async's own types and no connection.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from execution.ib_broker import IBBroker
from execution.positions import PositionBook
from ib_async import (
    CommissionReport,
    Execution,
    Fill,
    MarketOrder,
    OrderStatus,
    Position,
    Stock,
    Trade,
)

from shared.paper_config import IBConnection

pytestmark = pytest.mark.unit

ACCOUNT = "DU1234567"
NOW = dt.datetime(2024, 3, 4, 15, 0, tzinfo=dt.UTC)


def _broker() -> IBBroker:
    broker = IBBroker(IBConnection(), symbols=("AAPL",), commission_wait_s=60.0)
    broker._account = ACCOUNT
    return broker


def _placed(broker: IBBroker, ref: str, qty: float) -> Trade:
    order = MarketOrder("BUY", qty, orderRef=ref, orderId=7, clientId=11)
    trade = Trade(contract=Stock("AAPL", "SMART", "USD"), order=order)
    trade.orderStatus = OrderStatus(orderId=7, status="Submitted", remaining=qty)
    broker._fills.placed(ref)
    broker._known_refs.add(ref)
    broker._track(trade)
    return trade


def _filled(broker: IBBroker, trade: Trade, qty: float) -> None:
    trade.orderStatus = OrderStatus(orderId=7, status="Filled", filled=qty, remaining=0)
    broker._track(trade)


def _execution(trade: Trade, qty: float) -> Fill:
    ex = Execution(
        execId="e1", orderId=7, orderRef=trade.order.orderRef, side="BOT", shares=qty,
        price=100.0, acctNumber=ACCOUNT, time=NOW,
    )  # fmt: skip
    return Fill(trade.contract, ex, CommissionReport(), NOW)


def _position(qty: float) -> Position:
    return Position(ACCOUNT, Stock("AAPL", "SMART", "USD"), qty, 100.0)


def _working(broker: IBBroker) -> float:
    return sum(w.remaining for w in broker.working_orders() if not w.is_child)


def _events(broker: IBBroker, book: PositionBook) -> list[object]:
    out = []
    while not broker.events.empty():
        ev = broker.events.get_nowait()
        out.append(ev)
        if type(ev).__name__ == "BrokerFill":
            book.on_live_fill(ev)  # type: ignore[arg-type]
        elif type(ev).__name__ == "BrokerPosition":
            book.on_broker_position(ev)  # type: ignore[arg-type]
    return out


def _seen(broker: IBBroker, book: PositionBook) -> float:
    """What a decision sees: the book's position plus the working shares."""
    _events(broker, book)
    held = book.get("AAPL")
    return (held.quantity if held else 0.0) + _working(broker)


@pytest.mark.parametrize("commission_first", [True, False])
async def test_shares_counted_once_whatever_the_order_of_ibs_reports(
    commission_first: bool,
) -> None:
    broker, book = _broker(), PositionBook()
    trade = _placed(broker, "rl-AAPL-1", 100)
    assert _seen(broker, book) == 100  # working
    _filled(broker, trade, 100)  # IB: Filled; nothing else yet
    assert _seen(broker, book) == 100, "between Filled and anything else the shares vanished"
    fill = _execution(trade, 100)
    broker._on_exec(trade, fill)
    assert _seen(broker, book) == 100
    report = CommissionReport(execId="e1", commission=1.0)
    if commission_first:  # the fill is handed over, then the position report includes it
        broker._on_commission(trade, fill, report)
        assert _seen(broker, book) == 100
        broker._on_position(_position(100))
    else:  # late commission: the position report first, then the fill
        broker._on_position(_position(100))
        assert _seen(broker, book) == 100
        broker._on_commission(trade, fill._replace(commissionReport=report), report)
    assert _seen(broker, book) == 100, "counted twice"
    assert broker.working_orders() == []
    # a later position report (the same 100) changes nothing
    broker._on_position(_position(100))
    assert _seen(broker, book) == 100
    for handle in broker._pending_fills.values():
        handle.cancel()
    await asyncio.sleep(0)
