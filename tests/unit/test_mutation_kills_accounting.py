"""shared.accounting: tests written against mutants that survived the first mutmut run (issue 17).

Expectations come from first principles: PnL is cash flow plus the value of what is held, an
average-cost book realises ``closed qty * (exit - average entry)``, and fractional shares and
sub-dollar prices are ordinary inputs.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.accounting import Book, SymbolBook

pytestmark = pytest.mark.unit


def test_bad_fill_errors_name_the_values() -> None:
    b = SymbolBook()
    with pytest.raises(ValueError, match=r"non-finite fill: qty=nan"):
        b.apply_fill(float("nan"), 10.0, 1.0)
    with pytest.raises(ValueError, match=r"price > 0: 5.0 @ 0"):
        b.apply_fill(5.0, 0.0, 1.0)
    assert b == SymbolBook()  # nothing changed


def test_zero_price_is_refused_and_sub_dollar_prices_are_booked() -> None:
    b = SymbolBook()
    with pytest.raises(ValueError):
        b.apply_fill(1.0, 0.0, 0.0)
    b.apply_fill(100.0, 0.5, 0.0)  # a penny stock
    assert (b.quantity, b.avg_cost) == (100.0, 0.5)


def test_closing_exactly_one_share() -> None:
    b = SymbolBook()
    b.apply_fill(1.0, 10.0, 0.0)
    assert b.apply_fill(-1.0, 12.0, 0.0) == pytest.approx(2.0)
    assert (b.quantity, b.avg_cost) == (0.0, 0.0)


def test_fractional_long_partly_then_fully_closed() -> None:
    b = SymbolBook()
    b.apply_fill(1.5, 10.0, 0.0)
    assert b.apply_fill(-0.7, 11.0, 0.0) == pytest.approx(0.7)  # 0.7 * (11 - 10)
    assert b.quantity == pytest.approx(0.8)
    assert b.avg_cost == pytest.approx(10.0)
    assert b.apply_fill(-0.8, 9.0, 0.0) == pytest.approx(-0.8)
    assert b.quantity == 0.0
    assert b.realized == pytest.approx(-0.1)  # realised PnL accumulates over fills


def test_half_share_long_closed_and_half_share_added() -> None:
    b = SymbolBook()
    b.apply_fill(0.5, 20.0, 0.0)
    assert b.apply_fill(-0.2, 25.0, 0.0) == pytest.approx(1.0)  # long: gain when price rises
    b2 = SymbolBook()
    b2.apply_fill(10.0, 20.0, 0.0)
    assert b2.apply_fill(0.5, 41.0, 0.0) == 0.0  # adding realises nothing
    assert b2.quantity == pytest.approx(10.5)
    assert b2.avg_cost == pytest.approx((10 * 20.0 + 0.5 * 41.0) / 10.5)


def test_flip_through_zero_by_a_fraction_opens_the_rest_at_the_fill_price() -> None:
    b = SymbolBook()
    b.apply_fill(1.0, 10.0, 0.0)
    assert b.apply_fill(-1.5, 12.0, 0.0) == pytest.approx(2.0)
    assert b.quantity == pytest.approx(-0.5)
    assert b.avg_cost == 12.0


def test_reopen_after_flat_starts_a_fresh_average() -> None:
    b = SymbolBook()
    b.apply_fill(3.0, 10.0, 0.0)
    b.apply_fill(-3.0, 11.0, 0.0)
    assert (b.quantity, b.avg_cost) == (0.0, 0.0)
    b.apply_fill(2.0, 50.0, 0.0)
    assert (b.quantity, b.avg_cost) == (2.0, 50.0)


def test_first_fill_marks_and_later_fills_never_move_the_mark() -> None:
    b = Book(initial_cash=1000.0)
    b.apply_fill("X", "BUY", 10.0, 100.0, 0.0)
    assert b.symbol("X").last_price == 100.0
    b.apply_fill("X", "BUY", 10.0, 110.0, 0.0)
    assert b.symbol("X").last_price == 100.0
    assert b.unrealized == pytest.approx(20 * (100.0 - 105.0))
    assert b.mark("X", 0.5)  # a finite price > 0 is a valid mark, even under 1
    b.apply_fill("X", "SELL", 5.0, 120.0, 0.0)
    assert b.symbol("X").last_price == 0.5


def test_restored_position_without_a_mark_has_no_unrealized_pnl() -> None:
    """A book restored from the ledger carries quantity and average cost, and no mark yet."""
    b = SymbolBook(quantity=10.0, avg_cost=5.0)
    assert b.unrealized() == 0.0


def test_positions_are_keyed_by_symbol() -> None:
    b = Book(initial_cash=0.0)
    b.apply_fill("AAPL", "BUY", 2.0, 10.0, 0.0)
    b.apply_fill("MSFT", "SELL", 1.0, 20.0, 0.0)
    assert b.positions() == {"AAPL": 2.0, "MSFT": -1.0}


fills = st.lists(
    st.tuples(
        st.sampled_from(["BUY", "SELL"]),
        st.floats(0.01, 500.0),  # fractional shares
        st.floats(0.05, 2000.0),  # sub-dollar to large prices
        st.floats(0.0, 5.0),  # commission
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(fills=fills, mark=st.floats(0.05, 2000.0))
def test_equity_is_cash_flow_plus_held_value(fills: list, mark: float) -> None:
    """Oracle independent of any cost method: realised + unrealised PnL equals the cash the fills
    moved plus the held quantity valued at the mark, and equity subtracts every fee once."""
    book = Book(initial_cash=10_000.0)
    cash, qty, fees = 0.0, 0.0, 0.0
    for side, q, p, c in fills:
        book.apply_fill("S", side, q, p, c)
        signed = q if side == "BUY" else -q
        cash -= signed * p
        qty += signed
        fees += c
    book.mark("S", mark)
    scale = sum(q * p for _, q, p, _ in fills) + abs(qty) * mark
    assert book.positions()["S"] == pytest.approx(qty, abs=1e-9 * (1 + scale))
    assert book.realized + book.unrealized == pytest.approx(
        cash + qty * mark, abs=1e-9 * (1 + scale)
    )
    assert book.fees == pytest.approx(fees)
    assert book.equity == pytest.approx(10_000.0 + cash + qty * mark - fees, abs=1e-9 * (1 + scale))
