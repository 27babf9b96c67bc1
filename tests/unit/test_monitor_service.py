"""The monitor's receive loop and back-fill over a stand-in bus (no sockets): a message that makes
a handler fail is logged and the loop goes on; the back-fill learns orders it needs."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from monitor.config import MonitorSettings
from monitor.service import MonitorService

from shared.bus import StreamStats
from shared.messages import Bar, Fill, Message, OrderEvent

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000_000_000


class FakeSubscriber:
    def __init__(self, messages: list[Message]) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        for m in messages:
            self.queue.put_nowait(m)
        self.stats = StreamStats()

    async def recv(self) -> Message:
        return await self.queue.get()

    def close(self) -> None:
        pass


@dataclass
class FakeExecution:
    replies: dict[str, Any]
    asked: list[str] = field(default_factory=list)

    async def request(self, name: str, args: dict[str, Any], timeout_s: float) -> Any:
        self.asked.append(name)
        return self.replies[name]

    def close(self) -> None:
        pass


@dataclass
class FakeBus:
    messages: list[Message]
    replies: dict[str, Any] = field(default_factory=dict)
    settings: Any = field(default_factory=lambda: type("S", (), {"command_timeout_s": 1.0})())
    topics: list[str] = field(default_factory=list)

    def subscriber(self, topics: list[str]) -> FakeSubscriber:
        self.topics = list(topics)
        return FakeSubscriber(self.messages)

    def command_client(self, target: str) -> FakeExecution:
        self.execution = FakeExecution(self.replies)
        return self.execution


def fill(exec_id: str, price: float = 10.0) -> Fill:
    return Fill(
        symbol="AAPL",
        exec_id=exec_id,
        order_ref="rl-AAPL-1",
        side="BUY",
        quantity=1.0,
        price=price,
        commission=0.0,
        ts_event=T0,
    )


ORDER = OrderEvent(
    symbol="AAPL",
    order_ref="rl-AAPL-1",
    side="BUY",
    quantity=5,
    order_type="MKT",
    status="submitted",
    bar_seq=1,
    ts_event=T0,
)


def service(tmp_path: Path, bus: FakeBus) -> MonitorService:
    settings = MonitorSettings(ledger_path=str(tmp_path / "ledger.sqlite"), http_port=0)
    return MonitorService(settings, bus)  # type: ignore[arg-type]


async def run_until(svc: MonitorService, predicate, timeout_s: float = 10.0) -> None:
    task = asyncio.create_task(svc.consume())
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                assert not task.done(), "the receive loop ended"
                await asyncio.sleep(0.01)
    finally:
        task.cancel()


def test_a_failing_handler_does_not_end_the_receive_loop(tmp_path, caplog) -> None:
    bad_bar = Bar(
        symbol="AAPL",
        timeframe="1d",
        bar_open_ts=T0,
        open=1,
        high=1,
        low=1,
        close=1,
        volume=1,
        ts_event=T0,
    )
    bus = FakeBus([ORDER, bad_bar, fill("e1"), fill("e2")])
    svc = service(tmp_path, bus)
    assert {"fill.", "order.", "position.", "bar."} <= set(bus.topics)
    real = svc.accountant.on_bar

    def broken(bar: Bar) -> None:
        raise RuntimeError("injected handler bug")

    svc.accountant.on_bar = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="monitor"):
        asyncio.run(run_until(svc, lambda: svc.fills_booked == 2))
    assert svc.status_detail()["handler_errors"] == 1
    failed = [r for r in caplog.records if r.getMessage() == "handler_failed"]
    assert failed and failed[0].exc_info is not None
    svc.accountant.on_bar = real  # type: ignore[method-assign]
    svc.close()


def test_backfill_asks_for_orders_when_fills_wait_for_theirs(tmp_path: Path) -> None:
    row = {
        "symbol": "AAPL",
        "exec_id": "e1",
        "order_ref": "rl-AAPL-1",
        "side": "BUY",
        "quantity": 1.0,
        "price": 10.0,
        "commission": 0.0,
        "account": "",
        "ts_event": T0,
    }
    journal = [{"order_ref": "rl-AAPL-1", "symbol": "AAPL", "side": "BUY", "quantity": 5.0}]
    bus = FakeBus([], {"fills": [row], "orders": {"working": [], "journal": journal}})
    svc = service(tmp_path, bus)
    assert asyncio.run(svc.reconcile_once()) == 1
    assert bus.execution.asked == ["fills", "orders"]
    assert asyncio.run(svc.reconcile_once()) == 0  # nothing waits: orders not asked again
    assert bus.execution.asked == ["fills", "orders", "fills"]
    status = svc.status_detail()
    assert status["fills"] == 1 and status["quarantined"] == {}
    assert status["initial_cash"] == 1_000_000 and "ledger" in status["equity_basis"]
    svc.close()
