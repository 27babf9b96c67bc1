"""The order journal's signal-path pieces: the in-memory reference index, a bracket reserved in one
transaction, SENT and the day's count in one, WAL checkpoints off the connection that writes
orders, and the validated ``synchronous`` setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from execution.broker import OrderRequest
from execution.config import load_config
from execution.order_journal import OrderJournal, OrderState
from execution.routing import bracket_children

from shared.config import ConfigError

pytestmark = pytest.mark.unit

BAR_TS = 1_709_586_000_000_000_000


def order(ref: str = "rl-AAPL-7", **kw: object) -> OrderRequest:
    fields: dict[str, object] = {
        "order_ref": ref,
        "symbol": "AAPL",
        "side": "BUY",
        "quantity": 10,
        "bar_seq": 7,
        "not_before_ns": BAR_TS,
    }
    fields.update(kw)
    return OrderRequest(**fields)  # type: ignore[arg-type]


def test_reference_index_follows_reserve_and_is_rebuilt_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = OrderJournal(path)
    assert j.bar_ts_of("rl-AAPL-7") is None and not j.has("rl-AAPL-7")
    assert j.reserve(order())
    assert j.bar_ts_of("rl-AAPL-7") == BAR_TS
    assert not j.reserve(order(not_before_ns=BAR_TS + 1))  # a second reserve changes nothing
    assert j.bar_ts_of("rl-AAPL-7") == BAR_TS
    j.close()
    j = OrderJournal(path)  # the index comes from the file, not from the old process
    assert j.bar_ts_of("rl-AAPL-7") == BAR_TS and j.bar_ts_of("rl-AAPL-8") is None
    j.close()


def test_bracket_reserved_in_one_transaction_and_never_twice(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    parent = order(order_type="BRACKET", limit_price=100.0, take_profit=104.0, stop_loss=98.0)
    children = bracket_children(parent)
    assert [c.order_ref for c in children] == ["rl-AAPL-7-tp", "rl-AAPL-7-sl"]
    assert [(c.side, c.order_type, c.limit_price) for c in children] == [
        ("SELL", "LMT", 104.0),
        ("SELL", "STP", 98.0),
    ]
    assert j.reserve(parent, children=children)
    refs = {e.order_ref: e.state for e in j.orders()}
    assert refs == dict.fromkeys(["rl-AAPL-7", "rl-AAPL-7-tp", "rl-AAPL-7-sl"], "reserved")
    # the same parent again: refused, and its children are not inserted a second time either
    j.advance("rl-AAPL-7-tp", OrderState.SENT)
    assert not j.reserve(parent, children=children)
    assert j.get("rl-AAPL-7-tp").state == "sent"  # type: ignore[union-attr]
    assert bracket_children(order()) == ()
    j.close()


def test_mark_sent_moves_the_state_and_counts_the_order_together(tmp_path: Path) -> None:
    j = OrderJournal(tmp_path / "j.sqlite")
    assert j.reserve(order())
    assert j.mark_sent("rl-AAPL-7", "42", "2024-03-04", 100_000.0)
    entry = j.get("rl-AAPL-7")
    assert entry is not None and (entry.state, entry.broker_order_id) == ("sent", "42")
    day = j.equity_day("2024-03-04")
    assert day is not None and day.orders == 1
    assert not j.mark_sent("rl-AAPL-7", "42", "2024-03-04", 100_000.0)  # already sent
    assert j.equity_day("2024-03-04").orders == 2  # type: ignore[union-attr]
    j.close()


def test_checkpoint_copies_the_wal_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = OrderJournal(path)
    for i in range(200):
        assert j.reserve(order(f"rl-AAPL-{i}", bar_seq=i))
    before = os.path.getsize(path)
    pages = j.checkpoint()
    assert pages > 0
    assert os.path.getsize(path) > before  # the pages are in the main file now
    assert j.reserve(order("rl-AAPL-900", bar_seq=900))  # the writer goes on meanwhile
    j.close()
    assert OrderJournal(":memory:").checkpoint() == 0


@pytest.mark.parametrize("value", ["normal", "FULL", "full", "NORMAL"])
def test_journal_sync_setting_accepts_both_modes(value: str) -> None:
    assert load_config({"EXECUTION_JOURNAL_SYNC": value}).settings.journal_sync.upper() in (
        "NORMAL",
        "FULL",
    )


def test_journal_sync_setting_refuses_anything_else(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EXECUTION_JOURNAL_SYNC"):
        load_config({"EXECUTION_JOURNAL_SYNC": "off"})
    with pytest.raises(ValueError, match="synchronous"):
        OrderJournal(tmp_path / "j.sqlite", synchronous="OFF; DROP TABLE orders")
