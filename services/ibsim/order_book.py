"""Where the simulator's orders are and how they are related: by permId, by (clientId, orderId),
bracket children by parent, OCA groups, and the working (Submitted) orders per symbol that the
next bar may fill. What happens to an order is ``ibsim.exchange``'s."""

from __future__ import annotations

from collections.abc import Iterable

from ibsim.models import SimOrder, Status


class OrderBook:
    """Every order of the session, indexed; no rules, no reporting."""

    def __init__(self) -> None:
        self.orders: dict[int, SimOrder] = {}  # permId -> order, in arrival order
        self._by_client_order: dict[tuple[int, int], SimOrder] = {}
        self._by_parent: dict[tuple[int, int], list[SimOrder]] = {}  # (clientId, parentId)
        self._by_oca_group: dict[str, list[SimOrder]] = {}
        self._working: dict[str, dict[int, SimOrder]] = {}  # symbol -> permId -> Submitted order

    def add(self, order: SimOrder) -> None:
        self.orders[order.perm_id] = order
        self._by_client_order[(order.client_id, order.order_id)] = order
        if order.parent_id:
            self._by_parent.setdefault((order.client_id, order.parent_id), []).append(order)
        if order.oca_group:
            self._by_oca_group.setdefault(order.oca_group, []).append(order)

    def find(self, client_id: int, order_id: int) -> SimOrder | None:
        return self._by_client_order.get((client_id, order_id))

    def parent_of(self, order: SimOrder) -> SimOrder | None:
        return self.find(order.client_id, order.parent_id) if order.parent_id else None

    def children(self, parent: SimOrder) -> list[SimOrder]:
        return self._by_parent.get((parent.client_id, parent.order_id), [])

    def working(self, symbol: str) -> Iterable[SimOrder]:
        """Submitted orders in the symbol, in the order they started working."""
        return self._working.get(symbol, {}).values()

    def status_changed(self, order: SimOrder) -> None:
        """Keep the working index in step with the order's (new) status."""
        working = self._working.setdefault(order.contract.symbol, {})
        if order.status == Status.SUBMITTED:
            working[order.perm_id] = order
        else:
            working.pop(order.perm_id, None)

    def staged_family(self, order: SimOrder) -> list[SimOrder]:
        """A transmitting order releases its staged parent and staged siblings, parent first."""
        if not order.parent_id:
            return [order]
        parent = self._by_client_order[(order.client_id, order.parent_id)]
        family = [parent] if parent.status == Status.STAGED else []
        family += [c for c in self.children(parent) if c.status == Status.STAGED]
        return family

    def oca_siblings(self, order: SimOrder) -> list[SimOrder]:
        """The live orders one-cancels-all with ``order``: its bracket's other legs, or its OCA
        group."""
        if order.parent_id:
            parent = self._by_client_order.get((order.client_id, order.parent_id))
            group = self.children(parent) if parent is not None else []
        elif order.oca_group:
            group = self._by_oca_group.get(order.oca_group, [])
        else:
            return []
        return [o for o in group if o is not order and not o.is_done]

    def open_orders(self, client_id: int | None = None) -> list[SimOrder]:
        """Transmitted, not yet done orders (of one client, or all)."""
        return [
            o
            for o in self.orders.values()
            if not o.is_done
            and o.status != Status.STAGED
            and (client_id is None or o.client_id == client_id)
        ]

    def completed_orders(self) -> list[SimOrder]:
        done = [o for o in self.orders.values() if o.is_done]
        return sorted(done, key=lambda o: o.completed_ns)
