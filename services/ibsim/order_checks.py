"""Why IB would refuse a new order, checked in IB's order: what-if, action, quantity, order type,
prices, account, bracket parent, an injected rejection (fault switch), then Reg T initial margin
(working orders in the symbol count as if filled)."""

from __future__ import annotations

import math

from ibsim.account_book import INITIAL_MARGIN, AccountBook
from ibsim.faults import FaultSwitches
from ibsim.models import OrderRequest, PositionState, SimOrder, Status
from ibsim.order_book import OrderBook

SUPPORTED_ORDER_TYPES = frozenset({"MKT", "LMT", "STP"})
ORDER_REJECTED = 201
PARENT_NOT_FOUND = 135
UNSUPPORTED_ORDER_TYPE = (387, "Unsupported order type for this exchange and security type.")


def rejection_text(code: int, reason: str) -> str:
    return f"Order rejected - reason:{reason}" if code == ORDER_REJECTED else reason


def order_problem(
    order: SimOrder,
    request: OrderRequest,
    account: str,
    book: OrderBook,
    account_book: AccountBook,
    faults: FaultSwitches,
) -> tuple[int, str] | None:
    """The first reason IB would refuse this new order of ``account``, or None."""
    if request.what_if:
        return ORDER_REJECTED, "What-if orders are not supported by the simulator"
    if order.action not in ("BUY", "SELL"):
        return ORDER_REJECTED, f"Invalid action {order.action!r}: use BUY or SELL"
    if not order.total_qty > 0 or not math.isfinite(order.total_qty):
        return ORDER_REJECTED, "The order quantity must be positive"
    if order.order_type not in SUPPORTED_ORDER_TYPES:
        return UNSUPPORTED_ORDER_TYPE
    if order.order_type == "LMT" and not _positive(order.lmt_price):
        return ORDER_REJECTED, "A limit order requires a positive limit price"
    if order.order_type == "STP" and not _positive(order.aux_price):
        return ORDER_REJECTED, "A stop order requires a positive stop price (auxPrice)"
    if order.account != account:
        return ORDER_REJECTED, f"Account {order.account} is not managed by this login"
    if order.parent_id:
        parent = book.find(order.client_id, order.parent_id)
        if parent is None or parent is order:
            return PARENT_NOT_FOUND, f"Can't find order with id ={order.parent_id}"
        if parent.status == Status.CANCELLED:
            return ORDER_REJECTED, f"Parent order {order.parent_id} is cancelled"
    injected = faults.take_rejection()
    if injected is not None:
        return injected.code, rejection_text(injected.code, injected.reason)
    margin = _margin_problem(order, book, account_book)
    if margin is not None:
        return ORDER_REJECTED, margin
    return None


def _margin_problem(order: SimOrder, book: OrderBook, account_book: AccountBook) -> str | None:
    price = account_book.last_price.get(order.contract.symbol) or order.lmt_price or order.aux_price
    if not price:
        return None  # nothing to value it with yet
    # Working orders in the symbol count as if filled, so a burst of orders before the next
    # bar cannot together exceed what one order may.
    filled = account_book.positions.get(order.contract.symbol, PositionState()).quantity
    held = filled + sum(
        o.remaining if o.is_buy else -o.remaining for o in book.working(order.contract.symbol)
    )
    after = held + (order.total_qty if order.is_buy else -order.total_qty)
    if abs(after) <= abs(held):
        return None  # reduces exposure
    snapshot = account_book.snapshot()
    gross_after = snapshot.gross_position_value + (abs(after) - abs(filled)) * price
    init_after = INITIAL_MARGIN * gross_after
    if init_after <= snapshot.net_liquidation:
        return None
    return rejection_text(
        ORDER_REJECTED,
        "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY "
        f"WITH LOAN VALUE [{snapshot.net_liquidation:.2f} USD] MUST EXCEED THE INITIAL "
        f"MARGIN [{init_after:.2f} USD]",
    )


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0
