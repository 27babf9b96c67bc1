"""``python -m ibsim`` as a separate process, driven by the real ib_async client and the control
port: fills, a dropped connection with recovery, a restart that keeps the execution record, the
bus as price source, and configuration errors."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq
from ib_async import IB, ExecutionFilter, MarketOrder, Stock
from ibsim.process import SimulatorProcess

from shared.bus import Publisher
from shared.messages import Bar
from tests.conftest import bus_security, sim_ports

pytestmark = pytest.mark.integration

NS = 1_000_000_000
T0 = 1_764_167_400 * NS


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def push_bar(sim: SimulatorProcess, minute: int, price: float) -> dict[str, object]:
    return sim.control(
        {
            "cmd": "push_bar",
            "symbol": "AAPL",
            "ts": T0 + minute * 60 * NS,
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": 100,
        }
    )


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(
        {**sim_ports(), "IBSIM_STATE_DIR": str(tmp_path / "state"), "IBSIM_SLIPPAGE_BPS": "0"},
        log_path=tmp_path / "ibsim.log",
    ) as proc:
        yield proc


async def connect(port: int, client_id: int = 1) -> IB:
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=10)
    return ib


async def test_market_order_round_trip_against_the_process(sim: SimulatorProcess) -> None:
    ib = await connect(sim.port)
    try:
        assert ib.client.serverVersion() == 157 and ib.managedAccounts() == ["DU1234567"]
        [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        assert contract is not None
        trade = ib.placeOrder(contract, MarketOrder("BUY", 10, orderRef="proc-1"))
        await until(lambda: trade.orderStatus.status == "Submitted")
        assert push_bar(sim, 1, 100.0) == {"ok": True, "fills": 1}
        await until(
            lambda: (
                trade.isDone()
                and bool(trade.fills)
                and trade.fills[0].commissionReport.commission > 0
            )
        )
        assert trade.orderStatus.status == "Filled"
        assert trade.fills[0].execution.orderRef == "proc-1"
    finally:
        ib.disconnect()


async def test_drop_between_order_and_fill_then_recover_exactly_once(
    sim: SimulatorProcess,
) -> None:
    ib = await connect(sim.port)
    try:
        [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        assert contract is not None
        trade = ib.placeOrder(contract, MarketOrder("SELL", 25, orderRef="dropped"))
        await until(lambda: trade.orderStatus.status == "Submitted")
        reply = sim.control({"cmd": "faults", "set": {"drop_connection_now": True}})
        assert reply["dropped"] == 1
        await until(lambda: not ib.isConnected())
        push_bar(sim, 1, 50.0)
        await ib.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=10)
        fills = [f for f in ib.fills() if f.execution.orderRef == "dropped"]
        assert len(fills) == 1 and fills[0].execution.shares == 25
        again = await ib.reqExecutionsAsync(ExecutionFilter(symbol="AAPL"))
        assert [f.execution.execId for f in again] == [fills[0].execution.execId]
        record = sim.control({"cmd": "executions", "order_ref": "dropped"})["executions"]
        assert isinstance(record, list) and len(record) == 1
        assert [p.position for p in ib.positions()] == [-25.0]
    finally:
        ib.disconnect()


async def test_restart_keeps_the_execution_record(sim: SimulatorProcess, tmp_path: Path) -> None:
    ib = await connect(sim.port, client_id=4)
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    assert contract is not None
    trade = ib.placeOrder(contract, MarketOrder("BUY", 40, orderRef="before-restart"))
    await until(lambda: trade.orderStatus.status == "Submitted")
    push_bar(sim, 1, 100.0)
    await until(trade.isDone)
    ib.disconnect()
    before = sim.control({"cmd": "executions"})["executions"]
    assert sim.stop() == 0  # SIGTERM is a clean stop
    sim.start()  # same ports, same state directory
    assert sim.control({"cmd": "executions"})["executions"] == before
    ib = await connect(sim.port, client_id=4)
    try:
        assert [f.execution.orderRef for f in ib.fills()] == ["before-restart"]
        assert [p.position for p in ib.positions()] == [40.0]
        trade = ib.placeOrder(contract, MarketOrder("SELL", 40, orderRef="after-restart"))
        await until(lambda: trade.orderStatus.status == "Submitted")
        assert trade.order.orderId > before[0]["order_id"]  # nextValidId survived too
        push_bar(sim, 2, 101.0)
        await until(trade.isDone)
        execution_ids = [e["exec_id"] for e in sim.control({"cmd": "executions"})["executions"]]
        assert len(set(execution_ids)) == 2
    finally:
        ib.disconnect()


async def test_bars_from_the_bus_drive_fills(busproxy: dict[str, str], tmp_path: Path) -> None:
    env = {**busproxy, **sim_ports(), "IBSIM_PRICE_SOURCE": "bus", "IBSIM_SLIPPAGE_BPS": "0"}
    with SimulatorProcess(env, log_path=tmp_path / "ibsim.log") as sim:
        ctx = zmq.Context()
        publisher = Publisher(
            ctx,
            busproxy["BUS_PUB_ENDPOINT"],
            "marketdata@test",  # only the marketdata identity may publish bar.*
            security=bus_security(busproxy, "marketdata"),
        )
        ib = await connect(sim.port)
        try:
            [contract] = await ib.qualifyContractsAsync(Stock("MSFT", "SMART", "USD"))
            assert contract is not None
            trade = ib.placeOrder(contract, MarketOrder("BUY", 3))
            await until(lambda: trade.orderStatus.status == "Submitted")
            minute = 0
            while not trade.isDone():  # repeat until the subscription has propagated
                minute += 1
                open_ts = T0 + (minute - 1) * 60 * NS
                publisher.publish(
                    Bar(
                        symbol="MSFT",
                        timeframe="1m",
                        bar_open_ts=open_ts,
                        open=300.0 + minute,
                        high=301.0 + minute,
                        low=299.0 + minute,
                        close=300.5 + minute,
                        volume=10.0,
                        ts_event=open_ts + 60 * NS,
                    )
                )
                await asyncio.sleep(0.1)
                assert minute < 100, "no bar from the bus reached the simulator"
            # the bar that filled it: the first one the simulator received after the order
            filled_on = round(trade.orderStatus.avgFillPrice - 300.0)
            assert 1 <= filled_on <= minute
            assert trade.orderStatus.avgFillPrice == 300.0 + filled_on
            [record] = sim.control({"cmd": "executions"})["executions"]
            assert record["bar_ts"] == T0 + filled_on * 60 * NS
            bars = await ib.reqHistoricalDataAsync(contract, "", "1 D", "1 min", "TRADES", True)
            assert bars and bars[-1].close - 300.5 == round(bars[-1].close - 300.5) >= filled_on
        finally:
            ib.disconnect()
            publisher.close()
            ctx.destroy(linger=0)


def test_a_bad_setting_fails_the_start_naming_the_key() -> None:
    env = {**os.environ, "IBSIM_PORT": "not-a-port", "IBSIM_PRICE_SOURCE": "none"}
    result = subprocess.run(
        [sys.executable, "-m", "ibsim"], env=env, capture_output=True, timeout=30
    )
    assert result.returncode == 2
    assert b"IBSIM_PORT" in result.stderr


def test_live_account_switch_and_outage(tmp_path: Path) -> None:
    with SimulatorProcess({**sim_ports(), "IBSIM_LIVE_ACCOUNT": "true"}) as sim:
        assert sim.control({"cmd": "ping"})["account"] == "U1234567"
        sim.control({"cmd": "faults", "set": {"outage_seconds": 1.0}})
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", sim.port), timeout=2).close()
        deadline = time.monotonic() + 10
        while not sim.control({"cmd": "ping"})["accepting"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ib = IB()
        ib.connect("127.0.0.1", sim.port, clientId=2, timeout=10)
        try:
            assert ib.managedAccounts() == ["U1234567"]
        finally:
            ib.disconnect()
