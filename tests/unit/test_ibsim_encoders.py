"""Every outgoing message, decoded by the unchanged ib_async Decoder at server version 157."""

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from ib_async.decoder import Decoder
from ib_async.util import UNSET_DOUBLE
from ibsim import encoders as enc
from ibsim.bars import AggregatedBar
from ibsim.contracts import ContractRegistry
from ibsim.models import ExecutionRecord, PositionState, SimOrder, Status
from ibsim.wire import FrameReader, encode_frame

pytestmark = pytest.mark.unit

AAPL = ContractRegistry(["AAPL"]).get("AAPL")
assert AAPL is not None


class Recorder:
    """A wrapper that records every callback the decoder makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.defaultTimezone = dt.UTC
        self.ib = SimpleNamespace(TimezoneTWS=None)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


def decode(fields: list[Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """Through the real bytes: encode, frame-split as the client does, decode."""
    (wire_fields,) = FrameReader(expect_handshake=False).feed(encode_frame(fields))
    recorder = Recorder()
    Decoder(recorder, enc.SERVER_VERSION).interpret(wire_fields)
    return recorder.calls


def only_call(fields: list[Any], name: str) -> tuple[Any, ...]:
    calls = decode(fields)
    assert [c[0] for c in calls] == [name], calls  # a decoding error would show up as no call
    return calls[0][1]


def make_order(**overrides: Any) -> SimOrder:
    values: dict[str, Any] = dict(
        perm_id=1_000_123,
        client_id=7,
        order_id=42,
        contract=AAPL,
        action="BUY",
        total_qty=100.0,
        order_type="LMT",
        lmt_price=101.25,
        aux_price=None,
        tif="GTC",
        oca_group="oca-1",
        oca_type=3,
        order_ref="rl-AAPL-17",
        account="DU1234567",
        parent_id=40,
        transmit=True,
        outside_rth=False,
        received_ns=1,
        status=Status.SUBMITTED,
    )
    values.update(overrides)
    return SimOrder(**values)


def make_record(realized: float | None = None) -> ExecutionRecord:
    return ExecutionRecord(
        exec_id="0000abcd.000f4241.01.01",
        perm_id=1_000_123,
        order_id=42,
        client_id=7,
        order_ref="rl-AAPL-17",
        account="DU1234567",
        symbol="AAPL",
        con_id=AAPL.con_id,
        side="BOT",
        shares=60.0,
        price=100.5,
        cum_qty=60.0,
        avg_price=100.5,
        commission=1.0,
        realized_pnl=realized,
        time_ns=1_764_197_400 * 10**9,
        bar_ts_ns=0,
        venue="ISLAND",
    )


def test_handshake_session_messages() -> None:
    assert only_call(enc.next_valid_id(12), "nextValidId") == (12,)
    assert only_call(enc.managed_accounts(["DU1234567"]), "managedAccounts") == ("DU1234567",)
    assert only_call(enc.error(42, 201, "Order rejected - reason:x"), "error") == (
        42,
        201,
        "Order rejected - reason:x",
        "",
    )
    assert only_call(enc.current_time(1_700_000_000), "currentTime") == (1_700_000_000,)


def test_open_order_decodes_every_field_we_set() -> None:
    order_id, contract, order, state = only_call(enc.open_order(make_order()), "openOrder")
    assert order_id == 42
    assert (contract.conId, contract.symbol, contract.secType, contract.currency) == (
        265598,
        "AAPL",
        "STK",
        "USD",
    )
    assert (order.clientId, order.orderId, order.permId) == (7, 42, 1_000_123)
    assert (order.action, order.totalQuantity, order.orderType) == ("BUY", 100.0, "LMT")
    assert order.lmtPrice == 101.25 and order.auxPrice == UNSET_DOUBLE
    assert (order.tif, order.ocaGroup, order.ocaType, order.parentId) == ("GTC", "oca-1", 3, 40)
    assert order.orderRef == "rl-AAPL-17" and order.account == "DU1234567"
    assert order.whatIf is False and order.usePriceMgmtAlgo is False
    assert state.status == "Submitted"


def test_filled_open_order_carries_its_commission() -> None:
    filled = make_order(status=Status.FILLED, filled_qty=100.0, commission_paid=1.25)
    *_, state = only_call(enc.open_order(filled), "openOrder")
    assert state.status == "Filled" and state.commission == 1.25
    assert state.commissionCurrency == "USD"


def test_order_status_carries_the_client_id() -> None:
    order = make_order(filled_qty=60.0, avg_fill_price=100.5, last_fill_price=100.5)
    args = only_call(enc.order_status(order), "orderStatus")
    assert args == (42, "Submitted", 60.0, 40.0, 100.5, 1_000_123, 40, 100.5, 7, "", 0.0)
    held = only_call(enc.order_status(make_order(status=Status.PRE_SUBMITTED)), "orderStatus")
    assert held[1] == "PreSubmitted" and held[9] == "child"


def test_completed_order() -> None:
    order = make_order(
        status=Status.FILLED,
        filled_qty=100.0,
        completed_ns=1_764_197_400 * 10**9,
        done_reason="Filled",
    )
    contract, decoded, state = only_call(enc.completed_order(order, 999), "completedOrder")
    assert contract.symbol == "AAPL" and decoded.permId == 1_000_123
    assert decoded.orderRef == "rl-AAPL-17" and decoded.filledQuantity == 100.0
    assert decoded.parentPermId == 999 and decoded.lmtPrice == 101.25
    assert state.status == "Filled" and state.completedStatus == "Filled"
    assert state.completedTime == "20251126 22:50:00 UTC"


def test_exec_details_and_commission_report() -> None:
    req_id, contract, execution = only_call(
        enc.exec_details(-1, make_record(), AAPL), "execDetails"
    )
    assert req_id == -1 and contract.conId == 265598 and contract.exchange == "ISLAND"
    assert (execution.execId, execution.side, execution.shares, execution.price) == (
        "0000abcd.000f4241.01.01",
        "BOT",
        60.0,
        100.5,
    )
    assert (execution.permId, execution.clientId, execution.orderId) == (1_000_123, 7, 42)
    assert execution.orderRef == "rl-AAPL-17" and execution.cumQty == 60.0
    assert execution.time == dt.datetime(2025, 11, 26, 22, 50, tzinfo=dt.UTC)
    (report,) = only_call(enc.commission_report(make_record()), "commissionReport")
    assert (report.execId, report.commission, report.currency) == (
        "0000abcd.000f4241.01.01",
        1.0,
        "USD",
    )
    assert report.realizedPNL == UNSET_DOUBLE  # opening execution: nothing realized
    (closing,) = only_call(enc.commission_report(make_record(realized=12.5)), "commissionReport")
    assert closing.realizedPNL == 12.5
    assert only_call(enc.exec_details_end(9), "execDetailsEnd") == (9,)


def test_contract_details() -> None:
    req_id, details = only_call(
        enc.contract_details(3, AAPL, "SMART", dt.date(2026, 11, 26)), "contractDetails"
    )
    contract = details.contract
    assert req_id == 3
    assert (contract.conId, contract.symbol, contract.exchange, contract.primaryExchange) == (
        265598,
        "AAPL",
        "SMART",
        "NASDAQ",
    )
    assert (contract.currency, contract.tradingClass) == ("USD", "NMS")
    assert details.minTick == 0.01 and details.longName == "APPLE INC"
    assert details.stockType == "COMMON" and details.timeZoneId == "US/Eastern"
    assert details.liquidHours.startswith("20261126:0930-20261126:1600")
    assert only_call(enc.contract_details_end(3), "contractDetailsEnd") == (3,)


def test_positions_and_account_messages() -> None:
    state = PositionState(quantity=-50.0, avg_cost=99.98, realized_pnl=3.5)
    account, contract, qty, avg = only_call(enc.position("DU1234567", AAPL, state), "position")
    assert (account, contract.conId, qty, avg) == ("DU1234567", 265598, -50.0, 99.98)
    contract, *values = only_call(
        enc.portfolio_value("DU1234567", AAPL, state, 101.0), "updatePortfolio"
    )
    assert contract.primaryExchange == "NASDAQ"
    assert values == [-50.0, 101.0, -5050.0, 99.98, -51.0, 3.5, "DU1234567"]
    assert only_call(
        enc.account_value("NetLiquidation", "1000.00", "USD", "DU1"), "updateAccountValue"
    ) == ("NetLiquidation", "1000.00", "USD", "DU1")
    assert only_call(enc.account_download_end("DU1"), "accountDownloadEnd") == ("DU1",)
    assert only_call(
        enc.account_update_multi(4, "DU1", "BuyingPower", "5.00", "USD"), "accountUpdateMulti"
    ) == (4, "DU1", "", "BuyingPower", "5.00", "USD")
    assert only_call(enc.account_update_multi_end(4), "accountUpdateMultiEnd") == (4,)
    assert only_call(
        enc.account_summary(5, "DU1", "NetLiquidation", "1.00", "USD"), "accountSummary"
    ) == (5, "DU1", "NetLiquidation", "1.00", "USD")
    assert only_call(enc.position_end(), "positionEnd") == ()
    assert only_call(enc.open_order_end(), "openOrderEnd") == ()
    assert only_call(enc.completed_orders_end(), "completedOrdersEnd") == ()


def test_bar_messages() -> None:
    bars = [
        AggregatedBar(1_764_167_400, 100.0, 101.0, 99.5, 100.5, 1000.0, 100.2, 3),
        AggregatedBar(1_764_167_700, 100.5, 102.0, 100.0, 101.5, 500.0, 101.1, 2),
    ]
    calls = decode(enc.historical_data(8, "s", "e", bars, 300, 1))
    assert [c[0] for c in calls] == ["historicalData", "historicalData", "historicalDataEnd"]
    first = calls[0][1][1]
    assert first.date == "20251126 14:30:00 UTC"
    assert (first.open, first.high, first.low, first.close, first.volume, first.barCount) == (
        100.0,
        101.0,
        99.5,
        100.5,
        1000.0,
        3,
    )
    req_id, update = only_call(
        enc.historical_data_update(8, bars[1], 300, 2), "historicalDataUpdate"
    )
    assert req_id == 8 and update.date == "1764167700"
    assert (update.open, update.high, update.low, update.close) == (100.5, 102.0, 100.0, 101.5)
    args = only_call(enc.real_time_bar(6, bars[0]), "realtimeBar")
    assert args[:7] == (6, 1_764_167_400, 100.0, 101.0, 99.5, 100.5, 1000.0)
