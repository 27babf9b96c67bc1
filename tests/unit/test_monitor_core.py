"""The monitor's rules without the bus: a fill is booked only against a known order, exactly once;
exec-id conflicts are kept; marks survive a restart; nothing hostile reaches state."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from monitor.config import MonitorSettings
from monitor.core import Accountant
from monitor.ledger import Ledger, LedgerError, row_to_fill

from shared.messages import Bar, Fill, OrderEvent
from shared.validate import problem

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000_000_000


def order(ref: str = "rl-AAPL-5", side: str = "BUY", qty: float = 10, status: str = "submitted"):
    return OrderEvent(
        symbol="AAPL",
        order_ref=ref,
        side=side,  # type: ignore[arg-type]
        quantity=qty,
        order_type="MKT",
        status=status,  # type: ignore[arg-type]
        bar_seq=5,
        ts_event=T0,
    )


def fill(exec_id: str = "e1", ref: str = "rl-AAPL-5", **kw) -> Fill:
    values = dict(
        symbol="AAPL",
        exec_id=exec_id,
        order_ref=ref,
        side="BUY",
        quantity=10.0,
        price=100.0,
        commission=1.0,
        ts_event=T0 + 1,
    )
    values.update(kw)
    return Fill(**values)  # type: ignore[arg-type]


def bar(close: float, symbol: str = "AAPL") -> Bar:
    return Bar(
        symbol=symbol,
        timeframe="1d",
        bar_open_ts=T0,
        open=close,
        high=close,
        low=close,
        close=close,
        volume=1.0,
        ts_event=T0 + 2,
    )


def accountant(path: Path, cash: float = 1000.0) -> Accountant:
    return Accountant(Ledger(str(path / "ledger.sqlite")), cash)


def test_a_fill_is_booked_only_against_a_known_order(tmp_path: Path) -> None:
    acc = accountant(tmp_path)
    acc.handle(order())
    assert acc.admit(fill(), "bus") == "booked"
    assert acc.book.symbol("AAPL").quantity == 10
    assert acc.admit(fill("forged", ref="nobody-sent-this"), "bus") == "quarantined"
    assert acc.book.symbol("AAPL").quantity == 10
    assert acc.status()["quarantined"] == {"unknown_order": 1}
    assert acc.alerts.counts["quarantine:unknown_order"] == 1


@pytest.mark.parametrize(
    ("kw", "reason"),
    [({"side": "SELL"}, "side_mismatch"), ({"quantity": 11.0}, "overfill")],
)
def test_an_inconsistent_fill_is_quarantined_not_booked(tmp_path, kw, reason) -> None:
    acc = accountant(tmp_path)
    acc.handle(order())
    assert acc.admit(fill(**kw), "bus") == "quarantined"
    assert acc.book.positions().get("AAPL", 0) == 0
    assert acc.status()["quarantined"] == {reason: 1}
    assert acc.ledger.fills() == []


def test_cumulative_partial_fills_may_not_exceed_the_order(tmp_path: Path) -> None:
    acc = accountant(tmp_path)
    acc.handle(order(qty=10))
    assert acc.admit(fill("p1", quantity=6.0), "bus") == "booked"
    assert acc.admit(fill("p2", quantity=4.0), "bus") == "booked"
    assert acc.admit(fill("p3", quantity=1.0), "bus") == "quarantined"
    assert acc.book.symbol("AAPL").quantity == 10


def test_fills_before_their_order_are_booked_when_it_arrives_exactly_once(tmp_path) -> None:
    acc = accountant(tmp_path)
    assert acc.backfill([{**_row(fill("e1", quantity=4.0))}, _row(fill("e2", quantity=6.0))]) == 0
    assert acc.status()["quarantined"] == {"unknown_order": 2}
    acc.handle(order())  # the bus brings the order
    acc.handle(order(status="filled"))  # again, with another status
    acc.register_journal([{"order_ref": "rl-AAPL-5", "symbol": "AAPL", "side": "BUY",
                           "quantity": 10, "state": "filled"}])  # fmt: skip
    assert acc.book.symbol("AAPL").quantity == 10
    assert acc.counters["released"] == 2
    assert acc.status()["quarantined"] == {}
    assert acc.backfill([_row(fill("e1", quantity=4.0))]) == 0  # the back-fill again: duplicate
    acc.ledger.close()
    again = accountant(tmp_path)  # and after a restart
    assert again.book.symbol("AAPL").quantity == 10
    assert len(again.ledger.fills()) == 2


def test_orders_from_the_journal_release_quarantined_fills(tmp_path: Path) -> None:
    acc = accountant(tmp_path)
    acc.admit(fill(), "backfill")
    n = acc.register_journal(
        [
            {"order_ref": "rl-AAPL-5", "symbol": "AAPL", "side": "BUY", "quantity": 10},
            {"order_ref": 7, "nonsense": True},  # a bad entry is counted, not fatal
        ]
    )
    assert n == 1
    assert acc.book.symbol("AAPL").quantity == 10
    assert acc.alerts.counts["bad_order:journal_entry"] == 1


def test_known_orders_survive_a_restart(tmp_path: Path) -> None:
    acc = accountant(tmp_path)
    acc.handle(order())
    acc.ledger.close()
    again = accountant(tmp_path)
    assert again.admit(fill(), "bus") == "booked"


def test_a_skipped_order_never_admits_a_fill(tmp_path: Path) -> None:
    acc = accountant(tmp_path)
    acc.handle(order(status="skipped", qty=0))
    assert acc.admit(fill(), "bus") == "quarantined"


def test_same_exec_id_identical_is_a_duplicate_different_is_a_conflict(tmp_path) -> None:
    acc = accountant(tmp_path)
    acc.handle(order(qty=20))
    assert acc.admit(fill(), "bus") == "booked"
    assert acc.admit(fill(commission=1.5, account="DU1"), "backfill") == "duplicate"
    restarted_sim = fill(price=101.0, ts_event=T0 + 99)  # a simulator restart reusing "e1"
    assert acc.admit(restarted_sim, "bus") == "conflict"
    assert acc.admit(restarted_sim, "backfill") == "conflict"  # kept once, counted once
    assert acc.book.symbol("AAPL").quantity == 10
    assert acc.counters["duplicates"] == 2
    assert acc.alerts.counts["exec_id_conflict"] == 1
    assert acc.status()["conflicts"] == 1
    assert [c["price"] for c in acc.ledger.conflicts()] == [101.0]
    acc.ledger.close()
    assert accountant(tmp_path).status()["conflicts"] == 1  # persisted


def test_a_conflict_with_a_quarantined_fill_is_kept_too(tmp_path: Path) -> None:
    acc = accountant(tmp_path)
    acc.admit(fill(), "bus")  # quarantined: unknown order
    assert acc.admit(fill(quantity=3.0), "bus") == "conflict"
    assert acc.status()["conflicts"] == 1


def test_equity_is_continuous_across_a_restart_without_a_new_bar(tmp_path: Path) -> None:
    acc = accountant(tmp_path)
    acc.handle(bar(90.0))
    acc.handle(order())
    acc.admit(fill(price=100.0), "bus")
    acc.handle(bar(120.0))
    before = acc.book.equity
    assert before == pytest.approx(1000 + 10 * 20 - 1)
    acc.ledger.close()
    after = accountant(tmp_path).book.equity
    assert after == pytest.approx(before)


def test_alerts_are_logged_once_per_reason_per_minute(tmp_path, caplog) -> None:
    now = [0.0]
    acc = Accountant(Ledger(str(tmp_path / "l.sqlite")), 1000.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="monitor"):
        for i in range(5):
            acc.admit(fill(f"x{i}", ref="unknown"), "bus")
        now[0] = 61.0
        acc.admit(fill("x9", ref="unknown"), "bus")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert acc.alerts.counts["quarantine:unknown_order"] == 6


def test_the_handler_never_raises_and_a_bug_is_logged_with_traceback(tmp_path, caplog) -> None:
    acc = accountant(tmp_path)
    acc.handle(order(qty=20))

    def broken(*args: object) -> None:
        raise RuntimeError("injected")

    acc.on_bar = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="monitor"):
        acc.handle_safely(bar(100.0))
    assert acc.counters["handler_errors"] == 1
    assert caplog.records[-1].exc_info is not None
    acc.handle_safely(fill())
    assert acc.book.symbol("AAPL").quantity == 10


def test_a_pnl_log_line_is_bounded(tmp_path: Path) -> None:
    acc = accountant(tmp_path)
    for i in range(2_000):
        symbol = f"S{i:05d}ABCDEFGHIJKLMNOPQR"
        acc.register_order(f"r{i}", symbol, "BUY", 1.0, "bus")
        acc.admit(fill(f"e{i}", ref=f"r{i}", symbol=symbol, quantity=1.0), "bus")
    assert len(acc.book.positions()) == 2_000
    assert len(json.dumps(acc.pnl_log_fields())) < 4_000
    assert acc.pnl_log_fields()["positions_omitted"] == 1_950
    assert len(acc.positions()) == 256


def test_a_ledger_that_cannot_be_opened_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "ledger.sqlite"
    bad.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(LedgerError, match=str(bad)):
        Ledger(str(bad))


def test_the_default_account_is_the_simulators() -> None:
    from ibsim.config import IbsimSettings

    assert MonitorSettings().initial_cash == IbsimSettings().initial_cash


def _row(f: Fill) -> dict:
    return {
        "symbol": f.symbol,
        "exec_id": f.exec_id,
        "order_ref": f.order_ref,
        "side": f.side,
        "quantity": f.quantity,
        "price": f.price,
        "commission": f.commission,
        "account": f.account,
        "ts_event": f.ts_event,
    }


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 1e-300, 1e308, 5.0]),
)
hostile_fills = st.builds(
    Fill,
    symbol=st.one_of(st.sampled_from(["AAPL", "", "A" * 5000, "A\x00B", "../x"]), st.text()),
    exec_id=st.one_of(st.just("e1"), st.text(max_size=200)),
    order_ref=st.sampled_from(["rl-AAPL-5", "other", ""]),
    side=st.sampled_from(["BUY", "SELL"]),
    quantity=numbers,
    price=numbers,
    commission=numbers,
    ts_event=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(hostile_fills, max_size=8))
def test_hostile_fills_never_raise_and_never_reach_state_unvalidated(tmp_path, batch) -> None:
    path = tmp_path / "h.sqlite"
    path.unlink(missing_ok=True)
    acc = Accountant(Ledger(str(path)), 1000.0)
    acc.handle(order(qty=1e12))
    acc.handle(bar(100.0))
    for f in batch:
        acc.handle_safely(f)
        assert acc.counters["handler_errors"] == 0
        assert math.isfinite(acc.book.equity)
    valid = {f.exec_id for f in batch if problem(f) is None}
    for row in acc.ledger.fills():
        assert problem(row_to_fill(row)) is None and row["exec_id"] in valid
    db = sqlite3.connect(path)
    for table in ("fills", "quarantine", "conflicts"):
        for q, p, c in db.execute(f"SELECT quantity, price, commission FROM {table}"):
            assert all(isinstance(v, float) and math.isfinite(v) for v in (q, p, c))
    db.close()
    acc.ledger.close()
