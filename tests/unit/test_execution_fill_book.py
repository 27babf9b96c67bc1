"""The fill book (``execution.fill_book``): filled shares of this session's own orders count as
unreported until a handed-over fill or a position report accounts for them, each execution once.
"""

from __future__ import annotations

import pytest
from execution.fill_book import FillBook
from ib_async import MarketOrder, OrderStatus, Stock, Trade

pytestmark = pytest.mark.unit

KEY = (11, 7)


def _trade(ref: str, qty: float, filled: float) -> Trade:
    order = MarketOrder("BUY", qty, orderRef=ref, orderId=7, clientId=11)
    trade = Trade(contract=Stock("AAPL", "SMART", "USD"), order=order)
    status = "Filled" if filled >= qty else "Submitted"
    trade.orderStatus = OrderStatus(orderId=7, status=status, filled=filled, remaining=qty - filled)
    return trade


def test_only_placed_orders_have_unreported_shares() -> None:
    book = FillBook()
    trade = _trade("rl-AAPL-1", 100, 100)
    assert book.unreported_shares(trade) == 0  # not ours: another client's order
    book.placed("rl-AAPL-1")
    assert book.unreported_shares(trade) == 100


def test_a_handed_over_fill_is_accounted_once() -> None:
    book = FillBook()
    book.placed("rl-AAPL-1")
    trade = _trade("rl-AAPL-1", 100, 100)
    book.on_done(KEY, trade)
    assert list(book.unbooked_trades()) == [trade]
    book.mark_accounted("e1", "rl-AAPL-1", 60)
    assert book.unreported_shares(trade) == 40
    book.mark_accounted("e1", "rl-AAPL-1", 60)  # the same execution again: no change
    assert book.unreported_shares(trade) == 40
    assert list(book.unbooked_trades()) == [trade]
    book.mark_accounted("e2", "rl-AAPL-1", 40)
    assert book.unreported_shares(trade) == 0
    assert list(book.unbooked_trades()) == []


def test_a_done_trade_with_everything_accounted_is_not_kept() -> None:
    book = FillBook()
    book.placed("rl-AAPL-1")
    book.mark_accounted("e1", "rl-AAPL-1", 100)
    book.on_done(KEY, _trade("rl-AAPL-1", 100, 100))
    assert list(book.unbooked_trades()) == []


def test_a_position_report_accounts_the_executions_seen_before_it() -> None:
    book = FillBook()
    book.placed("rl-AAPL-1")
    trade = _trade("rl-AAPL-1", 100, 100)
    book.on_done(KEY, trade)
    book.on_execution("AAPL", "e1", "rl-AAPL-1", 100)
    book.on_position("MSFT")  # another symbol's report does not include it
    assert not book.is_in_position("e1")
    assert book.unreported_shares(trade) == 100
    book.on_position("AAPL")
    assert book.is_in_position("e1")
    assert book.unreported_shares(trade) == 0
    book.mark_accounted("e1", "rl-AAPL-1", 100)  # its fill handed over later: not twice
    assert book.unreported_shares(trade) == 0


def test_an_execution_handed_over_before_the_position_report_is_not_in_position() -> None:
    book = FillBook()
    book.placed("rl-AAPL-1")
    book.on_execution("AAPL", "e1", "rl-AAPL-1", 100)
    book.mark_accounted("e1", "rl-AAPL-1", 100)
    book.on_execution("AAPL", "e1", "rl-AAPL-1", 100)  # seen again after a reconnect
    book.on_position("AAPL")
    assert not book.is_in_position("e1")
