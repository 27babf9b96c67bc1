"""The order journal: a reference is written once, survives a reopen, fills publish once."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from execution.broker import BrokerFill, OrderRequest
from execution.order_journal import OrderJournal, OrderState, may_advance

pytestmark = pytest.mark.unit


def order(ref: str = "rl-AAPL-7") -> OrderRequest:
    return OrderRequest(order_ref=ref, symbol="AAPL", side="BUY", quantity=10, bar_seq=7)


def test_reserve_is_once_only_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = OrderJournal(path)
    assert j.reserve(order())
    assert not j.reserve(order())
    j.advance("rl-AAPL-7", "sent", broker_order_id="42")
    j.close()
    j = OrderJournal(path)
    assert j.has("rl-AAPL-7") and not j.reserve(order())
    entry = j.get("rl-AAPL-7")
    assert entry is not None and (entry.state, entry.broker_order_id) == ("sent", "42")
    assert [e.order_ref for e in j.open_entries()] == ["rl-AAPL-7"]
    j.advance("rl-AAPL-7", "filled")
    j.advance("rl-AAPL-7", "cancelled")  # a final state is never left
    assert j.get("rl-AAPL-7").state == "filled"  # type: ignore[union-attr]
    j.close()


def _reserve_then_die(path: str) -> None:
    j = OrderJournal(path)
    j.reserve(order("rl-AAPL-99"))
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit: like a crash mid-order


def test_reservation_survives_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    proc = multiprocessing.get_context("spawn").Process(target=_reserve_then_die, args=(path,))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    j = OrderJournal(path)
    assert j.has("rl-AAPL-99") and not j.reserve(order("rl-AAPL-99"))
    j.close()


def test_fills_are_published_once(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    fill = BrokerFill(
        exec_id="e1",
        order_ref="rl-AAPL-7",
        symbol="AAPL",
        side="BUY",
        quantity=10,
        price=100.0,
        commission=1.0,
        ts_ns=5,
    )
    assert not j.fill_published("e1")
    j.save_fill(fill)
    j.save_fill(fill)
    assert j.fill_published("e1") and len(j.fills()) == 1
    assert j.filled_quantity("rl-AAPL-7") == 10 and j.last_exec_ns() == 5
    j.close()


def test_equity_days_start_from_the_previous_close_and_counters(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    assert j.observe_equity("2024-03-04", 100.0).start_equity == 100.0
    j.observe_equity("2024-03-04", 90.0)
    day2 = j.observe_equity("2024-03-05", 95.0)
    assert (day2.start_equity, day2.last_equity) == (90.0, 95.0)
    j.count_order("2024-03-05", 95.0)
    assert [d.orders for d in j.equity_days()] == [0, 1]
    assert [j.next_counter("flatten") for _ in range(3)] == [1, 2, 3]
    j.set_value("killed", True)
    assert j.get_value("killed") is True and j.get_value("nope", 5) == 5
    j.close()


# ====================================================================== lifecycle rule
S = OrderState


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.RESERVED, S.SENT),
        (S.RESERVED, S.REJECTED),  # the broker refused the send
        (S.RESERVED, S.LOST),  # the reconciliation verdict
        (S.SENT, S.ACKNOWLEDGED),
        (S.SENT, S.FILLED),
        (S.ACKNOWLEDGED, S.CANCELLED),
        (S.LOST, S.SENT),  # the broker reports a lost order after all: it is right
        (S.LOST, S.FILLED),
    ],
)
def test_may_advance_allows_forward_moves(current: OrderState, new: OrderState) -> None:
    assert may_advance(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.FILLED, S.SENT),
        (S.FILLED, S.CANCELLED),
        (S.CANCELLED, S.FILLED),
        (S.REJECTED, S.ACKNOWLEDGED),
        (S.ACKNOWLEDGED, S.SENT),
        (S.SENT, S.SENT),
        (S.SENT, S.LOST),  # only a reservation can be lost
        (S.LOST, S.LOST),
        (S.SENT, S.RESERVED),
        (S.LOST, S.RESERVED),
    ],
)
def test_may_advance_refuses_backward_and_terminal_moves(
    current: OrderState, new: OrderState
) -> None:
    assert not may_advance(current, new)


def test_advance_applies_the_rule_and_reports_it(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    assert not j.advance("unknown", S.SENT)
    j.reserve(order())
    assert j.advance("rl-AAPL-7", S.SENT, broker_order_id="1")
    assert j.advance("rl-AAPL-7", S.FILLED)
    assert not j.advance("rl-AAPL-7", S.SENT)  # filled -> submitted is refused
    entry = j.get("rl-AAPL-7")
    assert entry is not None and entry.state is S.FILLED and entry.broker_order_id == "1"
    with pytest.raises(ValueError):
        j.advance("rl-AAPL-7", "bogus")
    j.close()
