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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ibsim import encoders as enc
from ibsim.bars import (
    NS,
    AggregatedBar,
    BarRequestError,
    PacingLimiter,
    aggregate,
    bucket_start,
    five_second_bars,
    format_exec_time,
    parse_bar_size,
    parse_duration,
    parse_ib_time,
)
from ibsim.config import IbsimSettings
from ibsim.contracts import STOCK_EXCHANGES
from ibsim.exchange import Exchange
from ibsim.faults import FaultSwitches
from ibsim.models import ContractQuery, ExecutionRecord, SimOrder, SourceBar, StockContract
from ibsim.requests import (
    In,
    RequestRejected,
    parse_cancel_order,
    parse_contract_details_request,
    parse_executions_request,
    parse_historical_request,
    parse_place_order,
    parse_real_time_bars_request,
    parse_req_id,
)
from ibsim.wire import (
    Field,
    FieldReader,
    FrameReader,
    FrameTooLarge,
    ProtocolError,
    encode_frame,
    parse_version_range,
)
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
PACING_VIOLATION = (
    "Historical Market Data Service error message:Historical data request pacing violation"
)
NOT_SUBSCRIBED = (354, "Requested market data is not subscribed.")
DELAYED_DATA = (
    10167,
    "Requested market data is not subscribed. Displaying delayed market data.",
)
REALTIME_PACING = (420, "Invalid Real-time Query:Historical data request pacing violation")
DELAYED_TYPES = (3, 4)  # reqMarketDataType: 3 delayed, 4 delayed-frozen
ERROR_READING_REQUEST = 320


class Outbox:
    """Writes frames in order; a frame may be held back (delayed acks) and later ones queue
    behind it, so a client never sees a fill before the ack of its order."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: deque[tuple[float, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def send(self, data: bytes, delay_s: float = 0.0) -> None:
        if delay_s <= 0 and not self._pending:
            self._transport.write(data)
            return
        due = self._loop.time() + delay_s
        if self._pending:
            due = max(due, self._pending[-1][0])
        self._pending.append((due, data))
        if self._timer is None:
            self._timer = self._loop.call_at(self._pending[0][0], self._drain)

    def _drain(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._pending and self._pending[0][0] <= now:
            self._transport.write(self._pending.popleft()[1])
        if self._pending:
            self._timer = self._loop.call_at(self._pending[0][0], self._drain)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._pending.clear()


@dataclass(slots=True)
class HistoricalSubscription:
    symbol: str
    bar_seconds: int
    format_date: int


@dataclass(slots=True)
class Subscriptions:
    positions: bool = False
    account_updates: bool = False
    account_multi: set[int] = field(default_factory=set)
    historical: dict[int, HistoricalSubscription] = field(default_factory=dict)
    real_time: dict[int, str] = field(default_factory=dict)  # reqId -> symbol
    account_values_sent: float = 0.0  # time.monotonic() of the last account values push
    market_data_type: int = 1  # reqMarketDataType: 1 live (default), 2 frozen, 3/4 delayed


class ClientSession(asyncio.Protocol):
    """One API connection."""

    def __init__(self, server: IbServer) -> None:
        self.server = server
        self.client_id: int | None = None
        self.subs = Subscriptions()
        self.peer = ""
        self._version_agreed = False
        self._transport: asyncio.Transport | None = None
        self._outbox: Outbox | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._frame_timer: asyncio.TimerHandle | None = None
        self._reader = FrameReader(
            expect_handshake=True, max_frame_bytes=server.settings.max_frame_bytes
        )

    # ------------------------------------------------------------ transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._outbox = Outbox(transport, asyncio.get_running_loop())
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if not self.server.accepting:
            transport.abort()  # outage: the gateway is down
            return
        settings = self.server.settings
        if len(self.server.sessions) >= settings.max_clients:
            self.server.refuse(self, "max_clients", f"{settings.max_clients} clients connected")
            return
        self.server.sessions.add(self)
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(
            settings.handshake_timeout_s, self._handshake_expired
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._outbox is not None:
            self._outbox.close()
        self._cancel_timers()
        self.server.session_closed(self)

    def _cancel_timers(self) -> None:
        for timer in (self._handshake_timer, self._frame_timer):
            if timer is not None:
                timer.cancel()
        self._handshake_timer = self._frame_timer = None

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if not self.ready:
            self.server.refuse(
                self,
                "handshake_timeout",
                f"no startApi in {self.server.settings.handshake_timeout_s}s",
            )

    def _frame_expired(self) -> None:
        self._frame_timer = None
        if self._reader.partial:
            self.server.refuse(
                self,
                "frame_timeout",
                f"frame unfinished after {self.server.settings.frame_timeout_s}s",
            )

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        try:
            completed = 0
            for fields in self._reader.feed(data):
                completed += 1
                self._on_message(fields)
        except FrameTooLarge as exc:
            self.server.refuse(self, "frame_too_large", str(exc))
            return
        except ProtocolError as exc:
            self.server.refuse(self, "protocol_error", str(exc))
            return
        self._watch_partial_frame(restart=completed > 0)

    def _watch_partial_frame(self, restart: bool) -> None:
        """A frame that has begun must end within ``frame_timeout_s`` of its first bytes."""
        if not self._reader.partial:
            if self._frame_timer is not None:
                self._frame_timer.cancel()
                self._frame_timer = None
            return
        if self._frame_timer is not None and not restart:
            return  # the same unfinished frame: its deadline stands
        if self._frame_timer is not None:
            self._frame_timer.cancel()
        loop = asyncio.get_running_loop()
        self._frame_timer = loop.call_later(
            self.server.settings.frame_timeout_s, self._frame_expired
        )

    def send(self, fields: list[Field], delay_s: float = 0.0) -> None:
        if (
            self._outbox is not None
            and self._transport is not None
            and not self._transport.is_closing()
        ):
            self._outbox.send(encode_frame(fields), delay_s)
            backlog = self._transport.get_write_buffer_size()
            if backlog > self.server.settings.max_write_buffer_bytes:
                self.server.refuse(self, "slow_reader", f"{backlog} bytes unread")

    def abort(self) -> None:
        """Drop the TCP connection without a goodbye (what a crash or network cut looks like)."""
        if self._transport is not None:
            self._transport.abort()

    def close_after_flush(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def ready(self) -> bool:
        return self.client_id is not None

    # ------------------------------------------------------------ handshake
    def _on_message(self, fields: list[str]) -> None:
        if not self._version_agreed:
            low, high = _version_range(fields)
            if not low <= enc.SERVER_VERSION <= high:
                event(log, "version_refused", logging.WARNING, peer=self.peer, low=low, high=high)
                self.abort()
                return
            self._version_agreed = True
            now = dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")
            self.send(enc.handshake(now))
            return
        if not fields or not fields[0].isdigit():
            raise ProtocolError(f"message without an id: {fields[:3]}")
        msg_id = int(fields[0])
        if self.client_id is None:
            if msg_id == In.START_API:
                self.server.start_api(self, FieldReader(fields, 2).integer())
            return  # TWS ignores requests before startApi
        self.server.dispatch(self, msg_id, fields)


def _req_id_guess(fields: list[str]) -> int:
    """The request's id for an error reply when parsing failed (-1 if it cannot be told)."""
    for candidate in fields[1:3]:
        if candidate.lstrip("-").isdigit():
            return int(candidate)
    return -1


def _version_range(fields: list[str]) -> tuple[int, int]:
    if len(fields) != 1:
        raise ProtocolError(f"expected a version range, got {fields[:3]}")
    return parse_version_range(fields[0])


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
        self._handlers: dict[int, Callable[[ClientSession, list[str]], None]] = {
            In.PLACE_ORDER: self._place_order,
            In.CANCEL_ORDER: self._cancel_order,
            In.REQ_GLOBAL_CANCEL: lambda s, f: self._with_ack_delay(self.exchange.cancel_all),
            In.REQ_OPEN_ORDERS: self._open_orders,
            In.REQ_ALL_OPEN_ORDERS: self._all_open_orders,
            In.REQ_AUTO_OPEN_ORDERS: lambda s, f: None,
            In.REQ_COMPLETED_ORDERS: self._completed_orders,
            In.REQ_EXECUTIONS: self._executions,
            In.REQ_POSITIONS: self._positions,
            In.CANCEL_POSITIONS: self._cancel_positions,
            In.REQ_ACCOUNT_UPDATES: self._account_updates,
            In.REQ_ACCOUNT_UPDATES_MULTI: self._account_updates_multi,
            In.CANCEL_ACCOUNT_UPDATES_MULTI: self._cancel_account_updates_multi,
            In.REQ_ACCOUNT_SUMMARY: self._account_summary,
            In.CANCEL_ACCOUNT_SUMMARY: lambda s, f: None,
            In.REQ_IDS: self._req_ids,
            In.REQ_CONTRACT_DETAILS: self._contract_details,
            In.REQ_HISTORICAL_DATA: self._historical_data,
            In.CANCEL_HISTORICAL_DATA: self._cancel_historical_data,
            In.REQ_REAL_TIME_BARS: self._real_time_bars,
            In.CANCEL_REAL_TIME_BARS: self._cancel_real_time_bars,
            In.REQ_CURRENT_TIME: lambda s, f: s.send(enc.current_time(self.market_clock() // NS)),
            In.REQ_MANAGED_ACCTS: lambda s, f: s.send(enc.managed_accounts([self.account])),
            In.REQ_MKT_DATA: self._market_data,
            In.CANCEL_MKT_DATA: lambda s, f: None,
            In.REQ_MARKET_DATA_TYPE: self._market_data_type,
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

    def _ready_sessions(self) -> list[ClientSession]:
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

    # ----------------------------------------------------- account requests
    def _positions(self, session: ClientSession, fields: list[str]) -> None:
        session.subs.positions = True
        for contract, state in self.exchange.open_positions():
            session.send(enc.position(self.account, contract, state))
        session.send(enc.position_end())

    def _cancel_positions(self, session: ClientSession, fields: list[str]) -> None:
        session.subs.positions = False

    def _account_updates(self, session: ClientSession, fields: list[str]) -> None:
        reader = FieldReader(fields, 2)
        subscribe = reader.flag()
        session.subs.account_updates = subscribe
        if not subscribe:
            return
        self._send_account_values(session)
        for contract, state in self.exchange.open_positions():
            session.send(
                enc.portfolio_value(
                    self.account, contract, state, self.exchange.mark(contract.symbol)
                )
            )
        session.send(enc.account_update_time(dt.datetime.now(dt.UTC)))
        session.send(enc.account_download_end(self.account))

    def _send_account_values(self, session: ClientSession) -> None:
        snapshot = self.exchange.account_snapshot()
        for tag, value, currency in enc.account_value_items(snapshot, self.account):
            session.send(enc.account_value(tag, value, currency, self.account))

    def _send_account_multi(self, session: ClientSession, req_id: int) -> None:
        snapshot = self.exchange.account_snapshot()
        for tag, value, currency in enc.account_value_items(snapshot, self.account):
            session.send(enc.account_update_multi(req_id, self.account, tag, value, currency))

    def _account_updates_multi(self, session: ClientSession, fields: list[str]) -> None:
        req_id = parse_req_id(fields)
        session.subs.account_multi.add(req_id)
        self._send_account_multi(session, req_id)
        session.send(enc.account_update_multi_end(req_id))

    def _cancel_account_updates_multi(self, session: ClientSession, fields: list[str]) -> None:
        session.subs.account_multi.discard(parse_req_id(fields))

    def _account_summary(self, session: ClientSession, fields: list[str]) -> None:
        reader = FieldReader(fields, 2)
        req_id = reader.integer()
        reader.skip(1)  # group name ("All")
        wanted = {t.strip() for t in reader.text().split(",") if t.strip()}
        snapshot = self.exchange.account_snapshot()
        for tag, value, currency in enc.account_value_items(snapshot, self.account):
            if currency == "BASE" or (wanted and tag not in wanted):
                continue
            session.send(enc.account_summary(req_id, self.account, tag, value, currency))
        session.send(enc.account_summary_end(req_id))

    def _req_ids(self, session: ClientSession, fields: list[str]) -> None:
        session.send(enc.next_valid_id(self.exchange.next_valid_id(session.client_id or 0)))

    # ---------------------------------------------------- contracts and data
    def _contract_details(self, session: ClientSession, fields: list[str]) -> None:
        req_id, query = parse_contract_details_request(fields)
        contract = self._resolve_or_reject(req_id, query)
        exchange = query.exchange.upper() if query.exchange.upper() in STOCK_EXCHANGES else ""
        # trading hours of the market's day (the replay's simulated clock), as TWS sends them
        today = dt.datetime.fromtimestamp(self.market_clock() / NS, dt.UTC).date()
        session.send(enc.contract_details(req_id, contract, exchange or "SMART", today))
        session.send(enc.contract_details_end(req_id))

    def _resolve_or_reject(self, req_id: int, query: ContractQuery) -> StockContract:
        contract = self.exchange.contracts.resolve(query)
        if contract is None:
            raise RequestRejected(
                req_id, 200, "No security definition has been found for the request"
            )
        return contract

    def _historical_data(self, session: ClientSession, fields: list[str]) -> None:
        request = parse_historical_request(fields)
        req_id = request.req_id
        contract = self._resolve_or_reject(req_id, request.contract)
        self._check_market_data(session, req_id)
        if self.faults.take_pacing_error():
            event(log, "pacing_violation", client_id=session.client_id, req_id=req_id, fault=True)
            raise RequestRejected(req_id, 162, PACING_VIOLATION)
        if not self.pacing.allow(self.clock()):
            event(log, "pacing_violation", client_id=session.client_id, req_id=req_id)
            raise RequestRejected(req_id, 162, PACING_VIOLATION)
        try:
            bar_seconds = parse_bar_size(request.bar_size)
            duration_s = parse_duration(request.duration)
            end_ns = parse_ib_time(request.end) if request.end else None
        except BarRequestError as exc:
            raise RequestRejected(
                req_id, 162, f"Historical Market Data Service error message:{exc}"
            ) from None
        latest = self.exchange.bars.latest(contract.symbol)
        if end_ns is None and latest is not None:
            end_ns = latest.close_ts
        bars = []
        if end_ns is not None:
            window = self.exchange.bars.window(contract.symbol, end_ns - duration_s * NS, end_ns)
            bars = aggregate(window, bar_seconds)
        if not bars:
            raise RequestRejected(
                req_id,
                162,
                "Historical Market Data Service error message:"
                f"HMDS query returned no data: {contract.symbol}"
                f"@SMART {request.what_to_show or 'Trades'}",
            )
        assert end_ns is not None
        start_text = format_exec_time(end_ns - duration_s * NS)
        session.send(
            enc.historical_data(
                req_id, start_text, format_exec_time(end_ns), bars, bar_seconds, request.format_date
            )
        )
        if request.keep_up_to_date:
            session.subs.historical[req_id] = HistoricalSubscription(
                contract.symbol, bar_seconds, request.format_date
            )

    def _cancel_historical_data(self, session: ClientSession, fields: list[str]) -> None:
        session.subs.historical.pop(parse_req_id(fields), None)

    def _real_time_bars(self, session: ClientSession, fields: list[str]) -> None:
        request = parse_real_time_bars_request(fields)
        contract = self._resolve_or_reject(request.req_id, request.contract)
        self._check_market_data(session, request.req_id)
        if self.faults.take_realtime_pacing():
            raise RequestRejected(request.req_id, *REALTIME_PACING)
        if request.bar_size != 5:
            raise RequestRejected(
                request.req_id, 420, "Invalid Real-time Query:Only 5 second bars are supported"
            )
        session.subs.real_time[request.req_id] = contract.symbol

    def _cancel_real_time_bars(self, session: ClientSession, fields: list[str]) -> None:
        session.subs.real_time.pop(parse_req_id(fields), None)

    def _market_data_type(self, session: ClientSession, fields: list[str]) -> None:
        """[59, 1, marketDataType]"""
        session.subs.market_data_type = FieldReader(fields, 2).integer(default=1)

    def _check_market_data(self, session: ClientSession, req_id: int) -> None:
        """The ``market_data_error`` fault: an account without the market data subscription."""
        code = self.faults.market_data_error
        if code == 0:
            return
        if code == NOT_SUBSCRIBED[0] and session.subs.market_data_type not in DELAYED_TYPES:
            raise RequestRejected(req_id, *NOT_SUBSCRIBED)
        session.send(enc.error(req_id, *DELAYED_DATA))  # a warning: the data follows, delayed

    def _market_data(self, session: ClientSession, fields: list[str]) -> None:
        session.send(enc.error(parse_req_id(fields), *NOT_SUBSCRIBED))

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
        """Positions change only on fills; marks on every bar. Account values go out at once
        after a fill and at most every ``account_update_interval_s`` otherwise (IB itself sends
        them every few minutes, so a client must not rely on them tick by tick)."""
        contract = self.exchange.contracts.get(symbol)
        state = self.exchange.positions.get(symbol)
        if contract is None or state is None:
            return
        mark = self.exchange.mark(symbol)
        now = time.monotonic()
        interval = self.settings.account_update_interval_s
        for session in self._ready_sessions():
            if traded and session.subs.positions:
                session.send(enc.position(self.account, contract, state))
            wants_values = session.subs.account_updates or session.subs.account_multi
            due = traded or now - session.subs.account_values_sent >= interval
            if session.subs.account_updates:
                session.send(enc.portfolio_value(self.account, contract, state, mark))
            if wants_values and due:
                session.subs.account_values_sent = now
                if session.subs.account_updates:
                    self._send_account_values(session)
                for req_id in session.subs.account_multi:
                    self._send_account_multi(session, req_id)

    def bar_added(self, bar: SourceBar) -> None:
        five_second: list[AggregatedBar] | None = None
        for session in self._ready_sessions():
            for req_id, sub in session.subs.historical.items():
                if sub.symbol == bar.symbol:
                    self._send_historical_update(session, req_id, sub, bar)
            for req_id, symbol in session.subs.real_time.items():
                if symbol == bar.symbol:
                    if five_second is None:
                        five_second = five_second_bars(bar)
                    for small in five_second:
                        session.send(enc.real_time_bar(req_id, small))

    def _send_historical_update(
        self, session: ClientSession, req_id: int, sub: HistoricalSubscription, bar: SourceBar
    ) -> None:
        start_s = bucket_start(bar, sub.bar_seconds)
        window = self.exchange.bars.window(
            bar.symbol, start_s * NS, (start_s + sub.bar_seconds) * NS
        )
        for current in aggregate(window, sub.bar_seconds)[-1:]:
            session.send(
                enc.historical_data_update(req_id, current, sub.bar_seconds, sub.format_date)
            )
