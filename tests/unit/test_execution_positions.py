"""The position book: the broker's report plus fills it has not reported yet, one owner."""

from __future__ import annotations

import pytest
from execution.broker import BrokerFill, BrokerPosition
from execution.positions import PositionBook

pytestmark = pytest.mark.unit


def fill(side: str, qty: float, price: float = 100.0, exec_id: str = "e1") -> BrokerFill:
    return BrokerFill(
        exec_id=exec_id,
        order_ref="rl-AAPL-1",
        symbol="AAPL",
        side=side,  # type: ignore[arg-type]
        quantity=qty,
        price=price,
        commission=1.0,
        account="DU1",
    )


def test_fills_overlay_the_report_until_the_next_report() -> None:
    book = PositionBook()
    book.replace_all({"AAPL": BrokerPosition(symbol="AAPL", quantity=100, avg_cost=90.0)})
    book.on_live_fill(fill("BUY", 50))
    book.on_live_fill(fill("SELL", 20, exec_id="e2"))
    assert book.quantity("AAPL") == 130 and book.get("AAPL").avg_cost == 90.0  # type: ignore[union-attr]
    # the broker's report includes those fills: it replaces the overlay, nothing counts twice
    book.on_broker_position(BrokerPosition(symbol="AAPL", quantity=130, avg_cost=91.0))
    assert book.quantity("AAPL") == 130 and book.get("AAPL").avg_cost == 91.0  # type: ignore[union-attr]


def test_a_fill_before_any_report_shows_its_price() -> None:
    book = PositionBook()
    book.on_live_fill(fill("SELL", 10, price=50.0))
    assert book.held() == {
        "AAPL": BrokerPosition(symbol="AAPL", quantity=-10, avg_cost=50.0, account="DU1")
    }


def test_flat_reports_are_known_but_not_held() -> None:
    book = PositionBook()
    book.on_live_fill(fill("BUY", 10))
    book.on_broker_position(BrokerPosition(symbol="AAPL", quantity=0))
    assert "AAPL" in book.all() and book.held() == {} and book.quantity("MSFT") == 0.0


def test_a_snapshot_supersedes_every_overlay() -> None:
    book = PositionBook()
    book.on_live_fill(fill("BUY", 10))
    book.replace_all({})
    assert book.all() == {}
