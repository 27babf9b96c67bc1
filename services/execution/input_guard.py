"""Execution's own defence against hostile or broken numbers (the bus validates too; we do not rely
on it): every bus message and broker event is checked before it can reach state or money.

``InputGuard.admit(message)`` runs ``shared.validate.problem`` on a bus message; the broker's
events (fills, positions, order updates) get the same rules here. A refusal is counted per reason
(``refusals`` in the ``status`` reply) and logged at WARNING once per reason per minute, so a flood
of bad frames cannot flood the log. ``StateFileError`` is what a state file that does not load
raises: the service stops with exit code 2 naming the file, never a crash loop.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from execution.broker import BrokerEvent, BrokerFill, BrokerPosition, OrderUpdate
from shared.config import ConfigError
from shared.logs import event
from shared.messages import Message
from shared.validate import MAX_PRICE, MAX_QUANTITY, RefusalCounter, problem

log = logging.getLogger("execution.guard")


class StateFileError(ConfigError):
    """A persisted state file (broker state, journal, safety state) cannot be loaded."""


def is_finite(value: Any) -> bool:
    """A real, finite number (bools and None are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def valid_price(value: Any) -> bool:
    return is_finite(value) and 0 < value <= MAX_PRICE


def broker_event_problem(ev: BrokerEvent) -> str | None:
    """Why a broker event must not reach state, or None."""
    if isinstance(ev, BrokerFill):
        if not (is_finite(ev.quantity) and is_finite(ev.price) and is_finite(ev.commission)):
            return "broker_fill_non_finite"
        if not (0 < ev.quantity <= MAX_QUANTITY) or not valid_price(ev.price):
            return "broker_fill_out_of_range"
        if not ev.exec_id:
            return "broker_fill_without_exec_id"
    elif isinstance(ev, BrokerPosition):
        if not (is_finite(ev.quantity) and is_finite(ev.avg_cost)):
            return "broker_position_non_finite"
        if abs(ev.quantity) > MAX_QUANTITY:
            return "broker_position_out_of_range"
    elif isinstance(ev, OrderUpdate):
        numbers = (ev.filled, ev.remaining, ev.avg_fill_price)
        if not all(is_finite(v) for v in numbers):
            return "broker_update_non_finite"
    return None


class InputGuard:
    """Counts and logs refusals per reason (see the module docstring)."""

    def __init__(self, counter: RefusalCounter | None = None) -> None:
        self.counter = counter or RefusalCounter()

    def refuse(self, reason: str, **detail: Any) -> None:
        if self.counter.add(reason):
            event(
                log,
                "input_refused",
                logging.WARNING,
                reason=reason,
                count=self.counter.counts[reason],
                **detail,
            )

    def admit(self, message: Message) -> bool:
        """True when a bus message may reach state."""
        reason = problem(message)
        if reason is None:
            return True
        self.refuse(f"{message.topic().split('.', 1)[0]}:{reason}", topic=message.topic()[:64])
        return False

    def admit_broker_event(self, ev: BrokerEvent) -> bool:
        reason = broker_event_problem(ev)
        if reason is None:
            return True
        self.refuse(reason, event_type=type(ev).__name__)
        return False

    def snapshot(self) -> dict[str, int]:
        return self.counter.snapshot()
