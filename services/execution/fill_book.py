"""Which filled shares of this session's own IB orders the execution service sees already.

Every filled share of our own orders must be in exactly one place the service sees: a working
order, a position report, or a booked fill. IB says "Filled" at once, but a fill is handed over
only with its commission report, and a position report may come before or after it. So per order
reference the book counts the *accounted* shares (of executions handed over as fills or covered
by a later position report of the symbol); filled shares not accounted yet still count as working
(done orders of this session are kept as *unbooked* for that), or a decision in the gap would
order them again.
"""

from __future__ import annotations

from collections.abc import Iterable

from ib_async import Trade

TradeKey = tuple[int, int]  # how ib_async itself keys trades: (client id, order id)


class FillBook:
    """Accounted shares per order reference of the orders this process placed."""

    def __init__(self) -> None:
        self.placed_refs: set[str] = set()
        self._accounted_shares: dict[str, float] = {}
        self._accounted_execs: set[str] = set()
        self._positioned_execs: set[str] = set()  # covered by a position report
        self._unpositioned: dict[str, dict[str, tuple[str, float]]] = {}  # symbol -> exec
        self._unbooked: dict[TradeKey, Trade] = {}

    def placed(self, order_ref: str) -> None:
        """An order this process sent: only those are accounted."""
        self.placed_refs.add(order_ref)

    def on_done(self, key: TradeKey, trade: Trade) -> None:
        """A trade reached a done state: kept while some of its filled shares are unaccounted."""
        if self.unreported_shares(trade) > 0:
            self._unbooked[key] = trade
        else:
            self._unbooked.pop(key, None)

    def unreported_shares(self, trade: Trade) -> float:
        """Filled shares of one of this session's orders that neither a handed-over fill nor a
        position report accounts for yet."""
        ref = trade.order.orderRef
        if not ref or ref not in self.placed_refs:
            return 0.0
        return max(0.0, float(trade.orderStatus.filled) - self._accounted_shares.get(ref, 0.0))

    def unbooked_trades(self) -> Iterable[Trade]:
        """Done trades with filled shares not accounted yet."""
        return self._unbooked.values()

    def on_execution(self, symbol: str, exec_id: str, order_ref: str, shares: float) -> None:
        """An execution IB reported: unless accounted already, the symbol's next position report
        will include it."""
        if exec_id not in self._accounted_execs:
            self._unpositioned.setdefault(symbol, {})[exec_id] = (order_ref, shares)

    def on_position(self, symbol: str) -> None:
        """A position report of ``symbol``: it includes every execution of the symbol seen before
        it."""
        for exec_id, (ref, shares) in list(self._unpositioned.pop(symbol, {}).items()):
            self._positioned_execs.add(exec_id)
            self.mark_accounted(exec_id, ref, shares)

    def is_in_position(self, exec_id: str) -> bool:
        """Whether a position report covered this execution already."""
        return exec_id in self._positioned_execs

    def mark_accounted(self, exec_id: str, order_ref: str, shares: float) -> None:
        """An execution is now visible to the service (handed over, or inside a position
        report); counted once, however many times it is seen."""
        for execs in self._unpositioned.values():
            execs.pop(exec_id, None)
        if order_ref not in self.placed_refs or exec_id in self._accounted_execs:
            return
        self._accounted_execs.add(exec_id)
        self._accounted_shares[order_ref] = self._accounted_shares.get(order_ref, 0.0) + shares
        for key, trade in list(self._unbooked.items()):
            if trade.order.orderRef == order_ref and self.unreported_shares(trade) <= 0:
                del self._unbooked[key]
