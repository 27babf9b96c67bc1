"""State objects of the simulator: contracts, requests as parsed from the wire, orders, executions.

Quantities are floats (the API sends them as decimals); prices are floats in USD.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import msgspec


@dataclass(frozen=True, slots=True)
class StockContract:
    """One tradable US stock; ``con_id`` is stable per symbol across runs."""

    con_id: int
    symbol: str
    primary_exchange: str  # NASDAQ, NYSE, ARCA
    long_name: str
    stock_type: str  # COMMON or ETF
    sec_type: str = "STK"
    exchange: str = "SMART"
    currency: str = "USD"

    @property
    def trading_class(self) -> str:
        return "NMS" if self.primary_exchange == "NASDAQ" else self.symbol

    @property
    def venue(self) -> str:
        """Exchange an execution reports (IB names NASDAQ's book ISLAND)."""
        return "ISLAND" if self.primary_exchange == "NASDAQ" else self.primary_exchange


@dataclass(slots=True)
class ContractQuery:
    """The 12 contract fields a client sends with orders and requests (``Contract`` in ib_async)."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    strike: float | None = None
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""


@dataclass(slots=True)
class OrderRequest:
    """A placeOrder message, the fields the simulator acts on."""

    order_id: int
    contract: ContractQuery
    action: str  # BUY / SELL (SSHORT is refused)
    total_qty: float
    order_type: str  # MKT, LMT, STP
    lmt_price: float | None
    aux_price: float | None  # the stop price of STP orders
    tif: str = "DAY"
    oca_group: str = ""
    oca_type: int = 0
    account: str = ""
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    outside_rth: bool = False
    what_if: bool = False


class Status:
    """Order statuses as IB names them."""

    STAGED = "PendingSubmit"  # transmit=False: held until a transmitting child arrives
    PRE_SUBMITTED = "PreSubmitted"  # bracket child waiting for its parent's fill
    SUBMITTED = "Submitted"
    FILLED = "Filled"
    CANCELLED = "Cancelled"

    DONE = frozenset({FILLED, CANCELLED})


@dataclass(slots=True)
class SimOrder:
    """An order as the simulated broker holds it."""

    perm_id: int
    client_id: int
    order_id: int
    contract: StockContract
    action: str
    total_qty: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    oca_group: str
    oca_type: int
    order_ref: str
    account: str
    parent_id: int
    transmit: bool
    outside_rth: bool
    received_ns: int
    status: str = Status.STAGED
    filled_qty: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    commission_paid: float = 0.0
    completed_ns: int = 0
    reject_code: int = 0
    reject_reason: str = ""
    done_reason: str = ""  # IB's completedStatus text: Filled, Cancelled by Trader, ...
    fill_count: int = 0

    @property
    def remaining(self) -> float:
        return max(0.0, self.total_qty - self.filled_qty)

    @property
    def is_done(self) -> bool:
        return self.status in Status.DONE

    @property
    def is_working(self) -> bool:
        """Eligible to fill against the next bar."""
        return self.status == Status.SUBMITTED and self.remaining > 0

    @property
    def is_buy(self) -> bool:
        return self.action == "BUY"

    def to_json(self) -> dict[str, object]:
        return {
            "perm_id": self.perm_id,
            "client_id": self.client_id,
            "order_id": self.order_id,
            "order_ref": self.order_ref,
            "symbol": self.contract.symbol,
            "action": self.action,
            "quantity": self.total_qty,
            "order_type": self.order_type,
            "lmt_price": self.lmt_price,
            "aux_price": self.aux_price,
            "tif": self.tif,
            "parent_id": self.parent_id,
            "oca_group": self.oca_group,
            "status": self.status,
            "filled": self.filled_qty,
            "remaining": self.remaining,
            "avg_fill_price": self.avg_fill_price,
            "commission": self.commission_paid,
            "received_ns": self.received_ns,
            "reject_code": self.reject_code,
            "reject_reason": self.reject_reason,
        }


class ExecutionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One execution, as journalled to disk and answered to reqExecutions."""

    exec_id: str
    perm_id: int
    order_id: int
    client_id: int
    order_ref: str
    account: str
    symbol: str
    con_id: int
    side: str  # BOT / SLD, as IB reports it
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    commission: float
    realized_pnl: float | None  # None when the execution only opened or added to a position
    time_ns: int  # wall clock of the fill
    bar_ts_ns: int  # close time of the bar that produced the fill
    venue: str = "ISLAND"

    @property
    def action(self) -> str:
        return "BUY" if self.side == "BOT" else "SELL"

    def to_json(self) -> dict[str, object]:
        return {
            "exec_id": self.exec_id,
            "order_ref": self.order_ref,
            "symbol": self.symbol,
            "side": self.action,
            "qty": self.shares,
            "price": self.price,
            "commission": self.commission,
            "time": _iso(self.time_ns),
            "time_ns": self.time_ns,
            "realized_pnl": self.realized_pnl,
            "order_id": self.order_id,
            "perm_id": self.perm_id,
            "client_id": self.client_id,
            "account": self.account,
            "cum_qty": self.cum_qty,
            "avg_price": self.avg_price,
            "bar_ts": self.bar_ts_ns,
        }


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="microseconds")


@dataclass(slots=True)
class PositionState:
    """Signed quantity; ``avg_cost`` includes commissions per share, as IB reports it."""

    quantity: float = 0.0
    avg_cost: float = 0.0
    realized_pnl: float = 0.0


@dataclass(frozen=True, slots=True)
class SourceBar:
    """A bar from the price source; times in ns UTC, ``close_ts`` is when it became known."""

    symbol: str
    open_ts: int
    close_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def seconds(self) -> float:
        return (self.close_ts - self.open_ts) / 1e9


@dataclass(slots=True)
class ExecutionFilterQuery:
    """reqExecutions filter; empty/zero fields match everything."""

    client_id: int = 0
    account: str = ""
    time: str = ""
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""


@dataclass(slots=True)
class AccountSnapshot:
    """Derived account figures (USD) at the last known prices."""

    cash: float
    stock_value: float  # signed sum of position values
    gross_position_value: float
    net_liquidation: float
    init_margin: float
    maint_margin: float
    available_funds: float
    excess_liquidity: float
    buying_power: float
    realized_pnl: float
    unrealized_pnl: float
