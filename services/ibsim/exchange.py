"""The simulated broker: order book, matching against bars, account, positions, execution record.

Pure state machine, no I/O except the journal: the server feeds it requests and bars and it
reports every change to its ``listener`` (which turns them into API messages for the right client).

Matching rules (one bar at a time, per symbol; only orders working BEFORE the bar arrived take part,
so nothing fills on a bar the order could not have seen):
- MKT fills at the bar's open, moved against the trader by ``slippage_bps``.
- LMT buy fills at the open if the open is at or below the limit (price improvement on a gap),
  else at the limit if the bar's low reaches it; sells mirror this.
- STP buy triggers at the open if the open is at or above the stop, else at the stop if the high
  reaches it, and fills there plus slippage (it becomes a market order); sells mirror this.
- When one bar triggers several orders, fills at the open come first; among intrabar fills stops
  come before limits (the conservative reading of an OHLC bar: the loss is taken first).
- Bracket children wait (PreSubmitted) until the parent is completely filled and work from the
  next bar on. Children of one parent, and orders sharing an ``ocaGroup``, are one-cancels-all:
  a fill reduces the siblings by the filled quantity (IB's bracket behaviour, OCA types 2/3) and
  cancels them once nothing remains; OCA type 1 cancels the siblings on the first fill.
- Account: Reg T margin, initial 50% / maintenance 25% of gross position value; an order that would
  raise the initial margin above the net liquidation value is rejected with error 201, as IB does.
  BuyingPower is 2 x AvailableFunds (Reg T overnight).

The price rules are ``ibsim.matching``; the orders' indexes ``ibsim.order_book``; cash, positions
and account values ``ibsim.account_book``.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Iterable

from ibsim.account_book import QTY_EPS, AccountBook
from ibsim.bars import NS, BarStore
from ibsim.commissions import CommissionSchedule
from ibsim.config import IbsimSettings
from ibsim.contracts import ContractRegistry
from ibsim.exchange_listener import ExchangeListener, NullListener
from ibsim.execution_filter import matching_executions
from ibsim.faults import FaultSwitches
from ibsim.journal import ExecutionJournal
from ibsim.matching import fill_price
from ibsim.models import (
    AccountSnapshot,
    ExecutionFilterQuery,
    ExecutionRecord,
    OrderRequest,
    PositionState,
    SimOrder,
    SourceBar,
    Status,
    StockContract,
)
from ibsim.order_book import OrderBook
from ibsim.order_checks import order_problem
from shared.logs import event

log = logging.getLogger("ibsim.exchange")

# IB error codes and texts used for orders
NO_SECURITY_DEFINITION = (200, "No security definition has been found for the request")
ORDER_CANCELED = (202, "Order Canceled - reason:")
DUPLICATE_ORDER_ID = (103, "Duplicate order id")
CANCEL_NOT_FOUND = 10147
CANCEL_NOT_CANCELLABLE = 10148
VALIDATION_WARNING = 321


class Exchange:
    def __init__(
        self,
        settings: IbsimSettings,
        contracts: ContractRegistry,
        journal: ExecutionJournal,
        faults: FaultSwitches,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.settings = settings
        self.account = settings.account
        self.contracts = contracts
        self.journal = journal
        self.faults = faults
        self.clock = clock
        self.listener: ExchangeListener = NullListener()
        self.commissions = CommissionSchedule(
            settings.commission_per_share, settings.commission_min, settings.commission_max_pct
        )
        self.bars = BarStore(settings.hist_max_bars_per_symbol)
        self._slippage = settings.slippage_bps / 10_000.0
        self._exec_prefix = f"{zlib.crc32(self.account.encode()) & 0xFFFF:04x}"
        self._reset_state()
        for record in journal.load():
            self._replay(record)
        if self.executions:
            event(log, "journal_loaded", executions=len(self.executions), cash=round(self.cash, 2))

    # ----------------------------------------------------------------- state
    def _reset_state(self) -> None:
        self.order_book = OrderBook()
        self.account_book = AccountBook(self.settings.initial_cash)
        self.executions: list[ExecutionRecord] = []
        self._max_order_id: dict[int, int] = {}  # clientId -> highest orderId seen

    @property
    def orders(self) -> dict[int, SimOrder]:
        """permId -> order, in arrival order."""
        return self.order_book.orders

    @property
    def positions(self) -> dict[str, PositionState]:
        return self.account_book.positions

    @property
    def cash(self) -> float:
        return self.account_book.cash

    @property
    def last_price(self) -> dict[str, float]:
        return self.account_book.last_price

    def reset(self) -> None:
        """Forget orders, executions (on disk too), positions and bars; cash back to initial."""
        self.journal.clear()
        self.bars.clear()
        self._reset_state()
        event(log, "reset")

    def _replay(self, record: ExecutionRecord) -> None:
        """Rebuild positions and cash from a journalled execution (simulator restart)."""
        self.contracts.add(record.symbol)
        signed = record.shares if record.side == "BOT" else -record.shares
        self.account_book.apply_fill(record.symbol, signed, record.price, record.commission)
        self.last_price.setdefault(record.symbol, record.price)
        self.executions.append(record)
        self._note_order_id(record.client_id, record.order_id)

    def _note_order_id(self, client_id: int, order_id: int) -> None:
        if order_id > self._max_order_id.get(client_id, 0):
            self._max_order_id[client_id] = order_id

    def next_valid_id(self, client_id: int) -> int:
        return self._max_order_id.get(client_id, 0) + 1

    # ---------------------------------------------------------------- orders
    def place_order(self, client_id: int, request: OrderRequest) -> SimOrder | None:
        """Accept, modify or reject an order; every outcome is reported to the listener."""
        self._note_order_id(client_id, request.order_id)
        existing = self.order_book.find(client_id, request.order_id)
        if existing is not None:
            if existing.is_done:
                self.listener.request_error(client_id, request.order_id, *DUPLICATE_ORDER_ID)
                return None
            self._modify(existing, request)
            return existing

        contract = self.contracts.resolve(request.contract)
        order = self._new_order(client_id, request, contract)
        if contract is None:
            # IB answers an unknown contract with the error alone, no order status
            self._reject(order, *NO_SECURITY_DEFINITION, send_status=False)
            return order
        problem = order_problem(
            order, request, self.account, self.order_book, self.account_book, self.faults
        )
        if problem is not None:
            self._reject(order, *problem)
            return order
        if not request.transmit:
            return order  # staged: TWS holds it and the API hears nothing until transmitted
        for member in self.order_book.staged_family(order):
            self._transmit(member)
        return order

    def _new_order(
        self, client_id: int, request: OrderRequest, contract: StockContract | None
    ) -> SimOrder:
        symbol = (request.contract.symbol or request.contract.local_symbol).upper()
        order = SimOrder(
            perm_id=self.journal.next_perm_id(),
            client_id=client_id,
            order_id=request.order_id,
            contract=contract or StockContract(0, symbol, "", "", ""),
            action=request.action.upper(),
            total_qty=request.total_qty,
            order_type=request.order_type.upper(),
            lmt_price=request.lmt_price,
            aux_price=request.aux_price,
            tif=request.tif or "DAY",
            oca_group=request.oca_group,
            oca_type=request.oca_type,
            order_ref=request.order_ref,
            account=request.account or self.account,
            parent_id=request.parent_id,
            transmit=request.transmit,
            outside_rth=request.outside_rth,
            received_ns=self.clock(),
        )
        self.order_book.add(order)
        return order

    def _reject(self, order: SimOrder, code: int, text: str, send_status: bool = True) -> None:
        order.reject_code = code
        order.reject_reason = text
        order.done_reason = text
        event(
            log,
            "order_rejected",
            perm_id=order.perm_id,
            order_ref=order.order_ref,
            code=code,
            reason=text,
        )
        # The error goes first so the client learns why before it sees the order end.
        self.listener.request_error(order.client_id, order.order_id, code, text)
        self._set_status(order, Status.CANCELLED)
        if send_status:
            self.listener.order_changed(order, open_order=False)
        for child in self.order_book.children(order):
            if not child.is_done:
                self._cancel(child, notify_error=False, why="Cancelled by System")

    def _transmit(self, order: SimOrder) -> None:
        parent = self.order_book.parent_of(order)
        if parent is not None and parent.status != Status.FILLED:
            self._set_status(order, Status.PRE_SUBMITTED)  # held until the parent fills
        else:
            self._set_status(order, Status.SUBMITTED)
        event(
            log,
            "order_accepted",
            perm_id=order.perm_id,
            client_id=order.client_id,
            order_id=order.order_id,
            order_ref=order.order_ref,
            symbol=order.contract.symbol,
            action=order.action,
            qty=order.total_qty,
            type=order.order_type,
            status=order.status,
        )
        self.listener.order_changed(order, open_order=True)

    def _modify(self, order: SimOrder, request: OrderRequest) -> None:
        if request.total_qty < order.filled_qty - QTY_EPS or request.total_qty <= 0:
            self.listener.request_error(
                order.client_id,
                order.order_id,
                VALIDATION_WARNING,
                "Error validating request:-'bW' : cause - The order quantity cannot be below "
                "the filled quantity",
            )
            return
        order.total_qty = request.total_qty
        if request.lmt_price is not None:
            order.lmt_price = request.lmt_price
        if request.aux_price is not None:
            order.aux_price = request.aux_price
        order.order_ref = request.order_ref or order.order_ref
        order.tif = request.tif or order.tif
        event(
            log,
            "order_modified",
            perm_id=order.perm_id,
            qty=order.total_qty,
            lmt=order.lmt_price,
            aux=order.aux_price,
        )
        if order.status == Status.STAGED:
            if request.transmit:
                for member in self.order_book.staged_family(order):
                    self._transmit(member)
            return
        if order.remaining <= QTY_EPS:
            self._set_status(order, Status.FILLED)
        self.listener.order_changed(order, open_order=True)

    def cancel_order(self, client_id: int, order_id: int) -> None:
        order = self.order_book.find(client_id, order_id)
        if order is None:
            self.listener.request_error(
                client_id,
                order_id,
                CANCEL_NOT_FOUND,
                f"OrderId {order_id} that needs to be cancelled is not found.",
            )
        elif order.is_done:
            self.listener.request_error(
                client_id,
                order_id,
                CANCEL_NOT_CANCELLABLE,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {order.status}.",
            )
        else:
            self._cancel(order, notify_error=True)

    def cancel_all(self) -> None:
        """reqGlobalCancel: every open order of every client."""
        for order in list(self.orders.values()):
            if not order.is_done:
                self._cancel(order, notify_error=True)

    def _cancel(
        self, order: SimOrder, notify_error: bool, why: str = "Cancelled by Trader"
    ) -> None:
        was_staged = order.status == Status.STAGED
        order.done_reason = why
        self._set_status(order, Status.CANCELLED)
        event(
            log,
            "order_cancelled",
            perm_id=order.perm_id,
            order_ref=order.order_ref,
            filled=order.filled_qty,
        )
        self.listener.order_changed(order, open_order=False)
        if notify_error and not was_staged:
            self.listener.request_error(order.client_id, order.order_id, *ORDER_CANCELED)
        for child in self.order_book.children(order):
            if not child.is_done:
                self._cancel(child, notify_error=notify_error, why="Cancelled by System")

    def _set_status(self, order: SimOrder, status: str) -> None:
        order.status = status
        self.order_book.status_changed(order)
        if status in Status.DONE and not order.completed_ns:
            order.completed_ns = self.clock()

    # -------------------------------------------------------------- matching
    def on_bar(
        self,
        symbol: str,
        ts: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        bar_open_ts: int | None = None,
        published_ns: int | None = None,
    ) -> int:
        """Feed one bar (``ts`` = its close, ns UTC); returns the number of executions.

        ``published_ns``: when the bar was made public (the bus message's ``ts_publish``, on
        this host's clock like ``received_ns``). An order received at or after that moment was
        placed by someone who had seen the bar, so it cannot trade at that bar's prices: it
        waits for the next bar even when this bar reaches the simulator after the order (the
        bus price source races the order path under load). None (the simulator's own replay,
        a test's programmatic bar): every working order may fill."""
        symbol = symbol.upper()
        prices = (open, high, low, close)
        if not all(math.isfinite(p) and p > 0 for p in prices) or not volume >= 0:
            raise ValueError(f"bar {symbol}@{ts}: prices must be positive and finite")
        if high < max(open, close, low) or low > min(open, close):
            raise ValueError(f"bar {symbol}@{ts}: high/low do not contain open/close")
        if bar_open_ts is None:
            bar_open_ts = ts - self.settings.default_bar_seconds * NS
        if bar_open_ts >= ts:
            raise ValueError(f"bar {symbol}@{ts}: opens at {bar_open_ts}, after its close")
        self.contracts.add(symbol)
        bar = SourceBar(symbol, bar_open_ts, ts, open, high, low, close, volume)
        self.bars.add(bar)
        self.last_price[symbol] = close
        fills = self._match(bar, published_ns)
        self.listener.bar_added(bar)
        position = self.positions.get(symbol)
        if position is not None and position.quantity != 0:
            self.listener.portfolio_changed(symbol, traded=False)
        return fills

    def _match(self, bar: SourceBar, published_ns: int | None = None) -> int:
        candidates: list[tuple[tuple[int, int, int], SimOrder, float]] = []
        for order in self.order_book.working(bar.symbol):
            if published_ns is not None and order.received_ns >= published_ns:
                continue  # placed after this bar was public: it trades from the next bar on
            fill = fill_price(order, bar, self._slippage)
            if fill is not None:
                price, intrabar = fill
                stop_first = 0 if order.order_type == "STP" else 1
                candidates.append(((intrabar, stop_first, order.perm_id), order, price))
        candidates.sort(key=lambda c: c[0])
        fills = 0
        for _, order, price in candidates:
            if order.is_working:  # an earlier fill in this bar may have cancelled it (OCA)
                self._execute(order, price, bar)
                fills += 1
        return fills

    def _execute(self, order: SimOrder, price: float, bar: SourceBar) -> None:
        quantity = self.faults.fill_quantity(order.total_qty, order.remaining)
        cum_qty = order.filled_qty + quantity
        cum_value = order.avg_fill_price * order.filled_qty + price * quantity
        commission = self.commissions.for_execution(cum_qty, cum_value, order.commission_paid)
        signed = quantity if order.is_buy else -quantity
        realized = self.account_book.apply_fill(order.contract.symbol, signed, price, commission)
        order.filled_qty = cum_qty
        order.avg_fill_price = cum_value / cum_qty
        order.last_fill_price = price
        order.commission_paid += commission
        order.fill_count += 1
        if order.remaining <= QTY_EPS:
            order.done_reason = "Filled"
            self._set_status(order, Status.FILLED)
        now = self.clock()
        record = ExecutionRecord(
            exec_id=(
                f"{self._exec_prefix}{self.journal.session}"
                f".{order.perm_id:08x}.{order.fill_count:02d}.01"
            ),
            perm_id=order.perm_id,
            order_id=order.order_id,
            client_id=order.client_id,
            order_ref=order.order_ref,
            account=order.account,
            symbol=order.contract.symbol,
            con_id=order.contract.con_id,
            side="BOT" if order.is_buy else "SLD",
            shares=quantity,
            price=price,
            cum_qty=cum_qty,
            avg_price=order.avg_fill_price,
            commission=commission,
            realized_pnl=realized,
            time_ns=now,
            bar_ts_ns=bar.close_ts,
            venue=order.contract.venue,
        )
        self.executions.append(record)
        self.journal.append(record)
        event(
            log,
            "execution",
            exec_id=record.exec_id,
            order_ref=record.order_ref,
            symbol=record.symbol,
            side=record.side,
            qty=quantity,
            price=price,
            commission=commission,
            status=order.status,
        )
        self.listener.executed(order, record)
        self._after_fill(order, quantity)
        self.listener.portfolio_changed(order.contract.symbol, traded=True)

    def _after_fill(self, order: SimOrder, quantity: float) -> None:
        if order.status == Status.FILLED:
            for child in self.order_book.children(order):
                if child.status == Status.PRE_SUBMITTED:
                    self._set_status(child, Status.SUBMITTED)
                    self.listener.order_changed(child, open_order=True)
        siblings = self.order_book.oca_siblings(order)
        cancel_all = not order.parent_id and order.oca_type == 1
        for sibling in siblings:
            if cancel_all:
                self._cancel(sibling, notify_error=False, why="Cancelled by System (OCA)")
                continue
            sibling.total_qty = max(sibling.filled_qty, sibling.total_qty - quantity)
            if sibling.remaining <= QTY_EPS:
                self._cancel(sibling, notify_error=False, why="Cancelled by System (OCA)")
            else:
                self.listener.order_changed(sibling, open_order=True)

    # --------------------------------------------------------------- account
    def mark(self, symbol: str) -> float:
        return self.account_book.mark(symbol)

    def account_snapshot(self) -> AccountSnapshot:
        return self.account_book.snapshot()

    def open_positions(self) -> list[tuple[StockContract, PositionState]]:
        out = []
        for symbol, position in self.positions.items():
            contract = self.contracts.get(symbol)
            if contract is not None and position.quantity != 0:
                out.append((contract, position))
        return out

    # --------------------------------------------------------------- queries
    def open_orders(self, client_id: int | None = None) -> list[SimOrder]:
        """Transmitted, not yet done orders (of one client, or all)."""
        return self.order_book.open_orders(client_id)

    def completed_orders(self) -> list[SimOrder]:
        return self.order_book.completed_orders()

    def find_executions(
        self, query: ExecutionFilterQuery, visible_clients: Iterable[int] | None
    ) -> list[ExecutionRecord]:
        """reqExecutions: records matching the filter; ``visible_clients`` None = all clients."""
        return matching_executions(self.executions, query, visible_clients)

    def find_order(self, client_id: int, order_id: int) -> SimOrder | None:
        return self.order_book.find(client_id, order_id)
