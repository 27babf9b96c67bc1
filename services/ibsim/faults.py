"""Fault switches that tests flip through the control port to reproduce what IB does to clients.

- ``delay_acks_ms``: placeOrder/cancelOrder acknowledgements (openOrder, orderStatus) reach the
  client late; later messages queue behind them, so the stream stays in order.
- ``reject_next_n`` (+ ``reject_reason``, ``reject_code``): the next n orders are rejected with an
  error message (default 201 "Order rejected - reason:...", or e.g. 10349) and end Cancelled.
- ``partial_fill_fraction``: each fill executes at most this fraction of the order's quantity,
  so an order fills over several bars.
- ``delay_commission_ms``: the commission report of a live execution reaches the client this
  long after the execution (other messages are not held back behind it).
- ``drop_commission_next_n``: the commission reports of the next n live executions are never sent
  (a ``reqExecutions`` still answers each execution with its report, as IB does).
- ``pacing_error_next_n``: the next n historical data requests are answered with error 162
  "Historical data request pacing violation" (as IB does past 60 requests in 10 minutes).
- ``realtime_pacing_next_n``: the next n ``reqRealTimeBars`` are answered with error 420
  "Invalid Real-time Query:Historical data request pacing violation".
- ``market_data_error``: 0 (off), 354 or 10167: an account without a market data subscription.
  354: historical and real-time bar requests are refused with 354 "Requested market data is not
  subscribed." unless the client asked for delayed data (``reqMarketDataType(3 or 4)``), which is
  served after the 10167 warning; 10167: every data request gets the 10167 warning
  ("... Displaying delayed market data.") and is served.
- drop the connection now / outage of N seconds (connections refused) are one-shot actions the
  server performs; see ``ibsim.server``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_REJECT_CODE = 201
DEFAULT_REJECT_REASON = "Simulated rejection"
MARKET_DATA_ERRORS = (0, 354, 10167)


@dataclass(slots=True)
class Rejection:
    code: int
    reason: str


@dataclass(slots=True)
class FaultSwitches:
    delay_acks_ms: float = 0.0
    reject_next_n: int = 0
    reject_reason: str = DEFAULT_REJECT_REASON
    reject_code: int = DEFAULT_REJECT_CODE
    partial_fill_fraction: float = 0.0  # 0 (or 1) means fill the whole remaining quantity
    delay_commission_ms: float = 0.0
    drop_commission_next_n: int = 0
    pacing_error_next_n: int = 0
    realtime_pacing_next_n: int = 0
    market_data_error: int = 0  # 0, 354 or 10167

    def update(self, values: dict[str, Any]) -> None:
        """Apply settings from a control command; unknown keys and bad values raise ValueError."""
        for key, value in values.items():
            if key == "delay_acks_ms":
                self.delay_acks_ms = _number(key, value, low=0.0)
            elif key == "reject_next_n":
                self.reject_next_n = int(_number(key, value, low=0.0))
            elif key == "reject_reason":
                self.reject_reason = str(value)
            elif key == "reject_code":
                self.reject_code = int(_number(key, value, low=1.0))
            elif key == "partial_fill_fraction":
                self.partial_fill_fraction = _number(key, value, low=0.0, high=1.0)
            elif key == "delay_commission_ms":
                self.delay_commission_ms = _number(key, value, low=0.0, high=600_000.0)
            elif key == "drop_commission_next_n":
                self.drop_commission_next_n = int(_number(key, value, low=0.0, high=1_000_000.0))
            elif key == "pacing_error_next_n":
                self.pacing_error_next_n = int(_number(key, value, low=0.0, high=1_000_000.0))
            elif key == "realtime_pacing_next_n":
                self.realtime_pacing_next_n = int(_number(key, value, low=0.0, high=1_000_000.0))
            elif key == "market_data_error":
                code = int(_number(key, value, low=0.0, high=99_999.0))
                if code not in MARKET_DATA_ERRORS:
                    raise ValueError(f"{key} must be one of {MARKET_DATA_ERRORS}, got {code}")
                self.market_data_error = code
            else:
                raise ValueError(f"unknown fault {key!r}")

    def take_rejection(self) -> Rejection | None:
        """Consume one pending rejection, if any."""
        if self.reject_next_n <= 0:
            return None
        self.reject_next_n -= 1
        return Rejection(self.reject_code, self.reject_reason)

    def take_pacing_error(self) -> bool:
        """Consume one pending historical pacing error (162): True when this request gets it."""
        if self.pacing_error_next_n <= 0:
            return False
        self.pacing_error_next_n -= 1
        return True

    def take_realtime_pacing(self) -> bool:
        """Consume one pending real-time bars error (420): True when this request gets it."""
        if self.realtime_pacing_next_n <= 0:
            return False
        self.realtime_pacing_next_n -= 1
        return True

    def take_commission_drop(self) -> bool:
        """Consume one pending commission-report drop: True when this report is not sent."""
        if self.drop_commission_next_n <= 0:
            return False
        self.drop_commission_next_n -= 1
        return True

    def fill_quantity(self, total: float, remaining: float) -> float:
        """How much of an order the next fill executes: whole shares, at least one."""
        fraction = self.partial_fill_fraction
        if fraction <= 0.0 or fraction >= 1.0 or total <= 1.0:
            return remaining
        return min(remaining, max(1.0, math.floor(total * fraction)))

    def clear(self) -> None:
        fresh = FaultSwitches()
        for key, value in asdict(fresh).items():
            setattr(self, key, value)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _number(key: str, value: Any, low: float, high: float = math.inf) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {value!r}") from None
    if not low <= number <= high or math.isnan(number):
        raise ValueError(f"{key} must be in [{low}, {high}], got {number}")
    return number
