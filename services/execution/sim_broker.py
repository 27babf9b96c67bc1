"""In-process simulated broker: fills at the NEXT bar's open, moved by ``shared.costs``.

An order decided on bar *t* (``OrderRequest.not_before_ns`` = bar *t*'s close) is filled on the
first bar of its symbol that closes later, normally bar *t+1*:

* market: ``CostModel.fill_price(side, open)`` (the open moved against the trader by half the
  spread plus slippage);
* limit: buy at ``min(fill_price(BUY, open), limit)`` when the open is at or below the limit,
  at the limit when only the low reaches it (sells mirror this), otherwise it keeps working;
* stop (bracket stop-loss): triggered when the bar trades through the stop; filled at the cost
  model's price of the open when the bar gaps through it, else of the stop;
* commission: ``CostModel.commission(quantity, price)`` per fill. Fills are whole (no partials).

Bracket children (``<ref>-tp`` limit, ``<ref>-sl`` stop) start working on the bar after the
parent's fill and cancel each other (one-cancels-all).

State (cash, positions, orders, fills) lives in memory and, when ``state_file`` is given, in a JSON
file rewritten atomically after every change, so a restarted execution process finds the same
positions and knows every reference it sent. Execution ids are ``sim-<order_ref>``: unique
because a reference is never sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import msgspec

from execution.broker import (
    BrokerError,
    BrokerEvent,
    BrokerFill,
    BrokerPosition,
    ConnectionChange,
    OrderRequest,
    OrderUpdate,
    WorkingOrder,
)
from execution.input_guard import StateFileError, valid_price
from shared.costs import CostModel
from shared.logs import event
from shared.messages import Bar
from shared.validate import RefusalCounter, finite_mapping

log = logging.getLogger("execution.sim_broker")

SIM_ACCOUNT = "SIM0001"


class _SimOrder(msgspec.Struct, kw_only=True):
    order_ref: str
    symbol: str
    side: str
    quantity: int
    order_type: str  # MKT, LMT, STP
    limit_price: float | None = None
    stop_price: float | None = None
    not_before_ns: int = 0
    broker_order_id: str = ""
    status: str = "acknowledged"  # acknowledged (working), pending_parent, filled, cancelled ...
    parent_ref: str = ""
    oca: list[str] = []
    fill_price: float = 0.0


class _SimPosition(msgspec.Struct, kw_only=True):
    quantity: float = 0.0
    avg_cost: float = 0.0


class _SimState(msgspec.Struct, kw_only=True):
    cash: float
    created_ns: int = 0  # when this simulated account was opened (0: a state from before)
    next_id: int = 1
    orders: dict[str, _SimOrder] = {}
    positions: dict[str, _SimPosition] = {}
    fills: list[BrokerFill] = []
    last_price: dict[str, float] = {}


class SimBroker:
    """The ``Broker`` port in process (see the module docstring)."""

    name = "sim"

    def __init__(
        self,
        costs: CostModel | None = None,
        initial_cash: float = 100_000.0,
        state_file: str | Path | None = None,
        account: str = SIM_ACCOUNT,
        max_order_quantity: int = 1_000_000,
    ) -> None:
        self.costs = costs or CostModel()
        self.initial_cash = initial_cash
        self.state_file = Path(state_file) if state_file else None
        self._account = account
        self.max_order_quantity = max_order_quantity
        self.events: asyncio.Queue[BrokerEvent] = asyncio.Queue()
        self._state = self._load_state()
        self._connected = False
        self.reject_next: str = ""  # tests: the next order is rejected with this reason
        self.refusals = RefusalCounter()  # bars ignored for broken prices, per reason

    def _load_state(self) -> _SimState:
        """The saved state, or a fresh account; ``StateFileError`` names a file that is broken."""
        if self.state_file is None or not self.state_file.exists():
            return _SimState(cash=self.initial_cash, created_ns=time.time_ns())
        try:
            state = msgspec.json.decode(self.state_file.read_bytes(), type=_SimState)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StateFileError(
                f"{self.state_file}: simulated broker state does not load ({exc}); move it away"
                " to start a fresh simulated account"
            ) from None
        if not finite_mapping(msgspec.to_builtins(state)):
            raise StateFileError(f"{self.state_file}: simulated broker state holds NaN/inf")
        return state

    # ------------------------------------------------------------------ port: connection
    async def connect(self) -> None:
        self._connected = True
        self.events.put_nowait(ConnectionChange(connected=True, reason="simulated broker"))

    async def close(self) -> None:
        self._save()
        self._connected = False

    def is_connected(self) -> bool:
        return self._connected

    @property
    def account(self) -> str:
        return self._account

    def is_paper(self) -> bool:
        return True

    @property
    def account_key(self) -> str:
        """A fresh simulated account (no state file) is another account than the saved one."""
        return f"{self._account}:{self._state.created_ns}"

    # ------------------------------------------------------------------ port: state
    def positions(self) -> dict[str, BrokerPosition]:
        return {
            sym: BrokerPosition(
                symbol=sym, quantity=p.quantity, avg_cost=p.avg_cost, account=self._account
            )
            for sym, p in self._state.positions.items()
            if p.quantity != 0
        }

    def working_orders(self) -> list[WorkingOrder]:
        return [
            WorkingOrder(
                order_ref=o.order_ref,
                symbol=o.symbol,
                side=o.side,  # type: ignore[arg-type]
                quantity=o.quantity,
                remaining=o.quantity,
                order_type=o.order_type,
                broker_order_id=o.broker_order_id,
                is_child=bool(o.parent_ref),
            )
            for o in self._state.orders.values()
            if o.status in ("acknowledged", "pending_parent")
        ]

    def known_order_refs(self) -> set[str]:
        return set(self._state.orders)

    def equity(self) -> float:
        value = self._state.cash
        for sym, p in self._state.positions.items():
            value += p.quantity * self._state.last_price.get(sym, p.avg_cost)
        return value

    @property
    def cash(self) -> float:
        return self._state.cash

    # ------------------------------------------------------------------ port: orders
    async def place(self, order: OrderRequest) -> str:
        if not self._connected:
            raise BrokerError("simulated broker not connected")
        if order.order_ref in self._state.orders:
            raise BrokerError(f"duplicate order reference {order.order_ref}")
        broker_id = self._new_id()
        reason = self._validate(order)
        if reason:
            self._state.orders[order.order_ref] = _SimOrder(
                order_ref=order.order_ref,
                symbol=order.symbol,
                side=order.side,
                quantity=order.quantity,
                order_type=order.order_type,
                status="rejected",
                broker_order_id=broker_id,
            )
            self._save()
            self._emit_status(
                order.order_ref,
                order.symbol,
                "rejected",
                broker_id,
                remaining=order.quantity,
                code=201,
                reason=reason,
            )
            return broker_id
        if order.order_type == "BRACKET":
            self._place_bracket(order, broker_id)
        else:
            self._state.orders[order.order_ref] = _SimOrder(
                order_ref=order.order_ref,
                symbol=order.symbol,
                side=order.side,
                quantity=order.quantity,
                order_type=order.order_type,
                limit_price=order.limit_price,
                stop_price=order.stop_price,
                not_before_ns=order.not_before_ns,
                broker_order_id=broker_id,
            )
            self._emit_status(
                order.order_ref, order.symbol, "acknowledged", broker_id, remaining=order.quantity
            )
        self._save()
        return broker_id

    def _validate(self, order: OrderRequest) -> str:
        if self.reject_next:
            reason, self.reject_next = self.reject_next, ""
            return reason
        if order.quantity <= 0:
            return f"order quantity must be > 0, got {order.quantity}"
        if order.quantity > self.max_order_quantity:
            return f"order quantity {order.quantity} exceeds {self.max_order_quantity}"
        if order.order_type == "LMT" and not order.limit_price:
            return "limit order without a limit price"
        if order.order_type == "STP" and not order.stop_price:
            return "stop order without a stop price"
        if order.order_type == "BRACKET" and not (order.stop_loss and order.take_profit):
            return "bracket order needs stop_loss and take_profit"
        return ""

    def _place_bracket(self, order: OrderRequest, broker_id: str) -> None:
        exit_side = "SELL" if order.side == "BUY" else "BUY"
        tp_ref, sl_ref = f"{order.order_ref}-tp", f"{order.order_ref}-sl"
        orders = self._state.orders
        orders[order.order_ref] = _SimOrder(
            order_ref=order.order_ref,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            order_type="LMT" if order.limit_price else "MKT",
            limit_price=order.limit_price,
            not_before_ns=order.not_before_ns,
            broker_order_id=broker_id,
        )
        orders[tp_ref] = _SimOrder(
            order_ref=tp_ref,
            symbol=order.symbol,
            side=exit_side,
            quantity=order.quantity,
            order_type="LMT",
            limit_price=order.take_profit,
            broker_order_id=self._new_id(),
            status="pending_parent",
            parent_ref=order.order_ref,
            oca=[sl_ref],
        )
        orders[sl_ref] = _SimOrder(
            order_ref=sl_ref,
            symbol=order.symbol,
            side=exit_side,
            quantity=order.quantity,
            order_type="STP",
            stop_price=order.stop_loss,
            broker_order_id=self._new_id(),
            status="pending_parent",
            parent_ref=order.order_ref,
            oca=[tp_ref],
        )
        for ref in (order.order_ref, tp_ref, sl_ref):
            o = orders[ref]
            self._emit_status(
                ref, o.symbol, "acknowledged", o.broker_order_id, remaining=o.quantity
            )

    async def cancel(self, order_ref: str) -> bool:
        order = self._state.orders.get(order_ref)
        if order is None or order.status not in ("acknowledged", "pending_parent"):
            return False
        self._cancel(order, "cancelled on request")
        self._save()
        return True

    async def cancel_all(self) -> int:
        count = 0
        for order in list(self._state.orders.values()):
            if order.status in ("acknowledged", "pending_parent"):
                self._cancel(order, "cancel all")
                count += 1
        self._save()
        return count

    def _cancel(self, order: _SimOrder, reason: str) -> None:
        order.status = "cancelled"
        self._emit_status(
            order.order_ref,
            order.symbol,
            "cancelled",
            order.broker_order_id,
            remaining=order.quantity,
            reason=reason,
        )
        for child in self._state.orders.values():  # a cancelled parent takes its children along
            if child.parent_ref == order.order_ref and child.status == "pending_parent":
                self._cancel(child, f"parent {order.order_ref} cancelled")

    async def recover_fills(self, since_ns: int) -> list[BrokerFill]:
        return [
            msgspec.structs.replace(f, recovered=True)
            for f in self._state.fills
            if f.ts_ns >= since_ns
        ]

    # ------------------------------------------------------------------ market data
    def on_bar(self, bar: Bar) -> None:
        prices = (bar.open, bar.high, bar.low, bar.close)
        if not all(valid_price(p) for p in prices) or bar.high < bar.low:
            if self.refusals.add("sim_bar_prices"):
                event(log, "sim_bar_ignored", logging.WARNING, symbol=bar.symbol[:32])
            return  # a broken bar never sets a mark or a fill price
        self._state.last_price[bar.symbol] = bar.close
        changed = False
        for order in list(self._state.orders.values()):
            if (
                order.symbol != bar.symbol
                or order.status != "acknowledged"
                or bar.ts_event <= order.not_before_ns
            ):
                continue
            price = self._match(order, bar)
            if price is not None and valid_price(price):
                self._fill(order, price, bar.ts_event)
                changed = True
        if changed:
            self._save()

    def _match(self, order: _SimOrder, bar: Bar) -> float | None:
        side = 1 if order.side == "BUY" else -1
        costs = self.costs
        if order.order_type == "MKT":
            return costs.fill_price(side, bar.open)
        if order.order_type == "LMT":
            limit = float(order.limit_price or 0.0)
            if side > 0:
                if bar.open <= limit:
                    return min(costs.fill_price(side, bar.open), limit)
                return limit if bar.low <= limit else None
            if bar.open >= limit:
                return max(costs.fill_price(side, bar.open), limit)
            return limit if bar.high >= limit else None
        if order.order_type == "STP":
            stop = float(order.stop_price or 0.0)
            if side > 0:
                if bar.open >= stop:
                    return costs.fill_price(side, bar.open)
                return costs.fill_price(side, stop) if bar.high >= stop else None
            if bar.open <= stop:
                return costs.fill_price(side, bar.open)
            return costs.fill_price(side, stop) if bar.low <= stop else None
        return None

    def _fill(self, order: _SimOrder, price: float, ts_ns: int) -> None:
        qty = float(order.quantity)
        commission = self.costs.commission(qty, price)
        signed = qty if order.side == "BUY" else -qty
        self._state.cash -= signed * price + commission
        pos = self._state.positions.setdefault(order.symbol, _SimPosition())
        new_qty = pos.quantity + signed
        if new_qty == 0:
            pos.avg_cost = 0.0
        elif pos.quantity == 0 or (pos.quantity > 0) != (new_qty > 0):
            pos.avg_cost = price  # opened, or flipped through zero
        elif abs(new_qty) > abs(pos.quantity):
            pos.avg_cost = (pos.avg_cost * abs(pos.quantity) + price * qty) / abs(new_qty)
        pos.quantity = new_qty
        order.status = "filled"
        order.fill_price = price
        fill = BrokerFill(
            exec_id=f"sim-{order.order_ref}",
            order_ref=order.order_ref,
            symbol=order.symbol,
            side=order.side,  # type: ignore[arg-type]
            quantity=qty,
            price=price,
            commission=commission,
            account=self._account,
            ts_ns=ts_ns,
        )
        self._state.fills.append(fill)
        self.events.put_nowait(fill)
        self._emit_status(
            order.order_ref,
            order.symbol,
            "filled",
            order.broker_order_id,
            filled=qty,
            avg_price=price,
        )
        self.events.put_nowait(
            BrokerPosition(
                symbol=order.symbol,
                quantity=pos.quantity,
                avg_cost=pos.avg_cost,
                account=self._account,
            )
        )
        for other_ref in order.oca:  # one-cancels-all between bracket children
            other = self._state.orders.get(other_ref)
            if other is not None and other.status in ("acknowledged", "pending_parent"):
                self._cancel(other, f"OCA: {order.order_ref} filled")
        for child in self._state.orders.values():  # activate the children from the next bar
            if child.parent_ref == order.order_ref and child.status == "pending_parent":
                child.status = "acknowledged"
                child.not_before_ns = ts_ns

    # ------------------------------------------------------------------ helpers
    def _new_id(self) -> str:
        value = self._state.next_id
        self._state.next_id += 1
        return str(value)

    def _emit_status(
        self,
        ref: str,
        symbol: str,
        status: str,
        broker_id: str,
        *,
        filled: float = 0.0,
        remaining: float = 0.0,
        avg_price: float = 0.0,
        code: int = 0,
        reason: str = "",
    ) -> None:
        self.events.put_nowait(
            OrderUpdate(
                order_ref=ref,
                symbol=symbol,
                status=status,  # type: ignore[arg-type]
                broker_order_id=broker_id,
                filled=filled,
                remaining=remaining,
                avg_fill_price=avg_price,
                error_code=code,
                reason=reason,
                ts_ns=time.time_ns(),
            )
        )

    def _save(self) -> None:
        if self.state_file is None:
            return
        if not finite_mapping(msgspec.to_builtins(self._state)):  # JSON would hold null: unloadable
            event(log, "sim_state_not_saved", logging.ERROR, reason="non-finite number in state")
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        tmp.write_bytes(msgspec.json.encode(self._state))
        os.replace(tmp, self.state_file)
