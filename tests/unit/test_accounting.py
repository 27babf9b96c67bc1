import pytest

from shared.accounting import Book

pytestmark = pytest.mark.unit


def test_round_trip_long_realises_price_difference_and_keeps_fees_apart() -> None:
    book = Book(initial_cash=1000.0)
    book.apply_fill("X", "BUY", 10, 100.0, 1.0)
    book.apply_fill("X", "BUY", 10, 110.0, 1.0)  # avg 105
    assert book.symbol("X").avg_cost == pytest.approx(105.0)
    realized = book.apply_fill("X", "SELL", 5, 120.0, 1.0)
    assert realized == pytest.approx(75.0)
    book.mark("X", 100.0)
    assert book.unrealized == pytest.approx(15 * (100.0 - 105.0))
    assert book.fees == pytest.approx(3.0)
    assert book.equity == pytest.approx(1000 + 75 - 75 - 3)


def test_flip_from_long_to_short_opens_at_fill_price() -> None:
    book = Book(initial_cash=0.0)
    book.apply_fill("X", "BUY", 10, 50.0, 0.0)
    realized = book.apply_fill("X", "SELL", 25, 60.0, 0.0)
    assert realized == pytest.approx(100.0)
    sym = book.symbol("X")
    assert sym.quantity == pytest.approx(-15)
    assert sym.avg_cost == pytest.approx(60.0)
    book.mark("X", 55.0)
    assert book.unrealized == pytest.approx(75.0)  # short gains when the price falls


def test_short_cover_realises_gain() -> None:
    book = Book(initial_cash=0.0)
    book.apply_fill("X", "SELL", 4, 20.0, 0.5)
    assert book.apply_fill("X", "BUY", 4, 15.0, 0.5) == pytest.approx(20.0)
    assert book.symbol("X").quantity == 0
    assert book.equity == pytest.approx(19.0)


@pytest.mark.parametrize(
    ("qty", "price", "fee"),
    [(float("nan"), 1.0, 0.0), (1.0, float("inf"), 0.0), (1.0, 1.0, float("nan")), (0.0, 1.0, 0)],
)
def test_a_non_finite_or_empty_fill_changes_nothing(qty: float, price: float, fee: float) -> None:
    book = Book(initial_cash=100.0)
    book.apply_fill("X", "BUY", 1, 10.0, 0.0)
    with pytest.raises(ValueError):
        book.apply_fill("X", "BUY", qty, price, fee)
    assert book.symbol("X").quantity == 1 and book.equity == pytest.approx(100.0)


def test_a_bad_mark_is_ignored() -> None:
    book = Book(initial_cash=0.0)
    book.apply_fill("X", "BUY", 1, 10.0, 0.0)
    assert book.mark("X", 12.0)
    for bad in (float("nan"), float("inf"), 0.0, -1.0):
        assert not book.mark("X", bad)
    assert book.unrealized == pytest.approx(2.0)
