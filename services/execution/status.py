"""The execution service's status snapshot (the ``status`` command and the heartbeat's detail).

``ExecutionStatus`` only reads: the broker's connection and account, the switches, the risk
manager's verdict and order rate, the bar clock, the position book, the input guard's refusals and
the shared counters. It is handed each of them, and a callable for whether the bus loop runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from execution.broker import Broker
from execution.input_guard import InputGuard
from execution.market import MarketState
from execution.positions import PositionBook
from execution.risk import RiskManager, TradingSchedule
from execution.safety import SafetySwitches


class ExecutionStatus:
    def __init__(
        self,
        *,
        broker: Broker,
        safety: SafetySwitches,
        risk: RiskManager,
        schedule: TradingSchedule,
        market: MarketState,
        book: PositionBook,
        guard: InputGuard,
        counters: dict[str, int],
        clock: str,
        now_ns: Callable[[], int],
        bus_running: Callable[[], bool],
    ) -> None:
        self.broker = broker
        self.safety = safety
        self.risk = risk
        self.schedule = schedule
        self.market = market
        self.book = book
        self.guard = guard
        self.counters = counters
        self.clock = clock  # "bar" or "wall"
        self.now_ns = now_ns
        self.bus_running = bus_running

    def detail(self) -> dict[str, Any]:
        connected = self.broker.is_connected()
        bus_running = self.bus_running()
        day = self.schedule.day(self.now_ns())
        return {
            "ready": bool(bus_running and connected),
            "bus": bus_running,
            "broker": self.broker.name,
            "broker_connected": connected,
            "account": self.broker.account if connected else "",
            "paper": self.broker.is_paper() if connected else None,
            "trading_blocked": self.risk.blocked(day),
            "killed": self.safety.killed,
            "halted_day": self.safety.halted_day,
            "dead_man": self.safety.dead_man,
            "reduce_only": self.safety.reduce_only,
            "clock": self.clock,
            "clock_ns": self.market.clock_ns,
            "positions": {s: p.quantity for s, p in self.book.held().items()},
            "working_orders": len(self.broker.working_orders()) if connected else 0,
            "orders_last_minute": self.risk.rate.count(),
            "refusals": self.guard.snapshot(),
            "daily_baseline": (
                msgspec.to_builtins(self.safety.baseline) if self.safety.baseline else None
            ),
            **self.counters,
        }
