import pytest
from monitor.ledger import Ledger

from shared.messages import Fill, OrderEvent

pytestmark = pytest.mark.unit


def fill(exec_id: str, qty: float = 10, price: float = 100.0) -> Fill:
    return Fill(
        symbol="AAPL",
        exec_id=exec_id,
        order_ref="rl-AAPL-5",
        side="BUY",
        quantity=qty,
        price=price,
        commission=1.0,
        ts_event=5,
        producer="execution@x",
    )


def test_a_fill_is_written_once_even_if_received_twice(tmp_path) -> None:
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    assert ledger.record_fill(fill("e1"), 1) is True
    assert ledger.record_fill(fill("e1"), 2) is False
    assert ledger.record_fill(fill("e2"), 3) is True
    assert [row["exec_id"] for row in ledger.fills()] == ["e1", "e2"]
    ledger.close()
    # after a restart the same exec id is still known
    reopened = Ledger(str(tmp_path / "ledger.sqlite"))
    assert reopened.record_fill(fill("e1"), 4) is False
    assert len(reopened.fills()) == 2


def test_ledger_uses_wal(tmp_path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(str(path)).record_fill(fill("e1"), 1)
    import sqlite3

    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_order_events_keyed_by_reference_and_status(tmp_path) -> None:
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    event = OrderEvent(
        symbol="AAPL",
        order_ref="rl-AAPL-5",
        side="BUY",
        quantity=10,
        order_type="MKT",
        status="submitted",
        bar_seq=5,
    )
    assert ledger.record_order_event(event)
    assert not ledger.record_order_event(event)
    assert ledger.record_order_event(
        OrderEvent(
            symbol="AAPL",
            order_ref="rl-AAPL-5",
            side="BUY",
            quantity=10,
            order_type="MKT",
            status="filled",
            bar_seq=5,
        )
    )
    assert [e["status"] for e in ledger.order_events()] == ["submitted", "filled"]


def test_invalid_fill_is_refused_by_the_schema(tmp_path) -> None:
    import sqlite3

    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    with pytest.raises(sqlite3.IntegrityError):
        ledger.record_fill(fill("bad", qty=-1), 1)


def test_nothing_non_finite_is_persisted(tmp_path) -> None:
    from monitor.ledger import NonFiniteError

    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    with pytest.raises(NonFiniteError):
        ledger.record_fill(fill("nan", price=float("nan")), 1)
    with pytest.raises(NonFiniteError):
        ledger.record_mark("AAPL", float("inf"), 1)
    assert ledger.fills() == [] and ledger.marks() == {}


def test_a_quarantined_fill_is_released_into_fills_once(tmp_path) -> None:
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    assert ledger.quarantine(fill("q1"), "unknown_order", 1)
    assert not ledger.quarantine(fill("q1"), "unknown_order", 2)
    assert ledger.release("q1", 3) is True
    assert ledger.release("q1", 4) is False
    assert [r["exec_id"] for r in ledger.fills()] == ["q1"] and ledger.quarantined() == []


def test_an_unreadable_ledger_raises_a_ledger_error_naming_the_file(tmp_path) -> None:
    from monitor.ledger import LedgerError

    with pytest.raises(LedgerError) as failure:
        Ledger(str(tmp_path))  # a directory, not a file
    assert str(tmp_path) in str(failure.value)
