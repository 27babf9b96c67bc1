"""The unchanged ib_async client against the simulator over loopback TCP (simulator in-process)."""

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from ib_async import IB, ExecutionFilter, LimitOrder, MarketOrder, Stock
from ibsim.app import Simulator
from ibsim.config import IbsimSettings
from ibsim.control import control_request_async

pytestmark = pytest.mark.unit

NS = 1_000_000_000
T0 = 1_764_167_400 * NS  # 2025-11-26 14:30 UTC


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for a condition (a safety timeout, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.002)


class Feed:
    """One-minute bars for a symbol, one after the other."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.minute = itertools.count(1)

    def bar(
        self, o: float, h: float, low: float, c: float, symbol: str = "AAPL", volume: float = 1000.0
    ) -> int:
        return self.sim.exchange.on_bar(
            symbol, T0 + next(self.minute) * 60 * NS, o, h, low, c, volume
        )

    def flat(self, price: float, symbol: str = "AAPL") -> int:
        return self.bar(price, price, price, price, symbol)


def settings(**overrides: Any) -> IbsimSettings:
    values: dict[str, Any] = dict(port=0, control_port=0, price_source="none", slippage_bps=0.0)
    values.update(overrides)
    return IbsimSettings(**values)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(settings()) as simulator:
        yield simulator


@pytest.fixture
async def ib(sim: Simulator) -> AsyncIterator[IB]:
    client = IB()
    await client.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=5)
    yield client
    client.disconnect()


class Errors:
    def __init__(self, ib: IB) -> None:
        self.seen: list[tuple[int, int, str]] = []
        ib.errorEvent += lambda req_id, code, text, contract: self.seen.append((req_id, code, text))

    def codes(self) -> list[int]:
        return [code for _, code, _ in self.seen]


async def aapl(ib: IB) -> Stock:
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    assert isinstance(contract, Stock)
    return contract


async def test_connect_handshake_and_startup_sync(sim: Simulator, ib: IB) -> None:
    assert ib.client.serverVersion() == 157
    assert ib.managedAccounts() == ["DU1234567"]
    assert ib.positions() == [] and ib.openTrades() == []
    values = {v.tag: v.value for v in ib.accountValues() if v.currency in ("USD", "")}
    assert values["AccountType"] == "INDIVIDUAL"
    assert float(values["NetLiquidation"]) == 1_000_000.0
    reply = await control_request_async(sim.control_port, {"cmd": "ping"})
    assert reply["ok"] and reply["clients"] == [7]


async def test_client_id_in_use_is_refused(sim: Simulator, ib: IB) -> None:
    second = IB()
    errors = Errors(second)
    with pytest.raises((ConnectionError, asyncio.TimeoutError)):
        await second.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=1)
    assert 326 in errors.codes()  # TWS: "client id is already in use"
    assert not second.isConnected()
    assert ib.isConnected()


async def test_live_looking_account_id() -> None:
    async with Simulator(settings(live_account=True)) as live:
        client = IB()
        await client.connectAsync("127.0.0.1", live.port, clientId=1, timeout=5)
        try:
            assert client.managedAccounts() == ["U1234567"]
        finally:
            client.disconnect()


async def test_contract_qualification(ib: IB) -> None:
    errors = Errors(ib)
    contract = await aapl(ib)
    assert (contract.conId, contract.primaryExchange, contract.currency) == (
        265598,
        "NASDAQ",
        "USD",
    )
    [details] = await ib.reqContractDetailsAsync(Stock("MSFT", "SMART", "USD"))
    assert details.contract is not None and details.contract.conId == 272093
    again = await aapl(ib)
    assert again.conId == contract.conId  # stable
    assert await ib.qualifyContractsAsync(Stock("NOSUCH", "SMART", "USD")) == [None]
    assert 200 in errors.codes()


async def test_market_order_fills_with_commission_and_order_ref(sim: Simulator, ib: IB) -> None:
    feed = Feed(sim)
    contract = await aapl(ib)
    reports: list[Any] = []
    ib.commissionReportEvent += lambda trade, fill, report: reports.append(report)
    trade = ib.placeOrder(contract, MarketOrder("BUY", 100, orderRef="rl-AAPL-1"))
    await until(lambda: trade.orderStatus.status == "Submitted")
    assert trade.orderStatus.clientId == 7 and trade.order.permId > 0
    feed.bar(100, 101, 99, 100.5)
    await until(lambda: trade.isDone() and len(reports) == 1)
    assert trade.orderStatus.status == "Filled" and trade.orderStatus.avgFillPrice == 100.0
    [fill] = trade.fills
    assert fill.execution.orderRef == "rl-AAPL-1" and fill.execution.shares == 100
    assert fill.commissionReport.commission == 1.0
    assert reports[0].execId == fill.execution.execId
    record = (await control_request_async(sim.control_port, {"cmd": "executions"}))["executions"]
    assert [(r["exec_id"], r["order_ref"], r["side"]) for r in record] == [
        (fill.execution.execId, "rl-AAPL-1", "BUY")
    ]


async def test_limit_order_waits_for_the_price(sim: Simulator, ib: IB) -> None:
    feed = Feed(sim)
    contract = await aapl(ib)
    trade = ib.placeOrder(contract, LimitOrder("BUY", 10, 95.0))
    await until(lambda: trade.orderStatus.status == "Submitted")
    feed.bar(100, 101, 96, 99)
    await asyncio.sleep(0.02)
    assert trade.orderStatus.status == "Submitted" and trade.fills == []
    feed.bar(99, 99, 94, 95)
    await until(trade.isDone)
    assert trade.orderStatus.avgFillPrice == 95.0


async def test_bracket_order_one_cancels_other(sim: Simulator, ib: IB) -> None:
    feed = Feed(sim)
    contract = await aapl(ib)
    bracket = ib.bracketOrder("BUY", 100, 100.0, takeProfitPrice=110.0, stopLossPrice=95.0)
    parent, take, stop = (ib.placeOrder(contract, order) for order in bracket)
    await until(lambda: stop.orderStatus.status == "PreSubmitted")
    assert parent.orderStatus.status == "Submitted"
    feed.bar(100, 101, 99, 100)
    await until(
        lambda: parent.orderStatus.status == "Filled" and take.orderStatus.status == "Submitted"
    )
    feed.bar(105, 111, 104, 110)
    await until(lambda: take.isDone() and stop.isDone())
    assert take.orderStatus.status == "Filled" and stop.orderStatus.status == "Cancelled"
    assert stop.fills == []
    assert ib.positions() == []


async def test_cancel(ib: IB) -> None:
    errors = Errors(ib)
    contract = await aapl(ib)
    trade = ib.placeOrder(contract, LimitOrder("BUY", 10, 50.0))
    await until(lambda: trade.orderStatus.status == "Submitted")
    ib.cancelOrder(trade.order)
    await until(lambda: trade.orderStatus.status == "Cancelled")
    await until(lambda: 202 in errors.codes())
    assert trade.isDone() and trade.fills == []


async def test_partial_fills(sim: Simulator, ib: IB) -> None:
    feed = Feed(sim)
    contract = await aapl(ib)
    await control_request_async(
        sim.control_port, {"cmd": "faults", "set": {"partial_fill_fraction": 0.5}}
    )
    trade = ib.placeOrder(contract, MarketOrder("SELL", 300, orderRef="partial"))
    await until(lambda: trade.orderStatus.status == "Submitted")
    feed.flat(100)
    await until(lambda: trade.orderStatus.filled == 150)
    assert trade.orderStatus.status == "Submitted" and trade.orderStatus.remaining == 150
    feed.flat(101)
    await until(trade.isDone)
    assert [f.execution.shares for f in trade.fills] == [150, 150]
    assert trade.orderStatus.avgFillPrice == pytest.approx(100.5)
    assert sum(f.commissionReport.commission for f in trade.fills) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("code", "reason", "text"),
    [
        (201, "Trading halted", "Order rejected - reason:Trading halted"),
        (
            10349,
            "Order TIF was set to DAY based on order preset.",
            "Order TIF was set to DAY based on order preset.",
        ),
    ],
)
async def test_rejection_is_an_error_event_with_code_and_reason(
    sim: Simulator, ib: IB, code: int, reason: str, text: str
) -> None:
    errors = Errors(ib)
    contract = await aapl(ib)
    await control_request_async(
        sim.control_port,
        {
            "cmd": "faults",
            "set": {"reject_next_n": 1, "reject_reason": reason, "reject_code": code},
        },
    )
    trade = ib.placeOrder(contract, MarketOrder("BUY", 1, orderRef="rejected"))
    await until(trade.isDone)
    assert (trade.order.orderId, code, text) in errors.seen
    assert trade.orderStatus.status == "Cancelled"
    assert any(entry.errorCode == code for entry in trade.log)
    orders = (await control_request_async(sim.control_port, {"cmd": "orders"}))["orders"]
    assert orders[0]["order_ref"] == "rejected" and orders[0]["reject_code"] == code


async def test_fill_missed_while_disconnected_is_recovered_exactly_once(
    sim: Simulator, ib: IB
) -> None:
    feed = Feed(sim)
    contract = await aapl(ib)
    trade = ib.placeOrder(contract, MarketOrder("BUY", 100, orderRef="lost-fill"))
    await until(lambda: trade.orderStatus.status == "Submitted")
    await control_request_async(
        sim.control_port, {"cmd": "faults", "set": {"drop_connection_now": True}}
    )
    await until(lambda: not ib.isConnected())
    feed.flat(100)  # fills while the client is away: nobody hears of it
    assert trade.fills == []
    await ib.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=5)  # startup reqExecutions
    recovered = [f for f in ib.fills() if f.execution.orderRef == "lost-fill"]
    assert len(recovered) == 1 and recovered[0].commissionReport.commission == 1.0
    # ib_async drops its trades on a disconnect; the completed order rebuilt the trade by permId
    [rebuilt] = [t for t in ib.trades() if t.order.orderRef == "lost-fill"]
    assert rebuilt.order.permId == trade.order.permId
    assert rebuilt.orderStatus.status == "Filled" and len(rebuilt.fills) == 1
    again = await ib.reqExecutionsAsync(ExecutionFilter(clientId=7))
    assert [f.execution.execId for f in again] == [recovered[0].execution.execId]
    assert len([f for f in ib.fills() if f.execution.orderRef == "lost-fill"]) == 1
    completed = await ib.reqCompletedOrdersAsync(apiOnly=True)
    assert [(t.order.orderRef, t.orderStatus.status) for t in completed] == [
        ("lost-fill", "Filled")
    ]

    fresh = IB()  # a restarted process recovers it too
    await fresh.connectAsync("127.0.0.1", sim.port, clientId=8, timeout=5)
    try:
        assert [f.execution.orderRef for f in fresh.fills()] == []  # not its client's fill
        assert [p.position for p in fresh.positions()] == [100.0]
    finally:
        fresh.disconnect()


async def test_positions_account_values_and_portfolio(sim: Simulator, ib: IB) -> None:
    feed = Feed(sim)
    contract = await aapl(ib)
    trade = ib.placeOrder(contract, MarketOrder("BUY", 100))
    await until(lambda: trade.orderStatus.status == "Submitted")
    feed.flat(100)
    await until(lambda: len(ib.positions()) == 1)
    values = {
        v.tag: float(v.value)
        for v in ib.accountValues()
        if v.currency == "USD" and v.tag != "Currency"
    }  # pushed at once after the fill
    assert values["TotalCashValue"] == pytest.approx(1_000_000 - 10_001)
    assert values["NetLiquidation"] == pytest.approx(1_000_000 - 10_001 + 10_000)
    assert values["GrossPositionValue"] == pytest.approx(10_000)
    assert values["BuyingPower"] > 0
    feed.flat(110)
    await until(lambda: bool(ib.portfolio()) and ib.portfolio()[0].marketPrice == 110)
    [position] = ib.positions()
    assert position.position == 100 and position.avgCost == pytest.approx(100.01)
    [item] = ib.portfolio()
    assert item.unrealizedPNL == pytest.approx(999.0)
    summary = {v.tag: v.value for v in await ib.accountSummaryAsync()}  # a fresh snapshot
    assert float(summary["NetLiquidation"]) == pytest.approx(1_000_000 - 10_001 + 11_000)


async def test_historical_bars_and_keep_up_to_date(sim: Simulator, ib: IB) -> None:
    feed = Feed(sim)
    for i in range(30):
        feed.bar(100 + i, 101 + i, 99 + i, 100.5 + i)
    contract = await aapl(ib)
    bars = await ib.reqHistoricalDataAsync(contract, "", "1800 S", "5 mins", "TRADES", True)
    assert len(bars) == 6
    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].close) == (100, 105, 99, 104.5)
    assert bars[0].volume == 5000
    live = await ib.reqHistoricalDataAsync(
        contract, "", "600 S", "5 mins", "TRADES", True, keepUpToDate=True
    )
    count = len(live)
    feed.bar(200, 201, 199, 200)
    await until(lambda: len(live) == count + 1)
    assert live[-1].close == 200
    daily = await ib.reqHistoricalDataAsync(contract, "", "1 D", "1 day", "TRADES", True)
    assert len(daily) == 1 and daily[0].open == 100 and daily[0].close == 200


async def test_real_time_bars_are_five_seconds(sim: Simulator, ib: IB) -> None:
    feed = Feed(sim)
    contract = await aapl(ib)
    bars = ib.reqRealTimeBars(contract, 5, "TRADES", False)
    await until(lambda: any(s.subs.real_time for s in sim.ib_server.sessions))
    feed.bar(100, 103, 98, 102, volume=1200)
    await until(lambda: len(bars) == 12)
    assert bars[0].open_ == 100 and bars[-1].close == 102
    assert max(b.high for b in bars) == 103 and min(b.low for b in bars) == 98
    assert (bars[1].time - bars[0].time).total_seconds() == 5


async def test_historical_pacing_violation() -> None:
    async with Simulator(settings(hist_pacing_max_requests=2)) as paced:
        Feed(paced).flat(100)
        client = IB()
        await client.connectAsync("127.0.0.1", paced.port, clientId=3, timeout=5)
        try:
            errors = Errors(client)
            contract = await aapl(client)
            for _ in range(2):
                ok = await client.reqHistoricalDataAsync(
                    contract, "", "1 D", "1 min", "TRADES", False
                )
                assert len(ok) == 1
            refused = await client.reqHistoricalDataAsync(
                contract, "", "1 D", "1 min", "TRADES", False
            )
            assert len(refused) == 0
            [(_, _, text)] = [e for e in errors.seen if e[1] == 162]
            assert "pacing violation" in text
        finally:
            client.disconnect()


async def test_delayed_ack_never_arrives_after_the_fill(sim: Simulator, ib: IB) -> None:
    feed = Feed(sim)
    contract = await aapl(ib)
    await control_request_async(sim.control_port, {"cmd": "faults", "set": {"delay_acks_ms": 150}})
    trade = ib.placeOrder(contract, MarketOrder("BUY", 5))
    await until(lambda: sim.exchange.open_orders() != [])  # the broker has it, the client not yet
    assert trade.orderStatus.status == "PendingSubmit"
    feed.flat(100)
    await until(trade.isDone)
    statuses = [entry.status for entry in trade.log]
    assert statuses.index("Submitted") < statuses.index("Filled")


async def test_outage_refuses_connections_then_recovers(sim: Simulator, ib: IB) -> None:
    await control_request_async(sim.control_port, {"cmd": "faults", "set": {"outage_seconds": 0.3}})
    await until(lambda: not ib.isConnected())
    with pytest.raises(ConnectionRefusedError):
        await IB().connectAsync("127.0.0.1", sim.port, clientId=9, timeout=2)
    await until(lambda: sim.ib_server.accepting)
    await ib.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=5)
    assert ib.isConnected()


async def test_control_port_rejects_bad_commands(sim: Simulator) -> None:
    unknown = await control_request_async(sim.control_port, {"cmd": "explode"})
    assert unknown["ok"] is False and "unknown cmd" in unknown["error"]
    bad = await control_request_async(
        sim.control_port, {"cmd": "faults", "set": {"partial_fill_fraction": 2}}
    )
    assert bad["ok"] is False
    pushed = await control_request_async(
        sim.control_port,
        {
            "cmd": "push_bar",
            "symbol": "MSFT",
            "ts": T0,
            "open": 1,
            "high": 2,
            "low": 0.5,
            "close": 1.5,
            "volume": 10,
        },
    )
    assert pushed == {"ok": True, "fills": 0}
    assert (await control_request_async(sim.control_port, {"cmd": "reset"}))["ok"]
