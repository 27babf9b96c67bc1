"""The simulator's contract and market-data requests (contract details, historical bars with
keepUpToDate, 5-second real-time bars, market data type) and the bar pushes to the subscribed
clients, with IB's pacing and market-data-subscription errors (the latter as a fault switch)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from ibsim import encoders as enc
from ibsim.bars import (
    NS,
    AggregatedBar,
    BarRequestError,
    aggregate,
    bucket_start,
    five_second_bars,
    format_exec_time,
    parse_bar_size,
    parse_duration,
    parse_ib_time,
)
from ibsim.contracts import STOCK_EXCHANGES
from ibsim.models import ContractQuery, SourceBar, StockContract
from ibsim.requests import (
    RequestRejected,
    parse_contract_details_request,
    parse_historical_request,
    parse_real_time_bars_request,
    parse_req_id,
)
from ibsim.session import HistoricalSubscription
from ibsim.wire import FieldReader
from shared.logs import event

if TYPE_CHECKING:
    from ibsim.server import IbServer
    from ibsim.session import ClientSession

log = logging.getLogger("ibsim.server")  # the server's logger: one stream for the API side

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


class MarketDataRequests:
    """Answers contract and market-data requests from the server's exchange (its bar store)."""

    def __init__(self, server: IbServer) -> None:
        self.server = server

    def contract_details(self, session: ClientSession, fields: list[str]) -> None:
        req_id, query = parse_contract_details_request(fields)
        contract = self._resolve_or_reject(req_id, query)
        exchange = query.exchange.upper() if query.exchange.upper() in STOCK_EXCHANGES else ""
        # trading hours of the market's day (the replay's simulated clock), as TWS sends them
        today = dt.datetime.fromtimestamp(self.server.market_clock() / NS, dt.UTC).date()
        session.send(enc.contract_details(req_id, contract, exchange or "SMART", today))
        session.send(enc.contract_details_end(req_id))

    def _resolve_or_reject(self, req_id: int, query: ContractQuery) -> StockContract:
        contract = self.server.exchange.contracts.resolve(query)
        if contract is None:
            raise RequestRejected(
                req_id, 200, "No security definition has been found for the request"
            )
        return contract

    def historical_data(self, session: ClientSession, fields: list[str]) -> None:
        request = parse_historical_request(fields)
        req_id = request.req_id
        contract = self._resolve_or_reject(req_id, request.contract)
        self._check_market_data(session, req_id)
        if self.server.faults.take_pacing_error():
            event(log, "pacing_violation", client_id=session.client_id, req_id=req_id, fault=True)
            raise RequestRejected(req_id, 162, PACING_VIOLATION)
        if not self.server.pacing.allow(self.server.clock()):
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
        latest = self.server.exchange.bars.latest(contract.symbol)
        if end_ns is None and latest is not None:
            end_ns = latest.close_ts
        bars = []
        if end_ns is not None:
            window = self.server.exchange.bars.window(
                contract.symbol, end_ns - duration_s * NS, end_ns
            )
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

    def cancel_historical_data(self, session: ClientSession, fields: list[str]) -> None:
        session.subs.historical.pop(parse_req_id(fields), None)

    def real_time_bars(self, session: ClientSession, fields: list[str]) -> None:
        request = parse_real_time_bars_request(fields)
        contract = self._resolve_or_reject(request.req_id, request.contract)
        self._check_market_data(session, request.req_id)
        if self.server.faults.take_realtime_pacing():
            raise RequestRejected(request.req_id, *REALTIME_PACING)
        if request.bar_size != 5:
            raise RequestRejected(
                request.req_id, 420, "Invalid Real-time Query:Only 5 second bars are supported"
            )
        session.subs.real_time[request.req_id] = contract.symbol

    def cancel_real_time_bars(self, session: ClientSession, fields: list[str]) -> None:
        session.subs.real_time.pop(parse_req_id(fields), None)

    def market_data_type(self, session: ClientSession, fields: list[str]) -> None:
        """[59, 1, marketDataType]"""
        session.subs.market_data_type = FieldReader(fields, 2).integer(default=1)

    def _check_market_data(self, session: ClientSession, req_id: int) -> None:
        """The ``market_data_error`` fault: an account without the market data subscription."""
        code = self.server.faults.market_data_error
        if code == 0:
            return
        if code == NOT_SUBSCRIBED[0] and session.subs.market_data_type not in DELAYED_TYPES:
            raise RequestRejected(req_id, *NOT_SUBSCRIBED)
        session.send(enc.error(req_id, *DELAYED_DATA))  # a warning: the data follows, delayed

    def market_data(self, session: ClientSession, fields: list[str]) -> None:
        session.send(enc.error(parse_req_id(fields), *NOT_SUBSCRIBED))

    def bar_added(self, bar: SourceBar) -> None:
        five_second: list[AggregatedBar] | None = None
        for session in self.server.ready_sessions():
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
        window = self.server.exchange.bars.window(
            bar.symbol, start_s * NS, (start_s + sub.bar_seconds) * NS
        )
        for current in aggregate(window, sub.bar_seconds)[-1:]:
            session.send(
                enc.historical_data_update(req_id, current, sub.bar_seconds, sub.format_date)
            )
