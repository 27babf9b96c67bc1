"""ib_async's objects as the ``Broker`` port's value types (``execution.broker``).

Silent rejections: ib_async marks a rejected order ``Cancelled`` and keeps the error in the
trade's log; it is reported here as ``rejected`` with the IB code and reason (202, "order
cancelled", stays a cancel).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from typing import Any

from ib_async import Fill as IBFill
from ib_async import Order, Trade
from ib_async.objects import CommissionReport

from execution.broker import BrokerFill, OrderUpdate, WorkingOrder

ORDER_CANCELLED_CODE = 202
# ib_async's warning codes: the order is still live after them
WARNING_CODES = frozenset({105, 110, 165, 321, 329, 399, 404, 434, 492, 10167})
_ERROR_PREFIX = re.compile(r"^(Error|Warning) \d+, reqId -?\d+: ")


def _ns(moment: Any) -> int:
    if isinstance(moment, dt.datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1e9)
    return time.time_ns()


def rejection(trade: Trade) -> tuple[int, str] | None:
    """The error that ended the trade, if an error did (not a plain cancel)."""
    for entry in reversed(trade.log):
        code = int(entry.errorCode or 0)
        if code and code != ORDER_CANCELLED_CODE and code not in WARNING_CODES:
            message = entry.message.split(", contract:", 1)[0]
            return code, _ERROR_PREFIX.sub("", message)
    return None


def order_update(trade: Trade, order_ref: str) -> OrderUpdate | None:
    """The port's update for the trade's status; None for a status the service does not need."""
    st = trade.orderStatus
    status = st.status
    common: dict[str, Any] = {
        "order_ref": order_ref,
        "symbol": trade.contract.symbol,
        "broker_order_id": str(trade.order.orderId),
        "filled": float(st.filled),
        "remaining": float(st.remaining),
        "avg_fill_price": float(st.avgFillPrice or 0.0),
        "ts_ns": time.time_ns(),
    }
    if status in ("PreSubmitted", "Submitted"):
        return OrderUpdate(status="acknowledged", **common)
    if status == "Filled":
        return OrderUpdate(status="filled", **common)
    if status in ("Cancelled", "ApiCancelled", "Inactive"):
        rejected = rejection(trade)
        if rejected is not None:
            code, reason = rejected
            return OrderUpdate(status="rejected", error_code=code, reason=reason, **common)
        if status == "Inactive":
            return OrderUpdate(
                status="rejected", reason="order inactive at IB (rejected or held)", **common
            )
        return OrderUpdate(status="cancelled", **common)
    return None


def broker_fill(
    fill: IBFill, report: CommissionReport, recovered: bool, in_position: bool, account: str
) -> BrokerFill:
    """The port's fill; ``account`` stands in where the execution names none."""
    ex = fill.execution
    commission = float(report.commission) if report and report.execId else 0.0
    if not math.isfinite(commission) or commission > 1e12:
        commission = 0.0
    return BrokerFill(
        in_position=in_position,
        exec_id=ex.execId,
        order_ref=ex.orderRef,
        symbol=fill.contract.symbol,
        side="BUY" if ex.side in ("BOT", "BUY") else "SELL",
        quantity=float(ex.shares),
        price=float(ex.price),
        commission=commission,
        account=ex.acctNumber or account,
        ts_ns=_ns(ex.time),
        recovered=recovered,
    )


def is_bracket_child(order: Order) -> bool:
    """A take-profit or stop-loss leg of a bracket (by its parent, or by its reference)."""
    return bool(order.parentId) or order.orderRef.endswith(("-tp", "-sl"))


def working_order(trade: Trade, total: float, remaining: float, is_child: bool) -> WorkingOrder:
    order = trade.order
    return WorkingOrder(
        order_ref=order.orderRef,
        symbol=trade.contract.symbol,
        side="BUY" if order.action == "BUY" else "SELL",
        quantity=total,
        remaining=remaining,
        order_type=order.orderType,
        broker_order_id=str(order.orderId),
        is_child=is_child,
    )
