"""The TWS API server: one ``ClientSession`` (asyncio.Protocol) per TCP connection, one loop.

A session goes through the handshake (``API\\0`` + version range -> server version + time), waits
for startApi (clientId, which must be unique among live sessions, as in TWS), then answers requests.
Order and account events from the exchange are routed to the session of the order's client; a
client that is not connected misses them, exactly like with IB, and must recover them with
reqExecutions / reqCompletedOrders / reqOpenOrders after reconnecting.

Hardening (settings in ``ibsim.config``): at most ``IBSIM_MAX_CLIENTS`` connections at once (one
more is closed at once); a connection that has not finished the handshake and startApi within
``IBSIM_HANDSHAKE_TIMEOUT_S`` is closed; a frame that declares more than ``IBSIM_MAX_FRAME_BYTES``
closes the connection on its length alone; a started frame must be complete within
``IBSIM_FRAME_TIMEOUT_S``; a client that stops reading is cut off when more than
``IBSIM_MAX_WRITE_BUFFER_BYTES`` wait for it. Each such refusal is counted per reason
(``IbServer.refused``, shown by the control ``ping``) and logged once per reason per minute.

This module: the listener's lifecycle (start, outage, drops), client ids, the request dispatch,
the order requests, and the routing of the exchange's order events. The connection itself is
``ibsim.session``; account requests ``ibsim.account_requests``; contract and market-data requests
``ibsim.market_data_requests``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ibsim import encoders as enc
from ibsim.account_requests import AccountRequests
from ibsim.bars import NS, BarRequestError, PacingLimiter
from ibsim.config import IbsimSettings
from ibsim.exchange import Exchange
from ibsim.faults import FaultSwitches
from ibsim.market_data_requests import MarketDataRequests
from ibsim.models import ExecutionRecord, SimOrder, SourceBar
from ibsim.requests import (
    In,
    RequestRejected,
    parse_cancel_order,
    parse_executions_request,
    parse_place_order,
)
from ibsim.session import ClientSession
from ibsim.wire import Field, ProtocolError
from shared.logs import event
from shared.validate import RefusalCounter

log = logging.getLogger("ibsim.server")

CLIENT_ID_IN_USE = (
    326,
    "Unable to connect as the client id is already in use. Retry with a unique client id.",
)
FARM_STATUS = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
ERROR_READING_REQUEST = 320


def _req_id_guess(fields: list[str]) -> int:
    """The request's id for an error reply when parsing failed (-1 if it cannot be told)."""
    for candidate in fields[1:3]:
        if candidate.lstrip("-").isdigit():
            return int(candidate)
    return -1


class IbServer:
    """Listens for API clients and routes exchange events to them (``ExchangeListener``)."""

    def __init__(
        self,
        settings: IbsimSettings,
        exchange: Exchange,
        faults: FaultSwitches,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.settings = settings
        self.exchange = exchange
        self.faults = faults
        self.clock = clock
        # The market's time (reqCurrentTime); the replay price source sets its simulated clock.
        self.market_clock: Callable[[], int] = clock
        self.sessions: set[ClientSession] = set()
        self.by_client_id: dict[int, ClientSession] = {}
        self.pacing = PacingLimiter(
            settings.hist_pacing_max_requests, settings.hist_pacing_window_s
        )
        self.port = settings.port
        self.accepting = True
        self.refused = RefusalCounter()  # connections closed by the hardening rules, per reason
        self._server: asyncio.Server | None = None
        self._ack_delay_s = 0.0  # > 0 only while handling placeOrder/cancelOrder
        self._unsupported_seen: set[int] = set()
        self._reopen: asyncio.TimerHandle | None = None
        self.account_requests = AccountRequests(self)
        self.market_data = MarketDataRequests(self)
        accounts, data = self.account_requests, self.market_data
        self._handlers: dict[int, Callable[[ClientSession, list[str]], None]] = {
            In.PLACE_ORDER: self._place_order,
            In.CANCEL_ORDER: self._cancel_order,
            In.REQ_GLOBAL_CANCEL: lambda s, f: self._with_ack_delay(self.exchange.cancel_all),
            In.REQ_OPEN_ORDERS: self._open_orders,
            In.REQ_ALL_OPEN_ORDERS: self._all_open_orders,
            In.REQ_AUTO_OPEN_ORDERS: lambda s, f: None,
            In.REQ_COMPLETED_ORDERS: self._completed_orders,
            In.REQ_EXECUTIONS: self._executions,
            In.REQ_POSITIONS: accounts.positions,
            In.CANCEL_POSITIONS: accounts.cancel_positions,
            In.REQ_ACCOUNT_UPDATES: accounts.account_updates,
            In.REQ_ACCOUNT_UPDATES_MULTI: accounts.account_updates_multi,
            In.CANCEL_ACCOUNT_UPDATES_MULTI: accounts.cancel_account_updates_multi,
            In.REQ_ACCOUNT_SUMMARY: accounts.account_summary,
            In.CANCEL_ACCOUNT_SUMMARY: lambda s, f: None,
            In.REQ_IDS: self._req_ids,
            In.REQ_CONTRACT_DETAILS: data.contract_details,
            In.REQ_HISTORICAL_DATA: data.historical_data,
            In.CANCEL_HISTORICAL_DATA: data.cancel_historical_data,
            In.REQ_REAL_TIME_BARS: data.real_time_bars,
            In.CANCEL_REAL_TIME_BARS: data.cancel_real_time_bars,
            In.REQ_CURRENT_TIME: lambda s, f: s.send(enc.current_time(self.market_clock() // NS)),
            In.REQ_MANAGED_ACCTS: lambda s, f: s.send(enc.managed_accounts([self.account])),
            In.REQ_MKT_DATA: data.market_data,
            In.CANCEL_MKT_DATA: lambda s, f: None,
            In.REQ_MARKET_DATA_TYPE: data.market_data_type,
        }
        exchange.listener = self

    @property
    def account(self) -> str:
        return self.exchange.account

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientSession(self), self.settings.host, self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]  # resolves port 0
        self.accepting = True
        event(
            log,
            "listening",
            host=self.settings.host,
            port=self.port,
            server_version=enc.SERVER_VERSION,
            account=self.account,
        )

    async def close(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        for session in list(self.sessions):
            session.abort()

    def refuse(self, session: ClientSession, reason: str, detail: str) -> None:
        """Close a connection that broke a hardening rule; counted, logged once a minute."""
        if self.refused.add(reason):
            event(
                log,
                "connection_refused",
                logging.WARNING,
                reason=reason,
                detail=detail,
                peer=session.peer,
                client_id=session.client_id,
                count=self.refused.counts[reason],
            )
        session.abort()

    def drop_connections(self, client_id: int | None = None) -> int:
        """Abort live connections (all, or one client's); returns how many."""
        victims = [s for s in self.sessions if client_id is None or s.client_id == client_id]
        for session in victims:
            session.abort()
        event(log, "connections_dropped", count=len(victims), client_id=client_id)
        return len(victims)

    def outage(self, seconds: float) -> None:
        """Nightly-reset style: drop everyone and refuse connections for ``seconds``."""
        self.accepting = False
        self.drop_connections()
        if self._server is not None:
            self._server.close()  # stop listening: clients get "connection refused"
            self._server = None
        if self._reopen is not None:
            self._reopen.cancel()
        loop = asyncio.get_running_loop()
        self._reopen = loop.call_later(seconds, lambda: loop.create_task(self._end_outage()))
        event(log, "outage_started", seconds=seconds)

    async def _end_outage(self) -> None:
        self._reopen = None
        await self.start()
        event(log, "outage_ended")

    # -------------------------------------------------------------- session
    def start_api(self, session: ClientSession, client_id: int) -> None:
        if client_id in self.by_client_id:
            event(log, "client_id_in_use", logging.WARNING, client_id=client_id, peer=session.peer)
            session.send(enc.error(-1, *CLIENT_ID_IN_USE))
            session.close_after_flush()
            return
        session.client_id = client_id
        self.by_client_id[client_id] = session
        event(log, "client_connected", client_id=client_id, peer=session.peer)
        session.send(enc.managed_accounts([self.account]))
        session.send(enc.next_valid_id(self.exchange.next_valid_id(client_id)))
        if self.settings.farm_status_messages:
            for code, text in FARM_STATUS:
                session.send(enc.error(-1, code, text))

    def session_closed(self, session: ClientSession) -> None:
        self.sessions.discard(session)
        if session.client_id is not None and self.by_client_id.get(session.client_id) is session:
            del self.by_client_id[session.client_id]
            event(log, "client_disconnected", client_id=session.client_id, peer=session.peer)

    def dispatch(self, session: ClientSession, msg_id: int, fields: list[str]) -> None:
        handler = self._handlers.get(msg_id)
        if handler is None:
            if msg_id not in self._unsupported_seen:
                self._unsupported_seen.add(msg_id)
                event(log, "unsupported_request", logging.WARNING, msg_id=msg_id)
            return
        try:
            handler(session, fields)
        except RequestRejected as exc:
            session.send(enc.error(exc.req_id, exc.code, exc.text))
        except ProtocolError as exc:
            # a malformed request is answered, not fatal: TWS reports it and carries on
            event(log, "bad_request", logging.WARNING, msg_id=msg_id, error=str(exc))
            session.send(
                enc.error(
                    _req_id_guess(fields), ERROR_READING_REQUEST, f"Error reading request: {exc}"
                )
            )
        except Exception as exc:  # a simulator bug must not cut every client off
            log.exception("request_failed", extra={"fields": {"msg_id": msg_id}})
            session.send(
                enc.error(
                    _req_id_guess(fields),
                    ERROR_READING_REQUEST,
                    f"Simulator failed on the request: {exc!r}",
                )
            )

    def _with_ack_delay(self, action: Callable[[], object]) -> None:
        self._ack_delay_s = self.faults.delay_acks_ms / 1000.0
        try:
            action()
        finally:
            self._ack_delay_s = 0.0

    def _send_to(self, client_id: int, fields: list[Field]) -> None:
        session = self.by_client_id.get(client_id)
        if session is not None:
            session.send(fields, self._ack_delay_s)

    def ready_sessions(self) -> list[ClientSession]:
        return [s for s in self.sessions if s.ready]

    # ------------------------------------------------------- order requests
    def _place_order(self, session: ClientSession, fields: list[str]) -> None:
        request = parse_place_order(fields)
        client_id = session.client_id or 0
        self._with_ack_delay(lambda: self.exchange.place_order(client_id, request))

    def _cancel_order(self, session: ClientSession, fields: list[str]) -> None:
        order_id = parse_cancel_order(fields)
        client_id = session.client_id or 0
        self._with_ack_delay(lambda: self.exchange.cancel_order(client_id, order_id))

    def _send_open_order(self, session: ClientSession, order: SimOrder) -> None:
        session.send(enc.open_order(order))
        session.send(enc.order_status(order))

    def _open_orders(self, session: ClientSession, fields: list[str]) -> None:
        """This client's open orders (clientId 0, like TWS's manual-order client, sees all)."""
        client_filter = None if session.client_id == 0 else session.client_id
        for order in self.exchange.open_orders(client_filter):
            self._send_open_order(session, order)
        session.send(enc.open_order_end())

    def _all_open_orders(self, session: ClientSession, fields: list[str]) -> None:
        for order in self.exchange.open_orders(None):
            self._send_open_order(session, order)
        session.send(enc.open_order_end())

    def _completed_orders(self, session: ClientSession, fields: list[str]) -> None:
        """Every completed order of the account, whichever client placed it (as IB does)."""
        for order in self.exchange.completed_orders():
            parent = None
            if order.parent_id:
                parent = self.exchange.find_order(order.client_id, order.parent_id)
            session.send(enc.completed_order(order, parent.perm_id if parent else 0))
        session.send(enc.completed_orders_end())

    def _executions(self, session: ClientSession, fields: list[str]) -> None:
        req_id, query = parse_executions_request(fields)
        master = self.settings.master_client_id
        visible = None if session.client_id == master else [session.client_id or 0]
        try:
            records = self.exchange.find_executions(query, visible)
        except BarRequestError as exc:
            session.send(enc.error(req_id, 321, f"Error validating request: {exc}"))
            records = []
        for record in records:
            contract = self.exchange.contracts.get(record.symbol)
            if contract is None:
                continue
            session.send(enc.exec_details(req_id, record, contract))
            session.send(enc.commission_report(record))
        session.send(enc.exec_details_end(req_id))

    def _req_ids(self, session: ClientSession, fields: list[str]) -> None:
        session.send(enc.next_valid_id(self.exchange.next_valid_id(session.client_id or 0)))

    # ------------------------------------------- ExchangeListener: routing
    def order_changed(self, order: SimOrder, open_order: bool) -> None:
        if open_order:
            self._send_to(order.client_id, enc.open_order(order))
        self._send_to(order.client_id, enc.order_status(order))

    def request_error(self, client_id: int, req_id: int, code: int, text: str) -> None:
        self._send_to(client_id, enc.error(req_id, code, text))

    def executed(self, order: SimOrder, record: ExecutionRecord) -> None:
        # IB's usual order: the execution, the order's new status, then the commission
        self._send_to(order.client_id, enc.exec_details(-1, record, order.contract))
        self._send_to(order.client_id, enc.order_status(order))
        if self.faults.take_commission_drop():
            return  # fault: this report never comes (reqExecutions still answers it)
        report = enc.commission_report(record)
        delay_s = self.faults.delay_commission_ms / 1000.0
        if delay_s > 0:
            asyncio.get_running_loop().call_later(delay_s, self._send_to, order.client_id, report)
        else:
            self._send_to(order.client_id, report)

    def portfolio_changed(self, symbol: str, traded: bool) -> None:
        self.account_requests.portfolio_changed(symbol, traded)

    def bar_added(self, bar: SourceBar) -> None:
        self.market_data.bar_added(bar)
