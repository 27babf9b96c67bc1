"""Incoming API requests: message ids and parsers, for the fixed server version (see encoders).

Field lists follow ``ib_async.client.Client`` (2.1.0) as it sends them to a server that answered
version 157: e.g. placeOrder carries ``faProfile`` (sent below 177) and nothing gated on 158+.
"""

from __future__ import annotations

from dataclasses import dataclass

from ibsim.models import ContractQuery, ExecutionFilterQuery, OrderRequest
from ibsim.wire import FieldReader


class RequestRejected(Exception):
    """A well-formed request the simulator refuses; answered with error ``code`` for its id."""

    def __init__(self, req_id: int, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.req_id = req_id
        self.code = code
        self.text = text


class In:
    """Message ids a client sends (EClient's OUT ids)."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DETAILS = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_REAL_TIME_BARS = 50
    CANCEL_REAL_TIME_BARS = 51
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_COMPLETED_ORDERS = 99


def read_contract(reader: FieldReader) -> ContractQuery:
    """The 12 contract fields in ib_async's Contract formatting order."""
    return ContractQuery(
        con_id=reader.integer(),
        symbol=reader.text(),
        sec_type=reader.text().upper(),
        last_trade_date=reader.text(),
        strike=reader.number(),
        right=reader.text(),
        multiplier=reader.text(),
        exchange=reader.text(),
        primary_exchange=reader.text(),
        currency=reader.text().upper(),
        local_symbol=reader.text(),
        trading_class=reader.text(),
    )


def parse_place_order(fields: list[str]) -> OrderRequest:
    """[3, orderId, contract(12), secIdType, secId, action, totalQuantity, orderType, lmtPrice,
    auxPrice, tif, ocaGroup, account, openClose, origin, orderRef, transmit, parentId, blockOrder,
    sweepToFill, displaySize, triggerMethod, outsideRth, hidden, <BAG legs>, "", discretionaryAmt,
    goodAfterTime, goodTillDate, faGroup, faMethod, faPercentage, faProfile, modelCode,
    shortSaleSlot, designatedLocation, exemptCode, ocaType, ...]"""
    r = FieldReader(fields, 1)
    order_id = r.integer()
    contract = read_contract(r)
    if contract.sec_type == "BAG":
        raise RequestRejected(
            order_id,
            201,
            "Order rejected - reason:Combo (BAG) orders are not supported by the simulator",
        )
    r.skip(2)  # secIdType, secId
    action = r.text()
    total_qty = r.number() or 0.0
    order_type = r.text()
    lmt_price = r.number()
    aux_price = r.number()
    tif = r.text()
    oca_group = r.text()
    account = r.text()
    r.skip(2)  # openClose, origin
    order_ref = r.text()
    transmit = r.flag()
    parent_id = r.integer()
    r.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    outside_rth = r.flag()
    r.skip(1)  # hidden
    # "", discretionaryAmt, goodAfterTime, goodTillDate, faGroup, faMethod, faPercentage, faProfile
    r.skip(8)
    r.skip(4)  # modelCode, shortSaleSlot, designatedLocation, exemptCode
    oca_type = r.integer()
    what_if = _read_what_if(r)
    return OrderRequest(
        order_id=order_id,
        contract=contract,
        action=action,
        total_qty=total_qty,
        order_type=order_type,
        lmt_price=lmt_price,
        aux_price=aux_price,
        tif=tif,
        oca_group=oca_group,
        oca_type=oca_type,
        account=account,
        order_ref=order_ref,
        transmit=transmit,
        parent_id=parent_id,
        outside_rth=outside_rth,
        what_if=what_if,
    )


def _read_what_if(r: FieldReader) -> bool:
    """Walk the version-157 placeOrder tail after ocaType up to ``whatIf``."""
    # rule80A, settlingFirm, allOrNone, minQty, percentOffset, eTradeOnly, firmQuoteOnly,
    # nbboPriceCap, auctionStrategy, startingPrice, stockRefPrice, delta, stockRangeLower,
    # stockRangeUpper, overridePercentageConstraints, volatility, volatilityType
    r.skip(17)
    if r.text():  # deltaNeutralOrderType
        r.skip(1 + 8)  # deltaNeutralAuxPrice + 8 delta-neutral fields
    else:
        r.skip(1)  # deltaNeutralAuxPrice
    # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent,
    # scaleInitLevelSize, scaleSubsLevelSize
    r.skip(6)
    increment = r.number()
    if increment is not None and increment > 0:
        r.skip(7)  # scale price adjust fields
    r.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if r.text():  # hedgeType
        r.skip(1)  # hedgeParam
    r.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if r.flag():  # delta-neutral contract present
        r.skip(3)
    if r.text():  # algoStrategy
        r.skip(2 * r.integer())
    r.skip(1)  # algoId
    return r.flag()


def parse_cancel_order(fields: list[str]) -> int:
    """[4, 1, orderId] (no manualCancelOrderTime below 169)."""
    return FieldReader(fields, 2).integer()


def parse_executions_request(fields: list[str]) -> tuple[int, ExecutionFilterQuery]:
    """[7, 3, reqId, clientId, acctCode, time, symbol, secType, exchange, side]"""
    r = FieldReader(fields, 2)
    req_id = r.integer()
    query = ExecutionFilterQuery(
        client_id=r.integer(),
        account=r.text(),
        time=r.text(),
        symbol=r.text(),
        sec_type=r.text(),
        exchange=r.text(),
        side=r.text(),
    )
    return req_id, query


def parse_contract_details_request(fields: list[str]) -> tuple[int, ContractQuery]:
    """[9, 8, reqId, contract(12), includeExpired, secIdType, secId]"""
    r = FieldReader(fields, 2)
    req_id = r.integer()
    return req_id, read_contract(r)


@dataclass(slots=True)
class HistoricalRequest:
    req_id: int
    contract: ContractQuery
    end: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool


def parse_historical_request(fields: list[str]) -> HistoricalRequest:
    """[20, reqId, contract(12), includeExpired, endDateTime, barSizeSetting, durationStr, useRTH,
    whatToShow, formatDate, <BAG legs>, keepUpToDate, chartOptions]"""
    r = FieldReader(fields, 1)
    req_id = r.integer()
    contract = read_contract(r)
    r.skip(1)  # includeExpired
    end, bar_size, duration = r.text(), r.text(), r.text()
    use_rth = r.flag()
    what_to_show = r.text()
    format_date = r.integer(default=1)
    if contract.sec_type == "BAG":
        r.skip(4 * r.integer())
    keep_up_to_date = r.flag()
    return HistoricalRequest(
        req_id,
        contract,
        end,
        bar_size,
        duration,
        use_rth,
        what_to_show,
        format_date,
        keep_up_to_date,
    )


@dataclass(slots=True)
class RealTimeBarsRequest:
    req_id: int
    contract: ContractQuery
    bar_size: int
    what_to_show: str


def parse_real_time_bars_request(fields: list[str]) -> RealTimeBarsRequest:
    """[50, 3, reqId, contract(12), barSize, whatToShow, useRTH, realTimeBarsOptions]"""
    r = FieldReader(fields, 2)
    req_id = r.integer()
    contract = read_contract(r)
    return RealTimeBarsRequest(req_id, contract, r.integer(default=5), r.text())


def parse_req_id(fields: list[str], start: int = 2) -> int:
    """The request id of simple messages ``[id, version, reqId, ...]``."""
    return FieldReader(fields, start).integer()
