"""execution.fill_book: tests written against mutants that survived the first mutmut run.

Expected counts follow the module doc: per order reference, unreported shares = filled shares
minus the shares of the executions accounted (handed over as fills, or inside a position report
of their symbol), each execution counted once, never below 0; a done trade is kept while it has
unreported shares. A single share (IB fills in whole shares) is as real as a hundred.
"""

from __future__ import annotations

import pytest
from execution.fill_book import FillBook
from ib_async import MarketOrder, OrderStatus, Stock, Trade

pytestmark = pytest.mark.unit

KEY = (11, 7)
REF = "rl-AAPL-1"


def _trade(qty: float, filled: float, ref: str = REF) -> Trade:
    order = MarketOrder("BUY", qty, orderRef=ref, orderId=7, clientId=11)
    trade = Trade(contract=Stock("AAPL", "SMART", "USD"), order=order)
    status = "Filled" if filled >= qty else "Cancelled"
    trade.orderStatus = OrderStatus(orderId=7, status=status, filled=filled, remaining=qty - filled)
    return trade


def test_a_done_trade_with_one_unreported_share_is_kept() -> None:
    book = FillBook()
    book.placed(REF)
    book.mark_accounted("e1", REF, 99)
    trade = _trade(100, 100)
    book.on_done(KEY, trade)
    assert book.unreported_shares(trade) == 1
    assert list(book.unbooked_trades()) == [trade]


def test_a_kept_trade_stays_until_its_last_share_is_accounted() -> None:
    book = FillBook()
    book.placed(REF)
    trade = _trade(100, 100)
    book.on_done(KEY, trade)
    book.mark_accounted("e1", REF, 99)
    assert list(book.unbooked_trades()) == [trade]  # 1 share still unreported
    book.mark_accounted("e2", REF, 1)
    assert list(book.unbooked_trades()) == []


def test_the_latest_done_report_of_an_order_decides_whether_it_is_kept() -> None:
    """The same order reported done again with no filled share unaccounted (a new Trade object
    for the key: ib_async's completedOrder builds one with a status-only OrderStatus, filled 0):
    nothing stays kept under its key."""
    book = FillBook()
    book.placed(REF)
    first = _trade(100, 100)
    book.on_done(KEY, first)
    assert list(book.unbooked_trades()) == [first]
    book.on_done(KEY, _trade(100, 0))
    assert list(book.unbooked_trades()) == []


def test_one_position_report_accounts_every_execution_before_it_each_once() -> None:
    book = FillBook()
    book.placed(REF)
    trade = _trade(100, 100)
    book.on_done(KEY, trade)
    book.on_execution("AAPL", "e1", REF, 60)
    book.on_execution("AAPL", "e2", REF, 40)
    book.on_position("AAPL")
    assert book.is_in_position("e1") and book.is_in_position("e2")
    assert book.unreported_shares(trade) == 0  # 100 - (60 + 40)
    assert list(book.unbooked_trades()) == []


def test_an_execution_in_a_position_report_is_not_counted_again_when_handed_over() -> None:
    book = FillBook()
    book.placed(REF)
    book.on_execution("AAPL", "e1", REF, 60)
    book.on_position("AAPL")  # accounts e1's 60
    book.mark_accounted("e1", REF, 60)  # e1's fill handed over later: the same 60
    trade = _trade(100, 100)  # the order's other 40 shares fill after that
    book.on_done(KEY, trade)
    assert book.unreported_shares(trade) == 40  # 100 - 60, not 100 - 120
    assert list(book.unbooked_trades()) == [trade]


def test_handing_over_an_execution_with_other_symbols_pending_is_fine() -> None:
    """Executions of other symbols wait for their own position reports: accounting one of
    AAPL's must leave them as they are (and not fail on them)."""
    book = FillBook()
    book.placed(REF)
    book.placed("rl-MSFT-1")
    book.on_execution("AAPL", "e1", REF, 100)
    book.on_execution("MSFT", "e2", "rl-MSFT-1", 50)
    book.mark_accounted("e1", REF, 100)
    msft = _trade(50, 50, "rl-MSFT-1")
    assert book.unreported_shares(msft) == 50
    book.on_position("MSFT")
    assert book.is_in_position("e2") and not book.is_in_position("e1")
    assert book.unreported_shares(msft) == 0
