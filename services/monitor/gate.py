"""Whether a fill may be booked: pure rules, no I/O.

A fill is booked only when it is consistent with execution's journal: its order reference is
known, the symbol and side match that order, and the quantity filled so far plus this fill does not
exceed the order's quantity. An exec id seen before is a *duplicate* when the fill is the same and a
*conflict* when it is not.

"The same fill" compares what identifies an execution: symbol, order reference, side, quantity,
price and event time. Commission and account are left out on purpose: the broker may report the
commission after the fill, and the bus copy carries the broker account where the journal may not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from shared.messages import Fill

Verdict = Literal["booked", "duplicate", "conflict", "quarantined", "refused"]

_REL = 1e-9  # float slack when comparing quantities and prices
UNKNOWN_ORDER = "unknown_order"  # the only quarantine reason that can clear later


@dataclass(frozen=True)
class KnownOrder:
    order_ref: str
    symbol: str
    side: str
    quantity: float

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> KnownOrder:
        return cls(row["order_ref"], row["symbol"], row["side"], float(row["quantity"]))


def same_fill(fill: Fill, row: dict[str, Any]) -> bool:
    """True when ``row`` (a ledger row) records the same execution as ``fill``."""
    return (
        fill.symbol == row["symbol"]
        and fill.order_ref == row["order_ref"]
        and fill.side == row["side"]
        and math.isclose(fill.quantity, float(row["quantity"]), rel_tol=_REL)
        and math.isclose(fill.price, float(row["price"]), rel_tol=_REL)
        and fill.ts_event == int(row["ts_event"])
    )


def inconsistency(fill: Fill, order: KnownOrder | None, already_filled: float) -> str | None:
    """Why ``fill`` does not match execution's order, or None when it may be booked."""
    if order is None:
        return UNKNOWN_ORDER
    if order.symbol != fill.symbol:
        return "symbol_mismatch"
    if order.side != fill.side:
        return "side_mismatch"
    if already_filled + fill.quantity > order.quantity * (1 + _REL) + _REL:
        return "overfill"
    return None
