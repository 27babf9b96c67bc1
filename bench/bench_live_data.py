"""live_bar_to_order_ack: a bar entering the simulator's book -> marketdata publishes it (through
the TWS API: 5-second real-time bars aggregated to 1-minute bars) -> inference's signal -> the
order acknowledged by the simulator, with every service a real process on the real bus.

Rows:

* ``live_bar_to_order_ack`` (p50/p99, bars that caused an order). Baseline in the same run, from
  the same samples: marketdata's publish -> order ack, the chain the replay path runs (the replay
  source publishes bars itself, so this is all it pays).
* ``sim_bar_to_marketdata_publish`` (p50/p99, every bar): the TWS API leg alone (the simulator
  splits the bar into 5-second bars, marketdata aggregates, validates, stores and publishes).

The simulator takes its prices only from its control port here (``IBSIM_PRICE_SOURCE=none``,
``push_bar``): a sawtooth of 1-minute bars whose MA crossovers make the baseline policy flip, so
some bars cause orders. Bars are pushed one at a time, each after the last one's chain settled.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import zmq.asyncio

from bench.common import latency_row, not_possible
from shared.auth import load_or_create_key
from shared.bus import Subscriber, security_from_env
from shared.command_channel import CommandError, call
from shared.messages import Bar, OrderEvent, TargetPosition

ROOT = Path(__file__).resolve().parents[1]
NS = 1_000_000_000
MINUTE = 60 * NS
SESSION_OPEN = pd.Timestamp("2023-06-01 13:30", tz="UTC").value  # 09:30 New York
HISTORY_BARS = 120
PERIOD = 24  # bars per sawtooth cycle


def _price(i: int) -> float:
    phase = i % PERIOD
    return 100.0 + (phase if phase < PERIOD // 2 else PERIOD - phase) * 0.5


def _bar_args(i: int) -> dict[str, Any]:
    o, c = _price(i), _price(i + 1)
    close_ts = SESSION_OPEN + (i + 1) * MINUTE
    return {
        "cmd": "push_bar",
        "symbol": "AAPL",
        "open": o,
        "high": max(o, c) + 0.05,
        "low": min(o, c) - 0.05,
        "close": c,
        "volume": 1000.0,
        "ts": close_ts,
        "bar_open_ts": close_ts - MINUTE,
    }


def bench_live_data(bus_env: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    try:
        return asyncio.run(_bench(bus_env, 60 if quick else 240))
    except (RuntimeError, TimeoutError) as exc:
        return [not_possible("live_bar_to_order_ack", str(exc))]


async def _bench(bus_env: dict[str, str], n: int) -> list[dict[str, Any]]:
    from ibsim.control import control_request
    from ibsim.process import free_ports

    tmp = Path(tempfile.mkdtemp(prefix="live-data-bench-"))
    ib_port, control_port = free_ports(2)
    paper = tmp / "paper.json"
    paper.write_text(
        json.dumps(
            {
                "symbols": ["AAPL"],
                "max_position": 100,
                "max_orders_per_minute": 100_000,
                "max_gross_exposure": 1e9,
                "max_daily_loss": 1e12,
                "ib": {"port": ib_port, "client_id": 31},
            }
        )
    )
    env = {
        **os.environ,
        **bus_env,
        "LOG_LEVEL": "WARNING",
        "IBSIM_PORT": str(ib_port),
        "IBSIM_CONTROL_PORT": str(control_port),
        "IBSIM_PRICE_SOURCE": "none",
        "IB_PORT": str(ib_port),
        "MARKETDATA_SOURCE": "ib",
        "MARKETDATA_SYMBOLS": "AAPL",
        "MARKETDATA_BAR_SIZE": "1m",
        "MARKETDATA_IB_WARMUP_BARS": str(HISTORY_BARS),
        "MARKETDATA_STATE_DIR": str(tmp / "md"),
        "INFERENCE_MODEL_VERSION": "baseline",
        "EXECUTION_BROKER": "ib",
        "PAPER_TRADING_CONFIG": str(paper),
        "EXECUTION_STATE_DIR": str(tmp / "execution"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    log = open(tmp / "processes.log", "ab")  # noqa: SIM115
    procs: list[subprocess.Popen[bytes]] = []

    def start(module: str) -> None:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", module], env=env, cwd=ROOT, stdout=log, stderr=log
            )
        )

    def control(payload: dict[str, Any]) -> dict[str, Any]:
        reply = control_request(control_port, payload, timeout_s=10.0)
        if not reply.get("ok"):
            raise RuntimeError(f"ibsim control: {reply}")
        return reply

    key = load_or_create_key(env["BUS_SECRET_FILE"])
    operator = security_from_env("operator", env)

    async def ready(service: str, what: str = "ready") -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                status = await asyncio.to_thread(
                    call, env[f"{service.upper()}_CMD_ENDPOINT"], "status", {}, key, 2.0,
                    "bench", operator, service,
                )  # fmt: skip
                if status.get(what):
                    return
            except CommandError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service} not {what}; see {tmp / 'processes.log'}")
            await asyncio.sleep(0.2)

    ctx = zmq.asyncio.Context()
    sub = Subscriber(ctx, env["BUS_SUB_ENDPOINT"], ["bar.", "signal.", "order."],
                     security=security_from_env("monitor", env))  # fmt: skip
    try:
        start("ibsim")
        deadline = time.monotonic() + 30
        while True:
            try:
                control({"cmd": "ping"})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("ibsim did not start") from None
                await asyncio.sleep(0.2)
        for i in range(HISTORY_BARS):
            control(_bar_args(i))
        start("execution")
        start("marketdata")
        await ready("marketdata", "live")
        start("inference")
        await ready("execution")
        await ready("inference")
        await asyncio.sleep(1.0)  # our subscription reaches the forwarder (not a measurement)
        chain, tws_leg, replay_leg = [], [], []
        last_target: float | None = None
        for i in range(HISTORY_BARS, HISTORY_BARS + n):
            args = _bar_args(i)
            t0 = time.perf_counter()
            await asyncio.to_thread(control, args)
            bar = await _next(sub, Bar, lambda m, ts=args["ts"]: m.ts_event == ts)
            t1 = time.perf_counter()
            signal = await _next(sub, TargetPosition, lambda m, ts=args["ts"]: m.bar_close_ts == ts)
            changed = last_target is not None and signal.target_position != last_target
            last_target = signal.target_position
            tws_leg.append(t1 - t0)
            if not changed:
                continue
            try:
                event = await _next(
                    sub,
                    OrderEvent,
                    lambda m, s=bar.seq: m.bar_seq == s and m.status != "submitted",
                    3.0,
                )
            except TimeoutError:
                continue  # a change below the rebalance threshold: no order
            if event.status == "acknowledged":
                t3 = time.perf_counter()
                chain.append(t3 - t0)
                replay_leg.append(t3 - t1)
        if not chain:
            raise RuntimeError("no bar caused an order")
        base = latency_row("marketdata_publish_to_order_ack", replay_leg)
        return [
            latency_row(
                "live_bar_to_order_ack",
                chain,
                baseline={
                    "name": "marketdata publish -> order ack (replay path)",
                    "value": base["value"],
                },
                goal="",
                note=f"1-minute bars through reqRealTimeBars; replay-path p99 {base['p99']} ms",
            ),
            latency_row(
                "sim_bar_to_marketdata_publish",
                tws_leg,
                note="push_bar -> 5 s bars -> aggregate, validate, store, publish",
            ),
        ]
    finally:
        sub.close()
        ctx.destroy(linger=0)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _settled(seq: int) -> Any:
    """An order event of bar ``seq`` past "submitted" (acknowledged, rejected, skipped)."""
    return lambda m: m.bar_seq == seq and m.status != "submitted"


async def _next(sub: Subscriber, kind: type, match: Any, timeout_s: float = 10.0) -> Any:
    """The next message of ``kind`` that ``match``es (others are skipped)."""

    async def loop() -> Any:
        while True:
            message = await sub.recv()
            if isinstance(message, kind) and match(message):
                return message

    return await asyncio.wait_for(loop(), timeout_s)
