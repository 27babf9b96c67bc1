"""The operator commands alone: switches via SafetySwitches, answers from book and journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from execution.broker import BrokerFill, BrokerPosition, OrderRequest, WorkingOrder
from execution.commands import ExecutionCommands, track_record
from execution.order_journal import OrderJournal
from execution.positions import PositionBook
from execution.safety import SafetySwitches

pytestmark = pytest.mark.unit


class FakeBroker:
    def __init__(self, connected: bool = True) -> None:
        self.connected = connected

    def is_connected(self) -> bool:
        return self.connected

    def working_orders(self) -> list[WorkingOrder]:
        if not self.connected:
            raise AssertionError("working orders asked from a disconnected broker")
        return [
            WorkingOrder(
                order_ref="rl-AAPL-1",
                symbol="AAPL",
                side="BUY",
                quantity=10,
                remaining=4,
                order_type="LMT",
            )
        ]


class Rig:
    def __init__(self, tmp: Path, connected: bool = True) -> None:
        self.journal = OrderJournal(tmp / "journal.sqlite")
        self.safety = SafetySwitches(self.journal)
        self.book = PositionBook()
        self.flattened: list[str] = []
        self.commands = ExecutionCommands(
            safety=self.safety,
            book=self.book,
            journal=self.journal,
            broker=FakeBroker(connected),  # type: ignore[arg-type]
            flatten=self.flatten,
            status_detail=lambda: {"ready": True},
        )

    async def flatten(self, reason: str) -> dict[str, Any]:
        self.flattened.append(reason)
        return {"cancelled": 0, "orders": [f"flat-{reason}"]}


def test_every_command_is_registered_under_its_name(tmp_path: Path) -> None:
    registered: dict[str, Any] = {}

    class Server:
        def register(self, name: str, handler: Any) -> None:
            registered[name] = handler

    Rig(tmp_path).commands.register(Server())
    assert set(registered) == {
        "status",
        "kill",
        "rearm",
        "positions",
        "orders",
        "fills",
        "flatten",
        "reduce_only",
    }


async def test_reduce_only_refuses_anything_but_a_bool(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    for bad in ({}, {"on": "yes"}, {"on": 1}, {"on": None}):
        with pytest.raises(ValueError, match="reduce_only needs"):
            await r.commands.reduce_only(bad)
    assert r.safety.reduce_only is False  # a refused command flips nothing
    assert await r.commands.reduce_only({"on": True}) == {"reduce_only": True}
    assert SafetySwitches(r.journal).reduce_only is True  # persisted


async def test_kill_flattens_and_persists_rearm_lifts_it(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    result = await r.commands.kill({"reason": "operator"})
    assert result == {"killed": True, "cancelled": 0, "orders": ["flat-kill"]}
    assert r.flattened == ["kill"] and SafetySwitches(r.journal).killed is True
    r.safety.halt_day("2024-03-04")
    assert await r.commands.rearm({}) == {"killed": False, "halted_day": "2024-03-04"}
    assert await r.commands.rearm({"clear_daily_loss": True}) == {
        "killed": False,
        "halted_day": "",
    }
    assert await r.commands.flatten_command({}) == {"cancelled": 0, "orders": ["flat-manual"]}


async def test_positions_orders_and_fills_answer_from_book_journal_and_broker(
    tmp_path: Path,
) -> None:
    r = Rig(tmp_path)
    order = OrderRequest(order_ref="rl-AAPL-1", symbol="AAPL", side="BUY", quantity=10)
    r.journal.reserve(order)
    r.journal.save_fill(
        BrokerFill(
            exec_id="e1",
            order_ref="rl-AAPL-1",
            symbol="AAPL",
            side="BUY",
            quantity=6,
            price=100.0,
            commission=1.0,
            ts_ns=5,
        )
    )
    r.book.on_broker_position(BrokerPosition(symbol="AAPL", quantity=6, avg_cost=100.0))
    r.book.on_broker_position(BrokerPosition(symbol="MSFT", quantity=0.0))
    assert await r.commands.positions_command({}) == {
        "AAPL": {"quantity": 6, "avg_cost": 100.0, "account": ""}
    }  # flat symbols are not listed
    orders = await r.commands.orders_command({"limit": 5})
    assert [w["order_ref"] for w in orders["working"]] == ["rl-AAPL-1"]
    assert [e["order_ref"] for e in orders["journal"]] == ["rl-AAPL-1"]
    assert [f["exec_id"] for f in await r.commands.fills_command({"since_ns": 0})] == ["e1"]
    assert await r.commands.status({}) == {"ready": True}


async def test_orders_never_asks_a_disconnected_broker(tmp_path: Path) -> None:
    r = Rig(tmp_path, connected=False)
    assert (await r.commands.orders_command({}))["working"] == []


def test_track_record_of_an_empty_journal(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "journal.sqlite")
    assert track_record(journal) == {
        "days": 0,
        "days_traded": 0,
        "pnl": 0.0,
        "sharpe": None,
        "max_drawdown": 0.0,
    }
