"""The execution service's operator commands (the ROUTER endpoint's handlers).

``ExecutionCommands`` answers ``status``, ``kill``, ``rearm``, ``reduce_only``, ``flatten``,
``positions``, ``orders`` and ``fills``. It flips the safety switches through ``SafetySwitches``,
reads positions from the ``PositionBook``, orders and fills from the ``OrderJournal`` and working
orders from the broker; flattening (``SafetyActions.flatten``) and the status snapshot
(``ExecutionStatus``, via the service's ``status_detail``) are handed in as callables.
``register`` puts every handler on a command server under its command name.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from execution.broker import Broker, WorkingOrder
from execution.live_record import TrackRecord
from execution.order_journal import OrderJournal
from execution.positions import PositionBook
from execution.safety import SafetySwitches
from shared.logs import event
from shared.metrics import max_drawdown, sharpe_ratio

log = logging.getLogger("execution")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class CommandServer(Protocol):
    def register(self, name: str, handler: Handler) -> None: ...


class ExecutionCommands:
    def __init__(
        self,
        *,
        safety: SafetySwitches,
        book: PositionBook,
        journal: OrderJournal,
        broker: Broker,
        flatten: Callable[[str], Awaitable[dict[str, Any]]],
        status_detail: Callable[[], dict[str, Any]],
    ) -> None:
        self.safety = safety
        self.book = book
        self.journal = journal
        self.broker = broker
        self.flatten = flatten
        self.status_detail = status_detail

    def handlers(self) -> dict[str, Handler]:
        """Command name -> handler."""
        return {
            "status": self.status,
            "kill": self.kill,
            "rearm": self.rearm,
            "positions": self.positions_command,
            "orders": self.orders_command,
            "fills": self.fills_command,
            "flatten": self.flatten_command,
            "reduce_only": self.reduce_only,
        }

    def register(self, server: CommandServer) -> None:
        for name, handler in self.handlers().items():
            server.register(name, handler)

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status_detail()

    async def kill(self, args: dict[str, Any]) -> dict[str, Any]:
        self.safety.kill()
        event(log, "kill_switch", logging.ERROR, sender=args.get("reason", ""))
        result = await self.flatten("kill")
        return {"killed": True, **result}

    async def rearm(self, args: dict[str, Any]) -> dict[str, Any]:
        cleared_daily = self.safety.rearm(clear_daily_loss=bool(args.get("clear_daily_loss")))
        event(log, "rearmed", logging.WARNING, cleared_daily_loss=cleared_daily)
        return {"killed": False, "halted_day": self.safety.halted_day}

    async def reduce_only(self, args: dict[str, Any]) -> dict[str, Any]:
        on = args.get("on")
        if not isinstance(on, bool):
            raise ValueError("reduce_only needs args {'on': true|false}")
        self.safety.set_reduce_only(on)
        event(log, "reduce_only", on=on)
        return {"reduce_only": on}

    async def flatten_command(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.flatten(str(args.get("reason", "manual")))

    async def fills_command(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Every fill this service booked since ``since_ns`` (the monitor's back-fill)."""
        return self.journal.fills_since(int(args.get("since_ns", 0)))

    async def positions_command(self, args: dict[str, Any]) -> dict[str, Any]:
        source = self.book.held()
        return {
            s: {"quantity": p.quantity, "avg_cost": p.avg_cost, "account": p.account}
            for s, p in source.items()
        }

    async def orders_command(self, args: dict[str, Any]) -> dict[str, Any]:
        limit = int(args.get("limit", 100))
        working: list[WorkingOrder] = (
            self.broker.working_orders() if self.broker.is_connected() else []
        )
        return {
            "working": [msgspec.to_builtins(w) for w in working],
            "journal": [msgspec.to_builtins(e) for e in self.journal.orders(limit=limit)],
        }


def track_record(journal: OrderJournal, live: TrackRecord | None = None) -> dict[str, Any]:
    """Paper track record from the daily equity journal: days traded, PnL, Sharpe, drawdown;
    with ``live``, also what the live guard reads from the compare reports (``live_track_record``:
    ok, sessions within bound, reports read, what is missing)."""
    extra = {"live_track_record": live.describe()} if live is not None else {}
    days = journal.equity_days()
    if not days:
        return {
            "days": 0,
            "days_traded": 0,
            "pnl": 0.0,
            "sharpe": None,
            "max_drawdown": 0.0,
            **extra,
        }
    closes = [d.last_equity for d in days]
    returns = [d.last_equity / d.start_equity - 1.0 for d in days if d.start_equity > 0]
    sharpe = sharpe_ratio(returns, 252.0)
    mdd = max_drawdown(closes, initial=days[0].start_equity)[0]
    return {
        "days": len(days),
        "days_traded": sum(1 for d in days if d.orders > 0),
        "first_day": days[0].day,
        "last_day": days[-1].day,
        "pnl": round(days[-1].last_equity - days[0].start_equity, 2),
        "sharpe": None if math.isnan(sharpe) else round(sharpe, 4),
        "max_drawdown": round(mdd, 6),
        **extra,
    }
