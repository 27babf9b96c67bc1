"""SafetyActions alone: flatten, the daily-loss check and the dead-man check against fakes.

Broker and journal are small fakes; the switches, the risk manager, the schedule and the position
book are real, so what is asserted is the action's own behaviour.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from execution.broker import BrokerPosition, OrderRequest
from execution.positions import PositionBook
from execution.risk import RiskLimits, RiskManager, TradingSchedule
from execution.safety import HALTED_DAY_KEY, SafetySwitches
from execution.safety_actions import SafetyActions

from shared.paper_config import PaperTradingConfig

pytestmark = pytest.mark.unit

NY = zoneinfo.ZoneInfo("America/New_York")
MONDAY_CLOSE_NS = int(dt.datetime(2024, 3, 4, 16, tzinfo=NY).timestamp() * 1e9)


class FakeBroker:
    name = "fake"
    account_key = "acct-1"

    def __init__(self, equity: float = 100_000.0) -> None:
        self.connected = True
        self.cancel_calls = 0
        self.equity = equity

    def is_connected(self) -> bool:
        return self.connected

    async def cancel_all(self) -> int:
        self.cancel_calls += 1
        return 2


class FakeJournal:
    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.equity_rows: list[tuple[str, float]] = []

    def next_counter(self, name: str) -> int:
        self.counters[name] = self.counters.get(name, 0) + 1
        return self.counters[name]

    def observe_equity(self, day: str, equity: float) -> None:
        self.equity_rows.append((day, equity))


class DictStore:
    path = Path("memory")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get_value(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set_value(self, key: str, value: Any) -> None:
        self.values[key] = value


class Rig:
    def __init__(self, **paper: Any) -> None:
        paper.setdefault("symbols", ["AAPL", "MSFT", "SPY"])
        paper.setdefault("max_position", 1000)
        self.paper = PaperTradingConfig(**paper)
        self.schedule = TradingSchedule(self.paper.trading_hours, self.paper.weekday_numbers())
        self.store = DictStore()
        self.safety = SafetySwitches(self.store)
        self.risk = RiskManager(RiskLimits.from_config(self.paper), self.schedule, self.safety)
        self.broker = FakeBroker()
        self.journal = FakeJournal()
        self.book = PositionBook()
        self.sent: list[tuple[OrderRequest, bool]] = []
        self.drains = 0
        self.t = 1000.0
        self.heartbeats: dict[str, float] = {}
        self.actions = SafetyActions(
            safety=self.safety,
            risk=self.risk,
            broker=self.broker,
            journal=self.journal,
            book=self.book,
            symbols=frozenset(self.paper.symbols),
            schedule=self.schedule,
            lock=asyncio.Lock(),
            drain_locked=self.drain,
            send=self.send,
            equity=lambda: self.broker.equity,
            broker_equity=lambda: self.broker.equity,
            now_ns=lambda: MONDAY_CLOSE_NS,
            bar_clock_ns=lambda: MONDAY_CLOSE_NS,
            mono=lambda: self.t,
            heartbeats=self.heartbeats,
            watch_services=self.paper.monitoring.watch_services,
            heartbeat_timeout_s=self.paper.monitoring.heartbeat_timeout_s,
            flatten_on_dead_man=self.paper.flatten_on_dead_man,
            bar_clock_orders=True,
        )

    async def drain(self) -> None:
        self.drains += 1

    async def send(
        self, order: OrderRequest, *, day: str, equity: float, exempt: bool = False
    ) -> bool:
        self.sent.append((order, exempt))
        return True


async def test_flatten_sends_one_closing_order_per_non_flat_traded_symbol() -> None:
    rig = Rig()
    rig.book.replace_all(
        {
            "AAPL": BrokerPosition(symbol="AAPL", quantity=10.0),
            "MSFT": BrokerPosition(symbol="MSFT", quantity=-4.0),
            "SPY": BrokerPosition(symbol="SPY", quantity=0.2),  # rounds to flat
            "TSLA": BrokerPosition(symbol="TSLA", quantity=7.0),  # not traded here: left alone
        }
    )
    result = await rig.actions.flatten("manual")
    assert rig.broker.cancel_calls == 1 and rig.drains == 1
    orders = {o.symbol: o for o, _ in rig.sent}
    assert sorted(orders) == ["AAPL", "MSFT"]
    assert (orders["AAPL"].side, orders["AAPL"].quantity) == ("SELL", 10)
    assert (orders["MSFT"].side, orders["MSFT"].quantity) == ("BUY", 4)
    assert all(
        o.order_type == "MKT" and o.not_before_ns == MONDAY_CLOSE_NS for o in orders.values()
    )
    assert all(exempt for _, exempt in rig.sent)  # closing orders are not rate-limited
    assert result == {
        "cancelled": 2,
        "orders": ["flat-AAPL-manual-1", "flat-MSFT-manual-2"],
    }


async def test_flatten_when_flat_sends_nothing_and_without_broker_reports_the_error() -> None:
    rig = Rig()
    assert await rig.actions.flatten("manual") == {"cancelled": 2, "orders": []}
    assert rig.sent == []
    rig.broker.connected = False
    rig.book.replace_all({"AAPL": BrokerPosition(symbol="AAPL", quantity=10.0)})
    result = await rig.actions.flatten("kill")
    assert result == {"cancelled": 0, "orders": [], "error": "broker not connected"}
    assert rig.sent == [] and rig.broker.cancel_calls == 1


async def test_dead_man_trips_after_the_heartbeat_timeout_and_clears_on_a_heartbeat() -> None:
    rig = Rig(flatten_on_dead_man=False)
    timeout = rig.paper.monitoring.heartbeat_timeout_s
    peer = next(iter(rig.paper.monitoring.watch_services))
    rig.heartbeats[peer] = rig.t
    rig.t += timeout  # exactly the timeout: not yet silent
    await rig.actions.check_dead_man()
    assert rig.safety.dead_man == "" and rig.broker.cancel_calls == 0
    rig.t += 1
    await rig.actions.check_dead_man()
    assert peer in rig.safety.dead_man
    assert rig.broker.cancel_calls == 1 and rig.sent == []  # cancel, positions held
    await rig.actions.check_dead_man()
    assert rig.broker.cancel_calls == 1  # tripped once, not again on every check
    rig.heartbeats[peer] = rig.t
    await rig.actions.check_dead_man()
    assert rig.safety.dead_man == ""


async def test_dead_man_flattens_when_configured() -> None:
    rig = Rig(flatten_on_dead_man=True)
    rig.book.replace_all({"AAPL": BrokerPosition(symbol="AAPL", quantity=5.0)})
    peer = next(iter(rig.paper.monitoring.watch_services))
    rig.heartbeats[peer] = rig.t
    rig.t += rig.paper.monitoring.heartbeat_timeout_s + 1
    await rig.actions.check_dead_man()
    assert [o.order_ref for o, _ in rig.sent] == ["flat-AAPL-deadman-1"]


async def test_daily_loss_halts_once_flattens_and_persists_the_halt() -> None:
    rig = Rig(max_daily_loss=1000.0)
    rig.book.replace_all({"AAPL": BrokerPosition(symbol="AAPL", quantity=10.0)})
    day = rig.schedule.day(MONDAY_CLOSE_NS)
    await rig.actions.check_daily_loss()  # sets today's baseline at 100k
    assert rig.safety.baseline is not None and rig.safety.baseline.start_equity == 100_000.0
    assert rig.safety.halted_day == "" and rig.sent == []
    rig.broker.equity = 99_500.0
    await rig.actions.check_daily_loss()
    assert rig.safety.halted_day == "" and rig.sent == []  # 500 < 1000
    rig.broker.equity = 98_900.0
    await rig.actions.check_daily_loss()
    assert rig.safety.halted_day == day and rig.store.values[HALTED_DAY_KEY] == day
    assert [o.order_ref for o, _ in rig.sent] == ["flat-AAPL-daily_loss-1"]
    rig.broker.equity = 98_000.0
    await rig.actions.check_daily_loss()
    assert len(rig.sent) == 1  # halted once: no second flatten the same day
    assert SafetySwitches(rig.store).halted_day == day  # a restart keeps the halt
    assert rig.journal.equity_rows[-1] == (day, 98_000.0)


async def test_daily_loss_check_needs_a_connected_broker_and_a_bar_clock() -> None:
    rig = Rig(max_daily_loss=1000.0)
    rig.broker.connected = False
    await rig.actions.check_daily_loss()
    assert rig.safety.baseline is None and rig.journal.equity_rows == []
    rig.broker.connected = True
    rig.actions.bar_clock_ns = lambda: 0  # no bar seen yet
    await rig.actions.check_daily_loss()
    assert rig.safety.baseline is None and rig.journal.equity_rows == []
