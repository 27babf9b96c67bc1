"""Outgoing API messages, one function per message kind, for ONE fixed server version: 157.

Why 157: it is the lowest version ib_async 2.1.0 accepts, and every field list below is written,
field by field, from ``ib_async.decoder.Decoder`` as it branches for ``serverVersion == 157``:
- contractDetails carries a version field and the obsolete mdSizeMultiplier (< 164), and no
  minSize/sizeIncrement/suggestedSizeIncrement (>= 164);
- error has no advancedOrderRejectJson (>= 166);
- openOrder and completedOrder carry faProfile (< 177) and nothing gated on 159, 160, 162 or 170;
- execDetails has no pendingPriceRevision (>= 178).
Messages decoded with ``skip=2`` carry a version field after the id; those with ``skip=1`` (and
openOrder, execDetails, historicalData ...) do not. Unset numbers are sent empty, which the client
decodes to its own "unset" default. Each function returns the field list; ``wire.encode_frame``
turns it into bytes.
"""

from __future__ import annotations

import datetime as dt

from ibsim.bars import AggregatedBar, format_bar_time, format_exec_time
from ibsim.contracts import ORDER_TYPES, VALID_EXCHANGES, trading_hours
from ibsim.models import (
    AccountSnapshot,
    ExecutionRecord,
    PositionState,
    SimOrder,
    Status,
    StockContract,
)
from ibsim.wire import UNSET_DOUBLE, Field

SERVER_VERSION = 157

# The field lists below stay grouped as the decoder reads them, not one value per line.
# fmt: off


class Out:
    """Message ids the server sends (EDecoder's IN ids)."""

    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    CURRENT_TIME = 49
    REAL_TIME_BARS = 50
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    HISTORICAL_DATA_UPDATE = 90
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


# ------------------------------------------------------------------ session
def handshake(connection_time: str) -> list[Field]:
    """The only message without an id: server version and connection time."""
    return [SERVER_VERSION, connection_time]


def next_valid_id(order_id: int) -> list[Field]:
    return [Out.NEXT_VALID_ID, 1, order_id]


def managed_accounts(accounts: list[str]) -> list[Field]:
    return [Out.MANAGED_ACCTS, 1, ",".join(accounts)]


def error(req_id: int, code: int, text: str) -> list[Field]:
    """reqId is the orderId for order errors, -1 for connection-level notices."""
    return [Out.ERR_MSG, 2, req_id, code, text]


def current_time(epoch_s: int) -> list[Field]:
    return [Out.CURRENT_TIME, 1, epoch_s]


# ---------------------------------------------------------------- contracts
def _contract_11(c: StockContract, exchange: str) -> list[Field]:
    """conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange, currency,
    localSymbol, tradingClass (the block openOrder, execDetails and position share)."""
    return [c.con_id, c.symbol, c.sec_type, "", 0.0, "", "", exchange, c.currency, c.symbol,
            c.trading_class]


def contract_details(req_id: int, c: StockContract, exchange: str, today: dt.date) -> list[Field]:
    hours, liquid = trading_hours(today)
    return [
        Out.CONTRACT_DATA, 8, req_id,
        c.symbol, c.sec_type, "", 0.0, "", exchange, c.currency, c.symbol,
        c.trading_class,  # marketName
        c.trading_class, c.con_id,
        0.01,  # minTick
        1,  # mdSizeMultiplier (obsolete, still sent below 164)
        "", ORDER_TYPES, VALID_EXCHANGES,
        1,  # priceMagnifier
        0,  # underConId
        c.long_name, c.primary_exchange,
        "",  # contractMonth
        "", "", "",  # industry, category, subcategory
        "US/Eastern", hours, liquid,
        "", "",  # evRule, evMultiplier
        0,  # secIdList count
        1,  # aggGroup
        "", "",  # underSymbol, underSecType
        "26",  # marketRuleIds (IB's rule for US stocks: 0.01 tick)
        "",  # realExpirationDate
        c.stock_type,
    ]


def contract_details_end(req_id: int) -> list[Field]:
    return [Out.CONTRACT_DATA_END, 1, req_id]


# ------------------------------------------------------------------- orders
def order_status(order: SimOrder) -> list[Field]:
    """No version field (decoded with skip=1); clientId must be the order's client."""
    why_held = "child" if order.status == Status.PRE_SUBMITTED else ""
    return [
        Out.ORDER_STATUS, order.order_id, order.status, order.filled_qty, order.remaining,
        order.avg_fill_price, order.perm_id, order.parent_id, order.last_fill_price,
        order.client_id, why_held, 0.0,
    ]


def open_order(order: SimOrder) -> list[Field]:
    c = order.contract
    filled = order.status == Status.FILLED
    return [
        Out.OPEN_ORDER, order.order_id,
        *_contract_11(c, c.exchange),
        order.action, order.total_qty, order.order_type, order.lmt_price, order.aux_price,
        order.tif, order.oca_group, order.account,
        "", 0,  # openClose, origin
        order.order_ref, order.client_id, order.perm_id,
        order.outside_rth, False,  # outsideRth, hidden
        0.0, "",  # discretionaryAmt, goodAfterTime
        "",  # sharesAllocation (deprecated, still on the wire)
        "", "", "",  # faGroup, faMethod, faPercentage
        "",  # faProfile (< 177)
        # modelCode .. deltaNeutralAuxPrice (29 fields)
        "", "", "", None, "", 0, "", -1, 0, None, None, None, None, None,
        0, False, False, False, None, order.oca_type, False, False, None,
        order.parent_id, 0, None, None, "", None,
        # continuousUpdate .. comboLegsDescrip (7 fields)
        False, None, None, None, None, None, "",
        0, 0, 0,  # comboLegs, orderComboLegs, smartComboRoutingParams counts
        None, None, None,  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
        "",  # hedgeType
        False, "", "", False,  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
        False,  # deltaNeutralContract present
        "",  # algoStrategy
        False, False,  # solicited, whatIf
        order.status,
        "", "", "", "", "", "", "", "", "",  # margin before/change/after
        order.commission_paid if filled else None, None, None,  # commission, min, max
        "USD" if filled else "", "",  # commissionCurrency, warningText
        False, False,  # randomizeSize, randomizePrice
        0,  # conditions count
        # adjustedOrderType .. usePriceMgmtAlgo (16 fields)
        "", None, None, None, None, None, None, 0, "", "", "", None, False, False, False, False,
    ]


def open_order_end() -> list[Field]:
    return [Out.OPEN_ORDER_END, 1]


def completed_order(order: SimOrder, parent_perm_id: int) -> list[Field]:
    """No orderId and no clientId on the wire: clients key completed orders by permId."""
    c = order.contract
    completed = format_exec_time(order.completed_ns) if order.completed_ns else ""
    return [
        Out.COMPLETED_ORDER,
        *_contract_11(c, c.exchange),
        order.action, order.total_qty, order.order_type, order.lmt_price, order.aux_price,
        order.tif, order.oca_group, order.account,
        "", 0,  # openClose, origin
        order.order_ref, order.perm_id,
        order.outside_rth, False, 0.0, "",  # outsideRth, hidden, discretionaryAmt, goodAfterTime
        "", "", "",  # faGroup, faMethod, faPercentage
        "",  # faProfile (< 177)
        # modelCode .. deltaNeutralAuxPrice (23 fields)
        "", "", "", None, "", 0, "", -1, None, None, None, None, None,
        0, False, False, None, order.oca_type, 0, None, None, "", None,
        False, None, None, None, "",  # continuousUpdate .. comboLegsDescrip
        0, 0, 0,  # comboLegs, orderComboLegs, smartComboRoutingParams counts
        None, None, None,  # scale fields
        "",  # hedgeType
        "", "", False,  # clearingAccount, clearingIntent, notHeld
        False,  # deltaNeutralContract present
        "",  # algoStrategy
        False, order.status, False, False,  # solicited, status, randomizeSize, randomizePrice
        0,  # conditions count
        None, None, None,  # trailStopPrice, lmtPriceOffset, cashQty
        False, False,  # dontUseAutoPriceForHedge, isOmsContainer
        "",  # autoCancelDate
        order.filled_qty,
        0, False, "", False, False,  # refFuturesConId .. routeMarketableToBbo
        parent_perm_id or None,
        completed, order.done_reason,
    ]


def completed_orders_end() -> list[Field]:
    return [Out.COMPLETED_ORDERS_END]


# --------------------------------------------------------------- executions
def exec_details(req_id: int, record: ExecutionRecord, contract: StockContract) -> list[Field]:
    """No version field; reqId -1 for a live fill, the request's id when answering reqExecutions."""
    return [
        Out.EXECUTION_DATA, req_id, record.order_id,
        *_contract_11(contract, record.venue),
        record.exec_id, format_exec_time(record.time_ns), record.account, record.venue,
        record.side, record.shares, record.price, record.perm_id, record.client_id,
        0,  # liquidation
        record.cum_qty, record.avg_price, record.order_ref,
        "", None, "",  # evRule, evMultiplier, modelCode
        2,  # lastLiquidity: removed liquidity
    ]


def exec_details_end(req_id: int) -> list[Field]:
    return [Out.EXECUTION_DATA_END, 1, req_id]


def commission_report(record: ExecutionRecord) -> list[Field]:
    realized = UNSET_DOUBLE if record.realized_pnl is None else round(record.realized_pnl, 6)
    return [Out.COMMISSION_REPORT, 1, record.exec_id, record.commission, "USD", realized,
            None, None]


# ------------------------------------------------------- positions, account
def position(account: str, c: StockContract, state: PositionState) -> list[Field]:
    return [Out.POSITION_DATA, 3, account, *_contract_11(c, c.primary_exchange),
            state.quantity, state.avg_cost]


def position_end() -> list[Field]:
    return [Out.POSITION_END, 1]


def account_value(tag: str, value: str, currency: str, account: str) -> list[Field]:
    return [Out.ACCT_VALUE, 2, tag, value, currency, account]


def portfolio_value(account: str, c: StockContract, state: PositionState,
                    mark: float) -> list[Field]:
    """Exactly 20 fields: the client unpacks this one without a catch-all."""
    return [
        Out.PORTFOLIO_VALUE, 8, c.con_id, c.symbol, c.sec_type, "", 0.0, "", "",
        c.primary_exchange, c.currency, c.symbol, c.trading_class,
        state.quantity, mark, round(state.quantity * mark, 2), state.avg_cost,
        round((mark - state.avg_cost) * state.quantity, 2), round(state.realized_pnl, 2), account,
    ]


def account_update_time(now: dt.datetime) -> list[Field]:
    return [Out.ACCT_UPDATE_TIME, 1, now.strftime("%H:%M")]


def account_download_end(account: str) -> list[Field]:
    return [Out.ACCT_DOWNLOAD_END, 1, account]


def account_update_multi(req_id: int, account: str, tag: str, value: str,
                         currency: str) -> list[Field]:
    return [Out.ACCOUNT_UPDATE_MULTI, 1, req_id, account, "", tag, value, currency]


def account_update_multi_end(req_id: int) -> list[Field]:
    return [Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id]


def account_summary(req_id: int, account: str, tag: str, value: str,
                    currency: str) -> list[Field]:
    return [Out.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> list[Field]:
    return [Out.ACCOUNT_SUMMARY_END, 1, req_id]


def account_value_items(snapshot: AccountSnapshot, account: str) -> list[tuple[str, str, str]]:
    """(tag, value, currency) as reqAccountUpdates reports them for a Reg T margin account."""
    usd = {
        "NetLiquidation": snapshot.net_liquidation,
        "TotalCashValue": snapshot.cash,
        "SettledCash": snapshot.cash,
        "CashBalance": snapshot.cash,
        "AvailableFunds": snapshot.available_funds,
        "BuyingPower": snapshot.buying_power,
        "EquityWithLoanValue": snapshot.net_liquidation,
        "ExcessLiquidity": snapshot.excess_liquidity,
        "GrossPositionValue": snapshot.gross_position_value,
        "StockMarketValue": snapshot.stock_value,
        "InitMarginReq": snapshot.init_margin,
        "MaintMarginReq": snapshot.maint_margin,
        "FullInitMarginReq": snapshot.init_margin,
        "FullMaintMarginReq": snapshot.maint_margin,
        "FullAvailableFunds": snapshot.available_funds,
        "FullExcessLiquidity": snapshot.excess_liquidity,
        "RegTEquity": snapshot.net_liquidation,
        "RegTMargin": snapshot.init_margin,
        "RealizedPnL": snapshot.realized_pnl,
        "UnrealizedPnL": snapshot.unrealized_pnl,
    }
    cushion = (snapshot.excess_liquidity / snapshot.net_liquidation
               if snapshot.net_liquidation > 0 else 0.0)
    items = [("AccountCode", account, ""), ("AccountType", "INDIVIDUAL", ""),
             ("AccountReady", "true", ""), ("Currency", "USD", "USD"),
             ("Cushion", f"{cushion:.6f}", ""), ("DayTradesRemaining", "-1", "")]
    items += [(tag, f"{value:.2f}", "USD") for tag, value in usd.items()]
    # IB repeats the cash and PnL lines in the BASE currency
    items += [(tag, f"{usd[tag]:.2f}", "BASE") for tag in
              ("CashBalance", "TotalCashValue", "NetLiquidation", "RealizedPnL", "UnrealizedPnL")]
    return items


# --------------------------------------------------------------------- bars
def historical_data(req_id: int, start: str, end: str, bars: list[AggregatedBar],
                    bar_seconds: int, format_date: int) -> list[Field]:
    fields: list[Field] = [Out.HISTORICAL_DATA, req_id, start, end, len(bars)]
    for bar in bars:
        fields += [format_bar_time(bar.start_s, bar_seconds, format_date), bar.open, bar.high,
                   bar.low, bar.close, bar.volume, round(bar.wap, 6), bar.count]
    return fields


def historical_data_update(req_id: int, bar: AggregatedBar, bar_seconds: int,
                           format_date: int) -> list[Field]:
    """Field order differs from historicalData: barCount first, then open, CLOSE, high, low."""
    return [Out.HISTORICAL_DATA_UPDATE, req_id, bar.count,
            format_bar_time(bar.start_s, bar_seconds, format_date), bar.open, bar.close,
            bar.high, bar.low, round(bar.wap, 6), bar.volume]


def real_time_bar(req_id: int, bar: AggregatedBar) -> list[Field]:
    return [Out.REAL_TIME_BARS, 3, req_id, bar.start_s, bar.open, bar.high, bar.low, bar.close,
            bar.volume, round(bar.wap, 6), bar.count]
# fmt: on
