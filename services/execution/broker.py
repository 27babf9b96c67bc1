"""The ``Broker`` port: what the execution service needs from a broker, and its value types.

Two adapters implement it: ``execution.sim_broker.SimBroker`` (in process, fills at the next bar's
open with ``shared.costs``) and ``execution.ib_broker.IBBroker`` (Interactive Brokers through
``ib_async``, TWS / IB Gateway or the bundled ``ibsim`` gateway simulator).

A broker reports everything that happens asynchronously as ``BrokerEvent``s on its ``events``
queue (order status changes, fills with commission, position changes, connection changes); the
service consumes that queue in its one asyncio loop. Requests (``place``, ``cancel`` ...) are
coroutines. Quantities are unsigned on orders and fills (``side`` says the direction) and signed
on positions.
"""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol, runtime_checkable

import msgspec

from shared.messages import Bar

Side = Literal["BUY", "SELL"]
OrderType = Literal["MKT", "LMT", "STP", "BRACKET"]
# Order lifecycle as the service publishes it (shared.messages.OrderStatus, minus "skipped").
UpdateStatus = Literal["submitted", "acknowledged", "filled", "rejected", "cancelled"]


class BrokerError(Exception):
    """A request to the broker failed (not connected, refused before sending ...)."""


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One order to send. ``order_ref`` is the idempotency key and travels as IB ``orderRef``.

    ``BRACKET`` sends a parent (limit at ``limit_price``, or market when it is None) with a
    take-profit limit child at ``take_profit`` and a stop-loss child at ``stop_loss``; the children
    carry the references ``<order_ref>-tp`` and ``<order_ref>-sl``.
    """

    order_ref: str
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType = "MKT"
    limit_price: float | None = None
    stop_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    bar_seq: int = 0
    # A simulated broker fills only on bars that close after this time (the decision's bar).
    not_before_ns: int = 0


class OrderUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A status change of an order the broker knows, keyed by our ``order_ref``."""

    order_ref: str
    symbol: str
    status: UpdateStatus
    broker_order_id: str = ""
    filled: float = 0.0
    remaining: float = 0.0
    avg_fill_price: float = 0.0
    error_code: int = 0
    reason: str = ""
    ts_ns: int = 0


class BrokerFill(msgspec.Struct, frozen=True, kw_only=True):
    """One execution with its commission; ``exec_id`` is the broker's unique id."""

    exec_id: str
    order_ref: str
    symbol: str
    side: Side
    quantity: float
    price: float
    commission: float
    account: str = ""
    ts_ns: int = 0
    recovered: bool = False  # found by re-requesting executions, not delivered live
    # the broker reported a position that already includes this execution before the fill
    # itself was handed over (its commission report came late): the book must not add it again
    in_position: bool = False


class BrokerPosition(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    quantity: float  # signed: > 0 long, < 0 short
    avg_cost: float = 0.0
    account: str = ""


class WorkingOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order the broker still works (not filled, cancelled or rejected)."""

    order_ref: str
    symbol: str
    side: Side
    quantity: float  # total
    remaining: float
    order_type: str
    broker_order_id: str = ""
    is_child: bool = False  # a bracket's stop-loss or take-profit


class ConnectionChange(msgspec.Struct, frozen=True, kw_only=True):
    connected: bool
    reason: str = ""


BrokerEvent = OrderUpdate | BrokerFill | BrokerPosition | ConnectionChange


@runtime_checkable
class Broker(Protocol):
    """The port. An adapter owns its connection; the service only calls these."""

    name: str
    events: asyncio.Queue[BrokerEvent]

    async def connect(self) -> None:
        """Connect (and synchronise: positions, open orders, executions). Raises BrokerError."""

    async def close(self) -> None:
        """Disconnect for good (no reconnect)."""

    def is_connected(self) -> bool: ...

    @property
    def account(self) -> str: ...

    def is_paper(self) -> bool:
        """True when the connected account is a paper (simulated) account."""

    @property
    def account_key(self) -> str:
        """Identifies the account's history: the account id, plus a creation stamp where an
        account can be recreated under the same id (a fresh simulator account)."""
        ...

    def positions(self) -> dict[str, BrokerPosition]:
        """The broker's current positions by symbol (non-zero only)."""

    def working_orders(self) -> list[WorkingOrder]: ...

    def known_order_refs(self) -> set[str]:
        """References of every order the broker has seen today: open and completed."""

    def equity(self) -> float | None:
        """Account net liquidation value, or None when the broker does not know it yet."""

    async def place(self, order: OrderRequest) -> str:
        """Send an order; returns the broker's order id. Raises BrokerError if it cannot send."""

    async def cancel(self, order_ref: str) -> bool:
        """Cancel a working order by reference; False when it is not working."""

    async def cancel_all(self) -> int:
        """Cancel every working order; returns how many cancels were sent."""

    async def recover_fills(self, since_ns: int) -> list[BrokerFill]:
        """Executions since ``since_ns`` (the last known one), re-requested from the broker after
        a reconnect or at start. The caller deduplicates by ``exec_id``."""

    def on_bar(self, bar: Bar) -> None:
        """A bar from the bus (the simulated broker fills on it; IB ignores it)."""
