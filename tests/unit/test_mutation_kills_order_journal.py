"""execution.order_journal: tests written against mutants that survived the first mutmut run.

Each test writes known values through the journal's API, reopens the file where persistence is the
point, and compares what comes back with the values written (every field, by name), not with
another read of the journal.
"""

from __future__ import annotations

import os
import threading
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


# ------------------------------------------------------------------ the fast path (0784737)


def bracket(ref: str = "rl-AAPL-9") -> tuple[OrderRequest, tuple[OrderRequest, ...]]:
    """A bracket parent and its two children, written out by hand."""
    bar = 1_700_000_000_000_000_000
    parent = OrderRequest(
        order_ref=ref,
        symbol="AAPL",
        side="BUY",
        quantity=10,
        order_type="BRACKET",
        limit_price=100.0,
        take_profit=104.0,
        stop_loss=98.0,
        bar_seq=9,
        not_before_ns=bar,
    )
    tp = OrderRequest(
        order_ref=f"{ref}-tp",
        symbol="AAPL",
        side="SELL",
        quantity=10,
        order_type="LMT",
        limit_price=104.0,
        bar_seq=9,
        not_before_ns=bar + 1,
    )
    sl = OrderRequest(
        order_ref=f"{ref}-sl",
        symbol="AAPL",
        side="SELL",
        quantity=10,
        order_type="STP",
        limit_price=98.0,
        bar_seq=9,
        not_before_ns=bar + 2,
    )
    return parent, (tp, sl)


def test_a_bracket_is_reserved_parent_and_children_with_the_given_time(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = OrderJournal(path)
    parent, children = bracket()
    assert j.reserve(parent, now_ns=500, children=children) is True
    # the index knows all three, each with its own bar time
    assert j.bar_ts_of("rl-AAPL-9") == 1_700_000_000_000_000_000
    assert j.bar_ts_of("rl-AAPL-9-tp") == 1_700_000_000_000_000_001
    assert j.bar_ts_of("rl-AAPL-9-sl") == 1_700_000_000_000_000_002
    j.close()
    j = OrderJournal(path)  # and the file has them, written at now_ns = 500
    rows = {
        e.order_ref: (e.side, e.order_type, e.quantity, e.limit_price, e.state, e.created_ns)
        for e in j.orders()
    }
    assert rows == {
        "rl-AAPL-9": ("BUY", "BRACKET", 10.0, 100.0, "reserved", 500),
        "rl-AAPL-9-tp": ("SELL", "LMT", 10.0, 104.0, "reserved", 500),
        "rl-AAPL-9-sl": ("SELL", "STP", 10.0, 98.0, "reserved", 500),
    }
    assert j.bar_ts_of("rl-AAPL-9-sl") == 1_700_000_000_000_000_002
    j.close()


def test_a_bracket_whose_parent_exists_inserts_no_children(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    parent, children = bracket()
    assert j.reserve(parent, now_ns=500) is True  # the parent alone, earlier
    assert j.reserve(parent, now_ns=600, children=children) is False
    assert not j.has("rl-AAPL-9-tp") and j.bar_ts_of("rl-AAPL-9-sl") is None
    assert [e.order_ref for e in j.orders()] == ["rl-AAPL-9"]
    j.close()


def test_a_plain_reserve_returns_true_once_and_indexes_the_bar_time(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    assert j.bar_ts_of("rl-AAPL-7") is None
    assert j.reserve(lmt(), now_ns=5) is True
    assert j.bar_ts_of("rl-AAPL-7") == 1_700_000_000_000_000_000
    assert j.reserve(lmt(), now_ns=6) is False
    j.close()


def test_mark_sent_true_once_and_the_first_order_of_the_day_opens_it_at_that_equity(
    tmp_path: Path,
) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    assert j.reserve(lmt(), now_ns=5)
    assert j.mark_sent("rl-AAPL-7", "77", "2024-03-04", 123_456.0) is True
    assert j.equity_day("2024-03-04") == EquityDay(
        day="2024-03-04", start_equity=123_456.0, last_equity=123_456.0, orders=1
    )
    assert j.mark_sent("rl-AAPL-7", "78", "2024-03-04", 99.0) is False  # already sent
    assert j.get("rl-AAPL-7").broker_order_id == "77"  # type: ignore[union-attr]
    assert j.mark_sent("never-reserved", "79", "2024-03-04", 99.0) is False
    j.close()


def test_synchronous_is_kept_and_anything_else_refused_by_name(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite", synchronous="FULL")
    assert j.synchronous == "FULL"
    j.close()
    with pytest.raises(ValueError) as err:
        OrderJournal(tmp_path / "k.sqlite", synchronous="OFF")
    assert str(err.value) == "synchronous must be one of ('NORMAL', 'FULL'), got 'OFF'"


def test_checkpoint_moves_wal_pages_and_runs_from_any_worker_thread(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = OrderJournal(path)
    for i in range(200):
        assert j.reserve(
            OrderRequest(
                order_ref=f"rl-AAPL-{i}",
                symbol="AAPL",
                side="BUY",
                quantity=1,
                bar_seq=i,
                not_before_ns=i,
            )
        )
    before = os.path.getsize(path)
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(j.checkpoint())
        except BaseException as exc:  # the assertion below names it
            errors.append(exc)

    # asyncio.to_thread may hand each call to another pool thread: two threads, one after the
    # other, share the checkpoint connection
    for _ in range(2):
        t = threading.Thread(target=run)
        t.start()
        t.join(timeout=60)
    assert errors == []
    assert len(results) == 2 and results[0] > 0  # the first moved the 200 orders' pages
    assert results[1] >= 0
    assert os.path.getsize(path) > before  # the pages are in the main file now
    j.close()
    assert OrderJournal(":memory:").checkpoint() == 0


def test_checkpoint_of_a_reopened_journal_with_an_empty_wal_moves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = OrderJournal(path)
    assert j.reserve(lmt(), now_ns=5)
    j.close()  # the last connection closing folds the WAL into the file
    j = OrderJournal(path)  # the tables exist: opening writes nothing
    assert j.checkpoint() == 0
    j.close()
