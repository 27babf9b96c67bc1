"""Interactive Brokers behind the ``Broker`` port, with ``ib_async`` (TWS, IB Gateway or ``ibsim``).

What it does about IB's known pains:

* Lost fills across a disconnect: on every (re)connect ``ib_async`` re-synchronises positions, open
  and completed orders and executions, and ``recover_fills`` re-requests the executions since the
  last known one (``ExecutionFilter.time``); the service publishes each ``exec_id`` once.
* Duplicated orders after a restart: every order carries the deterministic reference as
  ``orderRef``; ``known_order_refs`` holds the references of every open and completed order the
  gateway reported (and every order this process placed), which the service checks before sending.
* Silent rejections: ib_async marks a rejected order ``Cancelled`` and keeps the error in the
  trade's log; this adapter reports it as ``rejected`` with the IB code and reason (202, "order
  cancelled", stays a cancel).
* Reconnect: a dropped connection is retried with exponential backoff (``reconnect_min_s`` doubling
  up to ``reconnect_max_s``); positions and account updates are subscribed again by the connect.

Paper or live: IB paper account ids start with ``DU`` (``DF`` for advisor paper accounts). Any other
id is treated as live; the service then refuses to trade unless explicitly confirmed. The
``AccountType`` account value is logged for the record but never taken as proof of paper.

Fills are reported once their commission report arrived, never with a commission of 0 standing in
for a missing report: after ``commission_wait_s`` without it the adapter logs ``commission_late``,
re-requests the executions (IB answers each with its commission report) and checks again with a
growing interval (at most a minute), so a late report is booked when it arrives and a lost one is
fetched again. ``recover_fills`` likewise leaves out an execution whose report has not come yet; the
same wait takes it over.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import re
import time
from typing import Any

from ib_async import (
    IB,
    Contract,
    ExecutionFilter,
    LimitOrder,
    MarketOrder,
    Order,
    OrderStatus,
    Stock,
    StopOrder,
    Trade,
)
from ib_async import Fill as IBFill
from ib_async import Position as IBPosition
from ib_async.objects import CommissionReport

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
from shared.logs import event
from shared.messages import Bar
from shared.paper_config import IBConnection

log = logging.getLogger("execution.ib")

PAPER_PREFIXES = ("DU", "DF")
ORDER_CANCELLED_CODE = 202
# ib_async's warning codes: the order is still live after them
WARNING_CODES = frozenset({105, 110, 165, 321, 329, 399, 404, 434, 492, 10167})
_ERROR_PREFIX = re.compile(r"^(Error|Warning) \d+, reqId -?\d+: ")


def _trade_key(trade: Trade) -> tuple[int, int]:
    """How ib_async itself keys trades: (client id, order id)."""
    return (trade.order.clientId, trade.order.orderId)


def is_paper_account(account: str) -> bool:
    return account.upper().startswith(PAPER_PREFIXES)


def _ns(moment: Any) -> int:
    if isinstance(moment, dt.datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1e9)
    return time.time_ns()


def _rejection(trade: Trade) -> tuple[int, str] | None:
    """The error that ended the trade, if an error did (not a plain cancel)."""
    for entry in reversed(trade.log):
        code = int(entry.errorCode or 0)
        if code and code != ORDER_CANCELLED_CODE and code not in WARNING_CODES:
            message = entry.message.split(", contract:", 1)[0]
            return code, _ERROR_PREFIX.sub("", message)
    return None


class IBBroker:
    """The ``Broker`` port over ``ib_async`` (see the module docstring)."""

    name = "ib"

    def __init__(
        self,
        connection: IBConnection,
        symbols: tuple[str, ...] | list[str] = (),
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        commission_wait_s: float = 2.0,
        ib: IB | None = None,
    ) -> None:
        self.conn = connection
        self.symbols = tuple(symbols)
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.commission_wait_s = commission_wait_s
        self.ib = ib or IB()
        if not log.isEnabledFor(logging.DEBUG):  # ib_async logs every status change at INFO
            logging.getLogger("ib_async").setLevel(logging.WARNING)
        self.events: asyncio.Queue[BrokerEvent] = asyncio.Queue()
        self._account = ""
        self._contracts: dict[str, Contract] = {}
        self._known_refs: set[str] = set()
        # Orders not yet done, kept from order events: ib_async's openTrades() scans every trade
        # of the session, which made each signal's cost grow with the number of orders sent.
        self._open: dict[tuple[int, int], Trade] = {}
        self._pending_fills: dict[str, asyncio.TimerHandle] = {}
        self._reported_fills: set[str] = set()
        # Every filled share of our own orders must be in exactly one place the service sees:
        # a working order, a position report, or a booked fill. IB says "Filled" at once, but a
        # fill is handed over only with its commission report, and a position report may come
        # before or after it. So per order reference we count the *accounted* shares (of
        # executions handed over as fills or covered by a later position report of the symbol);
        # filled shares not accounted yet still count as working (done orders of this session
        # are kept in ``_unbooked`` for that), or a decision in the gap would order them again.
        self._placed_refs: set[str] = set()
        self._accounted_shares: dict[str, float] = {}
        self._accounted_execs: set[str] = set()
        self._positioned_execs: set[str] = set()  # covered by a position report
        self._unpositioned: dict[str, dict[str, tuple[str, float]]] = {}  # symbol -> exec
        self._unbooked: dict[tuple[int, int], Trade] = {}
        self._commission_attempts: dict[str, int] = {}
        self._commission_tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._syncing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._wire()

    def _wire(self) -> None:
        ib = self.ib
        ib.orderStatusEvent += self._on_status
        ib.openOrderEvent += self._on_open_order
        ib.execDetailsEvent += self._on_exec
        ib.commissionReportEvent += self._on_commission
        ib.positionEvent += self._on_position
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected

    # ================================================================== connection
    async def connect(self) -> None:
        """One connection attempt (the service retries the first one; drops are retried here)."""
        self._closing = False
        self._syncing = True  # fills reported while ib_async synchronises are recovered ones
        try:
            await self._connect_and_sync()
        finally:
            self._syncing = False
        if not self.ib.isConnected():
            raise BrokerError("connection to IB lost while synchronising")
        self.events.put_nowait(ConnectionChange(connected=True, reason=f"account {self._account}"))

    async def _connect_and_sync(self) -> None:
        try:
            await self.ib.connectAsync(
                self.conn.host,
                self.conn.port,
                self.conn.client_id,
                timeout=self.conn.connect_timeout_s,
                account=self.conn.account,
            )
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise BrokerError(
                f"cannot connect to IB at {self.conn.host}:{self.conn.port}"
                f" (clientId {self.conn.client_id}): {exc!r}"
            ) from None
        accounts = self.ib.managedAccounts()
        if self.conn.account:
            if self.conn.account not in accounts:
                self.ib.disconnect()
                raise BrokerError(
                    f"account {self.conn.account} is not managed by this login"
                    f" (managed: {accounts})"
                )
            account = self.conn.account
        elif len(accounts) == 1:
            account = accounts[0]
        else:
            self.ib.disconnect()
            raise BrokerError(f"the login manages {accounts}: set ib.account in the paper config")
        self._account = account
        self._open = {_trade_key(t): t for t in self.ib.openTrades()}
        for trade in self.ib.trades():
            if trade.order.orderRef:
                self._known_refs.add(trade.order.orderRef)
                if trade.orderStatus.status in ("Filled", "Cancelled", "ApiCancelled", "Inactive"):
                    self._on_status(trade)  # completed while we were away: final state
        await self._qualify(self.symbols)
        account_type = next(
            (v.value for v in self.ib.accountValues(account) if v.tag == "AccountType"), ""
        )
        event(
            log,
            "ib_connected",
            host=self.conn.host,
            port=self.conn.port,
            client_id=self.conn.client_id,
            account=account,
            paper=self.is_paper(),
            account_type=account_type,
            server_version=self.ib.client.serverVersion(),
            open_orders=len(self._open),
            known_refs=len(self._known_refs),
        )

    async def close(self) -> None:
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        for handle in self._pending_fills.values():
            handle.cancel()
        for task in list(self._commission_tasks):
            task.cancel()
        if self.ib.isConnected():
            self.ib.disconnect()

    def is_connected(self) -> bool:
        return bool(self._account) and self.ib.isConnected()

    @property
    def account(self) -> str:
        return self._account

    @property
    def account_key(self) -> str:
        return self._account

    def is_paper(self) -> bool:
        return is_paper_account(self._account)

    def _on_disconnected(self) -> None:
        if self._closing or self._syncing:
            return  # closing for good, or a failed connect attempt (its caller retries)
        event(log, "ib_disconnected", logging.WARNING, host=self.conn.host, port=self.conn.port)
        self.events.put_nowait(ConnectionChange(connected=False, reason="connection lost"))
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = self.reconnect_min_s
        attempt = 0
        while not self._closing and not self.ib.isConnected():
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self.connect()
                event(log, "ib_reconnected", attempts=attempt)
                return
            except BrokerError as exc:
                event(
                    log,
                    "ib_reconnect_failed",
                    logging.WARNING,
                    attempt=attempt,
                    error=str(exc)[:300],
                    retry_in_s=min(delay * 2, self.reconnect_max_s),
                )
                delay = min(delay * 2, self.reconnect_max_s)

    # ================================================================== state
    def positions(self) -> dict[str, BrokerPosition]:
        if not self._account:
            return {}
        out: dict[str, BrokerPosition] = {}
        for p in self.ib.positions(self._account):
            if p.position:
                out[p.contract.symbol] = BrokerPosition(
                    symbol=p.contract.symbol,
                    quantity=float(p.position),
                    avg_cost=float(p.avgCost),
                    account=p.account,
                )
        return out

    def _track(self, trade: Trade) -> None:
        key = _trade_key(trade)
        if trade.orderStatus.status in OrderStatus.DoneStates:
            self._open.pop(key, None)
            if self._unreported_shares(trade) > 0:
                self._unbooked[key] = trade
            else:
                self._unbooked.pop(key, None)
        else:
            self._open[key] = trade

    def _unreported_shares(self, trade: Trade) -> float:
        """Filled shares of one of this session's orders that neither a handed-over fill nor a
        position report accounts for yet."""
        ref = trade.order.orderRef
        if not ref or ref not in self._placed_refs:
            return 0.0
        return max(0.0, float(trade.orderStatus.filled) - self._accounted_shares.get(ref, 0.0))

    def _mark_accounted(self, exec_id: str, order_ref: str, shares: float) -> None:
        """An execution is now visible to the service (handed over, or inside a position
        report); counted once, however many times it is seen."""
        self._unpositioned_drop(exec_id)
        if order_ref not in self._placed_refs or exec_id in self._accounted_execs:
            return
        self._accounted_execs.add(exec_id)
        self._accounted_shares[order_ref] = self._accounted_shares.get(order_ref, 0.0) + shares
        for key, trade in list(self._unbooked.items()):
            if trade.order.orderRef == order_ref and self._unreported_shares(trade) <= 0:
                del self._unbooked[key]

    def _unpositioned_drop(self, exec_id: str) -> None:
        for execs in self._unpositioned.values():
            execs.pop(exec_id, None)

    def _open_trades(self) -> list[Trade]:
        return [
            t for t in self._open.values() if t.orderStatus.status not in OrderStatus.DoneStates
        ]

    def working_orders(self) -> list[WorkingOrder]:
        """Orders still working at IB (``remaining``: unfilled shares plus filled shares not yet
        handed over as fills), then done orders whose fills are not all handed over yet (only
        those shares, counted like a parent order: they are position the book does not have)."""
        out = []
        for trade in self._open_trades():
            order = trade.order
            if not order.orderRef:
                continue
            total = float(order.totalQuantity)
            remaining = max(0.0, total - float(trade.orderStatus.filled))
            remaining += self._unreported_shares(trade)
            out.append(self._working(trade, total, remaining, child=None))
        for trade in self._unbooked.values():
            shares = self._unreported_shares(trade)
            if shares > 0:
                out.append(self._working(trade, float(trade.order.totalQuantity), shares, False))
        return out

    @staticmethod
    def _working(trade: Trade, total: float, remaining: float, child: bool | None) -> WorkingOrder:
        order = trade.order
        return WorkingOrder(
            order_ref=order.orderRef,
            symbol=trade.contract.symbol,
            side="BUY" if order.action == "BUY" else "SELL",
            quantity=total,
            remaining=remaining,
            order_type=order.orderType,
            broker_order_id=str(order.orderId),
            is_child=(
                bool(order.parentId) or order.orderRef.endswith(("-tp", "-sl"))
                if child is None
                else child
            ),
        )

    def known_order_refs(self) -> set[str]:
        return self._known_refs

    def equity(self) -> float | None:
        for value in self.ib.accountValues(self._account):
            if value.tag == "NetLiquidation" and value.currency in ("USD", "BASE", ""):
                try:
                    return float(value.value)
                except ValueError:
                    return None
        return None

    def on_bar(self, bar: Bar) -> None:
        """IB prices its own fills; bars from the bus are not needed here."""

    # ================================================================== orders
    async def _qualify(self, symbols: tuple[str, ...] | list[str]) -> None:
        missing = [s for s in symbols if s not in self._contracts]
        if not missing:
            return
        contracts = [Stock(s, self.conn.exchange, self.conn.currency) for s in missing]
        try:
            results = await self.ib.qualifyContractsAsync(*contracts)
        except (ConnectionError, OSError) as exc:
            raise BrokerError(f"contract qualification failed: {exc!r}") from None
        for symbol, contract in zip(missing, results, strict=True):
            if isinstance(contract, Contract) and contract.conId:
                self._contracts[symbol] = contract
            else:
                event(log, "contract_not_found", logging.ERROR, symbol=symbol)

    async def _contract(self, symbol: str) -> Contract:
        if symbol not in self._contracts:
            await self._qualify([symbol])
        contract = self._contracts.get(symbol)
        if contract is None:
            raise BrokerError(
                f"IB has no unique stock contract for {symbol!r}"
                f" on {self.conn.exchange}/{self.conn.currency}"
            )
        return contract

    def _stamp(self, order: Order, ref: str) -> Order:
        order.orderRef = ref
        order.account = self._account
        order.tif = "DAY"
        return order

    async def place(self, order: OrderRequest) -> str:
        if not self.is_connected():
            raise BrokerError("not connected to IB")
        contract = await self._contract(order.symbol)
        if not self.is_connected():
            raise BrokerError("connection to IB lost while qualifying the contract")
        side, qty = order.side, float(order.quantity)
        orders: list[Order]
        if order.order_type == "BRACKET":
            if order.stop_loss is None or order.take_profit is None:
                raise BrokerError("bracket order needs stop_loss and take_profit")
            exit_side = "SELL" if side == "BUY" else "BUY"
            client = self.ib.client
            parent: Order = (
                LimitOrder(side, qty, order.limit_price)
                if order.limit_price
                else MarketOrder(side, qty)
            )
            parent.orderId = client.getReqId()
            parent.transmit = False
            take = LimitOrder(
                exit_side,
                qty,
                order.take_profit,
                orderId=client.getReqId(),
                transmit=False,
                parentId=parent.orderId,
            )
            stop = StopOrder(
                exit_side,
                qty,
                order.stop_loss,
                orderId=client.getReqId(),
                transmit=True,
                parentId=parent.orderId,
            )
            orders = [
                self._stamp(parent, order.order_ref),
                self._stamp(take, f"{order.order_ref}-tp"),
                self._stamp(stop, f"{order.order_ref}-sl"),
            ]
        elif order.order_type == "LMT":
            if not order.limit_price:
                raise BrokerError("limit order without a limit price")
            orders = [self._stamp(LimitOrder(side, qty, order.limit_price), order.order_ref)]
        elif order.order_type == "STP":
            if not order.stop_price:
                raise BrokerError("stop order without a stop price")
            orders = [self._stamp(StopOrder(side, qty, order.stop_price), order.order_ref)]
        else:
            orders = [self._stamp(MarketOrder(side, qty), order.order_ref)]
        for ib_order in orders:
            self._known_refs.add(ib_order.orderRef)
            self._placed_refs.add(ib_order.orderRef)
            self._track(self.ib.placeOrder(contract, ib_order))
        return str(orders[0].orderId)

    def _open_trades_by_ref(self) -> dict[str, Trade]:
        return {t.order.orderRef: t for t in self._open_trades() if t.order.orderRef}

    async def cancel(self, order_ref: str) -> bool:
        trade = self._open_trades_by_ref().get(order_ref)
        if trade is None or not self.is_connected():
            return False
        self.ib.cancelOrder(trade.order)
        return True

    async def cancel_all(self) -> int:
        if not self.is_connected():
            return 0
        trades = list(self._open_trades_by_ref().values())
        for trade in trades:
            self.ib.cancelOrder(trade.order)
        return len(trades)

    async def recover_fills(self, since_ns: int) -> list[BrokerFill]:
        """Executions since ``since_ns`` (UTC), with their commission reports."""
        if not self.is_connected():
            raise BrokerError("not connected to IB")
        stamp = ""
        if since_ns > 0:
            stamp = dt.datetime.fromtimestamp(since_ns / 1e9, dt.UTC).strftime("%Y%m%d-%H:%M:%S")
        try:
            fills = await asyncio.wait_for(
                self.ib.reqExecutionsAsync(ExecutionFilter(time=stamp)),
                timeout=self.conn.connect_timeout_s,
            )
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise BrokerError(f"reqExecutions failed: {exc!r}") from None
        # commission reports follow their executions; give stragglers a moment
        deadline = time.monotonic() + self.commission_wait_s
        stored = self.ib.wrapper.fills
        while time.monotonic() < deadline and any(
            not stored.get(f.execution.execId, f).commissionReport.execId for f in fills
        ):
            await asyncio.sleep(0.01)
        out = []
        for fill in fills:
            fill = stored.get(fill.execution.execId, fill)
            if not fill.execution.orderRef:
                continue
            exec_id = fill.execution.execId
            if not fill.commissionReport.execId:
                # no report yet: never booked with a commission of 0; the commission wait
                # reports it once IB's report is in
                if exec_id not in self._pending_fills and exec_id not in self._reported_fills:
                    self._pending_fills[exec_id] = asyncio.get_running_loop().call_later(
                        self.commission_wait_s, self._commission_timeout, exec_id
                    )
                continue
            out.append(self._to_fill(fill, fill.commissionReport, recovered=True))
            ex = fill.execution
            self._mark_accounted(ex.execId, ex.orderRef, float(ex.shares))
        return out

    # ================================================================== ib_async events
    def _ref_of(self, trade: Trade) -> str:
        ref = trade.order.orderRef or ""
        if ref:
            self._known_refs.add(ref)
        return ref

    def _on_open_order(self, trade: Trade) -> None:
        self._ref_of(trade)
        self._track(trade)

    def _on_status(self, trade: Trade) -> None:
        self._track(trade)
        ref = self._ref_of(trade)
        if not ref:
            return
        st = trade.orderStatus
        status = st.status
        common: dict[str, Any] = {
            "order_ref": ref,
            "symbol": trade.contract.symbol,
            "broker_order_id": str(trade.order.orderId),
            "filled": float(st.filled),
            "remaining": float(st.remaining),
            "avg_fill_price": float(st.avgFillPrice or 0.0),
            "ts_ns": time.time_ns(),
        }
        if status in ("PreSubmitted", "Submitted"):
            self.events.put_nowait(OrderUpdate(status="acknowledged", **common))
        elif status == "Filled":
            self.events.put_nowait(OrderUpdate(status="filled", **common))
        elif status in ("Cancelled", "ApiCancelled", "Inactive"):
            rejected = _rejection(trade)
            if rejected is not None:
                code, reason = rejected
                self.events.put_nowait(
                    OrderUpdate(status="rejected", error_code=code, reason=reason, **common)
                )
            elif status == "Inactive":
                self.events.put_nowait(
                    OrderUpdate(
                        status="rejected",
                        reason="order inactive at IB (rejected or held)",
                        **common,
                    )
                )
            else:
                self.events.put_nowait(OrderUpdate(status="cancelled", **common))

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        if code in (1100, 2110):
            event(log, "ib_connectivity_lost", logging.WARNING, code=code, message=message)
        elif code in (1101, 1102):
            event(log, "ib_connectivity_restored", logging.WARNING, code=code, message=message)
        elif 2100 <= code < 2200:
            return  # farm status chatter
        else:
            event(log, "ib_error", logging.WARNING, req_id=req_id, code=code, message=message)

    def _on_exec(self, trade: Trade, fill: IBFill) -> None:
        exec_id = fill.execution.execId
        self._ref_of(trade)
        if exec_id not in self._accounted_execs:  # the next position report will include it
            self._unpositioned.setdefault(fill.contract.symbol, {})[exec_id] = (
                fill.execution.orderRef,
                float(fill.execution.shares),
            )
        if exec_id in self._reported_fills or exec_id in self._pending_fills:
            return
        loop = asyncio.get_running_loop()
        self._pending_fills[exec_id] = loop.call_later(
            self.commission_wait_s, self._commission_timeout, exec_id
        )

    def _on_commission(self, trade: Trade, fill: IBFill, report: CommissionReport) -> None:
        exec_id = fill.execution.execId
        handle = self._pending_fills.pop(exec_id, None)
        if handle is not None:
            handle.cancel()
        self._commission_attempts.pop(exec_id, None)
        if exec_id in self._reported_fills:
            return
        self._report(fill, report)

    def _commission_timeout(self, exec_id: str) -> None:
        self._pending_fills.pop(exec_id, None)
        fill = self.ib.wrapper.fills.get(exec_id)
        if fill is None or exec_id in self._reported_fills:
            # gone with a reconnect's reset: recover_fills brings it back with its report
            self._commission_attempts.pop(exec_id, None)
            return
        if fill.commissionReport.execId:  # arrived without an event (a trade ib_async lost)
            self._commission_attempts.pop(exec_id, None)
            self._report(fill, fill.commissionReport)
            return
        attempt = self._commission_attempts.get(exec_id, 0) + 1
        self._commission_attempts[exec_id] = attempt
        event(
            log,
            "commission_late",
            logging.WARNING,
            exec_id=exec_id,
            attempt=attempt,
            waited_s=self.commission_wait_s,
            hint="the fill is booked when IB's commission report arrives, never with 0",
        )
        loop = asyncio.get_running_loop()
        if self.is_connected():
            task = loop.create_task(self._request_commission(exec_id))
            self._commission_tasks.add(task)
            task.add_done_callback(self._commission_tasks.discard)
        delay = min(60.0, max(0.5, self.commission_wait_s) * 2 ** min(attempt, 7))
        self._pending_fills[exec_id] = loop.call_later(delay, self._commission_timeout, exec_id)

    async def _request_commission(self, exec_id: str) -> None:
        """Ask IB for the executions again: each comes back with its commission report."""
        try:
            await asyncio.wait_for(
                self.ib.reqExecutionsAsync(ExecutionFilter()),
                timeout=self.conn.connect_timeout_s,
            )
        except (TimeoutError, ConnectionError, OSError) as exc:
            event(log, "commission_request_failed", logging.WARNING, error=repr(exc)[:300])
            return
        fill = self.ib.wrapper.fills.get(exec_id)
        if fill is None or exec_id in self._reported_fills or not fill.commissionReport.execId:
            return
        handle = self._pending_fills.pop(exec_id, None)
        if handle is not None:
            handle.cancel()
        self._commission_attempts.pop(exec_id, None)
        self._report(fill, fill.commissionReport)

    def _report(self, fill: IBFill, report: CommissionReport) -> None:
        if not fill.execution.orderRef:
            return
        self._reported_fills.add(fill.execution.execId)
        self.events.put_nowait(self._to_fill(fill, report, recovered=self._syncing))
        ex = fill.execution
        self._mark_accounted(ex.execId, ex.orderRef, float(ex.shares))

    def _to_fill(self, fill: IBFill, report: CommissionReport, recovered: bool) -> BrokerFill:
        ex = fill.execution
        commission = float(report.commission) if report and report.execId else 0.0
        if not math.isfinite(commission) or commission > 1e12:
            commission = 0.0
        return BrokerFill(
            in_position=ex.execId in self._positioned_execs,
            exec_id=ex.execId,
            order_ref=ex.orderRef,
            symbol=fill.contract.symbol,
            side="BUY" if ex.side in ("BOT", "BUY") else "SELL",
            quantity=float(ex.shares),
            price=float(ex.price),
            commission=commission,
            account=ex.acctNumber or self._account,
            ts_ns=_ns(ex.time),
            recovered=recovered,
        )

    def _on_position(self, position: IBPosition) -> None:
        if self._account and position.account != self._account:
            return
        # this report includes every execution of the symbol seen before it
        for exec_id, (ref, shares) in list(
            self._unpositioned.pop(position.contract.symbol, {}).items()
        ):
            self._positioned_execs.add(exec_id)
            self._mark_accounted(exec_id, ref, shares)
        self.events.put_nowait(
            BrokerPosition(
                symbol=position.contract.symbol,
                quantity=float(position.position),
                avg_cost=float(position.avgCost),
                account=position.account,
            )
        )
