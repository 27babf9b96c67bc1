"""The ib_async orders for one ``OrderRequest``: market, limit, stop, or a bracket (parent plus
take-profit and stop-loss legs, sent together by the last leg's ``transmit``).

Every order carries its deterministic reference as ``orderRef`` (the legs ``-tp`` and ``-sl``),
the account, and time in force DAY.
"""

from __future__ import annotations

from collections.abc import Callable

from ib_async import LimitOrder, MarketOrder, Order, StopOrder

from execution.broker import BrokerError, OrderRequest


def _stamp(order: Order, ref: str, account: str) -> Order:
    order.orderRef = ref
    order.account = account
    order.tif = "DAY"
    return order


def ib_orders(order: OrderRequest, account: str, next_order_id: Callable[[], int]) -> list[Order]:
    """The orders to place, in placing order; ``next_order_id`` numbers a bracket's legs (its
    children name the parent's id)."""
    side, qty = order.side, float(order.quantity)
    if order.order_type == "BRACKET":
        if order.stop_loss is None or order.take_profit is None:
            raise BrokerError("bracket order needs stop_loss and take_profit")
        exit_side = "SELL" if side == "BUY" else "BUY"
        parent: Order = (
            LimitOrder(side, qty, order.limit_price)
            if order.limit_price
            else MarketOrder(side, qty)
        )
        parent.orderId = next_order_id()
        parent.transmit = False
        take = LimitOrder(
            exit_side,
            qty,
            order.take_profit,
            orderId=next_order_id(),
            transmit=False,
            parentId=parent.orderId,
        )
        stop = StopOrder(
            exit_side,
            qty,
            order.stop_loss,
            orderId=next_order_id(),
            transmit=True,
            parentId=parent.orderId,
        )
        return [
            _stamp(parent, order.order_ref, account),
            _stamp(take, f"{order.order_ref}-tp", account),
            _stamp(stop, f"{order.order_ref}-sl", account),
        ]
    if order.order_type == "LMT":
        if not order.limit_price:
            raise BrokerError("limit order without a limit price")
        return [_stamp(LimitOrder(side, qty, order.limit_price), order.order_ref, account)]
    if order.order_type == "STP":
        if not order.stop_price:
            raise BrokerError("stop order without a stop price")
        return [_stamp(StopOrder(side, qty, order.stop_price), order.order_ref, account)]
    return [_stamp(MarketOrder(side, qty), order.order_ref, account)]
