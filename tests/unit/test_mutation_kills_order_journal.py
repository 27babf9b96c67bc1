"""execution.order_journal: tests written against mutants that survived the first mutmut run.

Each test writes known values through the journal's API, reopens the file where persistence is the
point, and compares what comes back with the values written (every field, by name), not with
another read of the journal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from execution.broker import BrokerFill, OrderRequest
from execution.order_journal import (
    EquityDay,
    JournalEntry,
    OrderJournal,
    OrderState,
    StateFileError,
)

pytestmark = pytest.mark.unit


def lmt(ref: str = "rl-AAPL-7") -> OrderRequest:
    return OrderRequest(
        order_ref=ref,
        symbol="AAPL",
        side="SELL",
        quantity=12,
        order_type="LMT",
        limit_price=101.25,
        bar_seq=7,
        not_before_ns=1_700_000_000_000_000_000,
    )


def fill(exec_id: str, ts: int, qty: float = 5.0, ref: str = "rl-AAPL-7") -> BrokerFill:
    return BrokerFill(
        exec_id=exec_id,
        order_ref=ref,
        symbol="AAPL",
        side="SELL",
        quantity=qty,
        price=101.5,
        commission=1.25,
        account="DU123",
        ts_ns=ts,
    )


def test_a_reserved_order_reads_back_field_by_field_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = OrderJournal(path)
    assert j.reserve(lmt(), now_ns=123) is True
    assert j.has("rl-AAPL-7") and not j.has("other")
    j.close()
    j = OrderJournal(path)
    assert j.get("rl-AAPL-7") == JournalEntry(
        order_ref="rl-AAPL-7",
        symbol="AAPL",
        side="SELL",
        quantity=12.0,
        order_type="LMT",
        bar_seq=7,
        bar_ts=1_700_000_000_000_000_000,
        limit_price=101.25,
        state=OrderState.RESERVED,
        broker_order_id="",
        reason="",
        created_ns=123,
        updated_ns=123,
    )
    assert j.get("missing") is None


def test_advance_records_broker_id_and_reason_and_keeps_them(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    j.reserve(lmt(), now_ns=5)
    assert j.advance("rl-AAPL-7", OrderState.SENT, broker_order_id="42") is True
    assert j.advance("rl-AAPL-7", "cancelled", reason="user") is True
    e = j.get("rl-AAPL-7")
    assert e is not None
    assert (e.state, e.broker_order_id, e.reason) == (OrderState.CANCELLED, "42", "user")
    assert e.updated_ns > 5
    assert j.advance("rl-AAPL-7", OrderState.FILLED) is False
    assert j.advance("nope", OrderState.SENT) is False


def test_orders_by_state_newest_first_with_limit(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    for i in range(4):
        j.reserve(lmt(f"r{i}"), now_ns=100 + i)
    j.advance("r1", OrderState.SENT)
    j.advance("r2", OrderState.REJECTED)
    assert [e.order_ref for e in j.orders()] == ["r3", "r2", "r1", "r0"]
    assert [e.order_ref for e in j.orders(limit=2)] == ["r3", "r2"]
    assert [e.order_ref for e in j.orders((OrderState.RESERVED,))] == ["r3", "r0"]
    assert [e.order_ref for e in j.orders((OrderState.RESERVED, OrderState.SENT), limit=2)] == [
        "r3",
        "r1",
    ]
    assert [e.order_ref for e in j.open_entries()] == ["r3", "r1", "r0"]


def test_fills_read_back_by_name_and_time(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = OrderJournal(path)
    j.save_fill(fill("e2", 200, qty=3.0), published=False)
    j.save_fill(fill("e1", 100))
    j.save_fill(fill("e3", 300, ref="other"))
    j.close()
    j = OrderJournal(path)
    assert j.fill_published("e1") is True
    assert j.fill_published("e2") is False
    assert j.fill_published("none") is False
    since = j.fills_since(200)
    assert since == [
        {
            "symbol": "AAPL",
            "exec_id": "e2",
            "order_ref": "rl-AAPL-7",
            "side": "SELL",
            "quantity": 3.0,
            "price": 101.5,
            "commission": 1.25,
            "account": "DU123",
            "ts_event": 200,
        },
        {
            "symbol": "AAPL",
            "exec_id": "e3",
            "order_ref": "other",
            "side": "SELL",
            "quantity": 5.0,
            "price": 101.5,
            "commission": 1.25,
            "account": "DU123",
            "ts_event": 300,
        },
    ]
    rows = j.fills()
    assert [r["exec_id"] for r in rows] == ["e3", "e2", "e1"]  # newest first
    assert [r["exec_id"] for r in j.fills(limit=1)] == ["e3"]
    assert rows[1]["published"] == 0 and rows[2]["published"] == 1
    assert j.filled_quantity("rl-AAPL-7") == 8.0
    assert j.filled_quantity("none") == 0.0
    assert j.last_exec_ns() == 300


def test_a_repeated_fill_updates_commission_and_never_unpublishes(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    j.save_fill(fill("e1", 100), published=True)
    late = BrokerFill(
        **{
            **{f: getattr(fill("e1", 100), f) for f in BrokerFill.__struct_fields__},
            "commission": 2.5,
        }
    )
    j.save_fill(late, published=False)
    assert j.fill_published("e1") is True
    assert [r["commission"] for r in j.fills()] == [2.5]
    assert j.filled_quantity("rl-AAPL-7") == 5.0


def test_equity_days_start_from_the_previous_close_and_count_orders(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = OrderJournal(path)
    assert j.equity_day("2024-03-04") is None
    assert j.observe_equity("2024-03-04", 100_000.0) == EquityDay(
        day="2024-03-04", start_equity=100_000.0, last_equity=100_000.0, orders=0
    )
    j.observe_equity("2024-03-04", 99_000.0)
    j.count_order("2024-03-04", 98_000.0)
    j.count_order("2024-03-05", 97_000.0)  # first order of a new day creates the day
    j.count_order("2024-03-05", 96_000.0)
    j.close()
    j = OrderJournal(path)
    assert j.equity_days() == [
        EquityDay(day="2024-03-04", start_equity=100_000.0, last_equity=99_000.0, orders=1),
        EquityDay(day="2024-03-05", start_equity=99_000.0, last_equity=97_000.0, orders=2),
    ]


def test_values_and_counters_persist(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = OrderJournal(path)
    assert j.get_value("k", "dflt") == "dflt"
    j.set_value("k", {"a": [1, 2]})
    j.set_value("k", {"a": [3]})
    assert j.next_counter("flatten") == 1
    assert j.next_counter("flatten") == 2
    assert j.next_counter("other") == 1
    j.close()
    j = OrderJournal(path)
    assert j.get_value("k") == {"a": [3]}
    assert j.next_counter("flatten") == 3
    with pytest.raises(ValueError):
        j.set_value("bad", float("nan"))
    j._db.execute("INSERT INTO kv (key, value) VALUES ('broken', 'not json')")
    with pytest.raises(StateFileError, match="'broken' is not valid JSON"):
        j.get_value("broken")


def test_a_journal_that_does_not_open_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "j.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateFileError, match=r"j.sqlite: order journal does not open"):
        OrderJournal(bad)


def test_non_finite_numbers_are_never_persisted(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    with pytest.raises(ValueError, match="non-finite"):
        j.save_fill(fill("e1", 1, qty=float("inf")))
    with pytest.raises(ValueError, match="non-finite"):
        j.observe_equity("2024-03-04", float("nan"))
    assert j.fills() == [] and j.equity_days() == []


def test_journal_settings_and_folder_creation(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "a" / "b" / "j.sqlite")  # missing parent folders are created
    assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j._db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_the_journal_is_usable_from_another_thread(tmp_path: Path) -> None:
    import threading

    j = OrderJournal(tmp_path / "j.sqlite")
    j.reserve(lmt(), now_ns=1)
    seen: list[object] = []
    t = threading.Thread(target=lambda: seen.append(j.has("rl-AAPL-7")))
    t.start()
    t.join(10)
    assert seen == [True]


def test_the_open_error_says_what_to_do(tmp_path: Path) -> None:
    bad = tmp_path / "j.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateFileError, match="holds every order reference sent, so repair or move"):
        OrderJournal(bad)


@pytest.mark.parametrize("field", ["quantity", "stop_loss", "take_profit", "limit_price"])
def test_an_order_with_a_non_finite_number_is_not_reserved(tmp_path: Path, field: str) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    fields = {f: getattr(lmt(), f) for f in OrderRequest.__struct_fields__}
    fields[field] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        j.reserve(OrderRequest(**fields))
    assert not j.has("rl-AAPL-7")


def test_a_fill_with_a_non_finite_commission_is_not_saved(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    fields = {f: getattr(fill("e1", 1), f) for f in BrokerFill.__struct_fields__}
    fields["commission"] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        j.save_fill(BrokerFill(**fields))
    assert j.fills() == []


def test_created_time_survives_an_advance(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    j.reserve(lmt(), now_ns=5)
    j.advance("rl-AAPL-7", OrderState.SENT)
    e = j.get("rl-AAPL-7")
    assert e is not None and e.created_ns == 5 and e.updated_ns > 5


def test_listings_default_to_the_newest_thousand(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    with j._db:
        for i in range(1001):
            j.reserve(lmt(f"r{i}"), now_ns=1 + i)
            j.save_fill(fill(f"e{i}", 1 + i, ref=f"r{i}"))
    orders = j.orders()
    assert len(orders) == 1000 and orders[-1].order_ref == "r1"
    fills = j.fills()
    assert len(fills) == 1000 and fills[-1]["exec_id"] == "e1"
