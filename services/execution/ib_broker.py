"""Interactive Brokers behind the ``Broker`` port, with ``ib_async`` (TWS, IB Gateway or ``ibsim``).

What it does about IB's known pains:

* Lost fills across a disconnect: on every (re)connect ``ib_async`` re-synchronises positions, open
  and completed orders and executions, and ``recover_fills`` re-requests the executions since the
  last known one (``ExecutionFilter.time``); the service publishes each ``exec_id`` once.
* Duplicated orders after a restart: every order carries the deterministic reference as
  ``orderRef``; ``known_order_refs`` holds the references of every open and completed order the
  gateway reported (and every order this process placed), which the service checks before sending.
* Silent rejections: reported as ``rejected`` with the IB code and reason
  (``execution.ib_translation``).
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
same wait takes it over. Which filled shares the service sees already is ``execution.fill_book``'s
ledger; the orders for a request are built by ``execution.ib_orders``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from ib_async import IB, ExecutionFilter, OrderStatus, Trade
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
    WorkingOrder,
)
from execution.fill_book import FillBook, TradeKey
from execution.ib_contracts import StockContracts
from execution.ib_orders import ib_orders
from execution.ib_translation import broker_fill, is_bracket_child, order_update, working_order
from shared.logs import event
from shared.messages import Bar
from shared.paper_config import IBConnection

log = logging.getLogger("execution.ib")

PAPER_PREFIXES = ("DU", "DF")


def _trade_key(trade: Trade) -> TradeKey:
    """How ib_async itself keys trades: (client id, order id)."""
    return (trade.order.clientId, trade.order.orderId)


def is_paper_account(account: str) -> bool:
    return account.upper().startswith(PAPER_PREFIXES)


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
        self._contracts = StockContracts(self.ib, connection.exchange, connection.currency)
        if not log.isEnabledFor(logging.DEBUG):  # ib_async logs every status change at INFO
            logging.getLogger("ib_async").setLevel(logging.WARNING)
        self.events: asyncio.Queue[BrokerEvent] = asyncio.Queue()
        self._account = ""
        self._known_refs: set[str] = set()
        # Orders not yet done, kept from order events: ib_async's openTrades() scans every trade
        # of the session, which made each signal's cost grow with the number of orders sent.
        self._open: dict[TradeKey, Trade] = {}
        self._pending_fills: dict[str, asyncio.TimerHandle] = {}
        self._reported_fills: set[str] = set()
        # which filled shares of our own orders the service sees already (see its module)
        self._fills = FillBook()
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
        await self._contracts.qualify(self.symbols)
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
            self._fills.on_done(key, trade)
        else:
            self._open[key] = trade

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
            remaining += self._fills.unreported_shares(trade)
            out.append(working_order(trade, total, remaining, is_child=is_bracket_child(order)))
        for trade in self._fills.unbooked_trades():
            shares = self._fills.unreported_shares(trade)
            if shares > 0:
                total = float(trade.order.totalQuantity)
                out.append(working_order(trade, total, shares, is_child=False))
        return out

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
    async def place(self, order: OrderRequest) -> str:
        if not self.is_connected():
            raise BrokerError("not connected to IB")
        contract = await self._contracts.get(order.symbol)
        if not self.is_connected():
            raise BrokerError("connection to IB lost while qualifying the contract")
        orders = ib_orders(order, self._account, self.ib.client.getReqId)
        for ib_order in orders:
            self._known_refs.add(ib_order.orderRef)
            self._fills.placed(ib_order.orderRef)
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
            self._fills.mark_accounted(ex.execId, ex.orderRef, float(ex.shares))
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
        update = order_update(trade, ref)
        if update is not None:
            self.events.put_nowait(update)

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
        self._fills.on_execution(
            fill.contract.symbol, exec_id, fill.execution.orderRef, float(fill.execution.shares)
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
        self._fills.mark_accounted(ex.execId, ex.orderRef, float(ex.shares))

    def _to_fill(self, fill: IBFill, report: CommissionReport, recovered: bool) -> BrokerFill:
        in_position = self._fills.is_in_position(fill.execution.execId)
        return broker_fill(fill, report, recovered, in_position, self._account)

    def _on_position(self, position: IBPosition) -> None:
        if self._account and position.account != self._account:
            return
        self._fills.on_position(position.contract.symbol)
        self.events.put_nowait(
            BrokerPosition(
                symbol=position.contract.symbol,
                quantity=float(position.position),
                avg_cost=float(position.avgCost),
                account=position.account,
            )
        )
