"""Benchmark: TargetPosition published on the bus -> order acknowledged by the IB simulator.

    python -m execution.bench 200

Starts its own busproxy, ``python -m ibsim`` and ``python -m execution`` (``EXECUTION_BROKER=ib``)
on free ports, publishes ``n`` signals whose targets alternate between +1 and -1 (each one needs an
order), each followed (after its acknowledgement) by a bar that fills it, and for each measures

* ``signal_to_ack``: from the signal's ``ts_publish`` (stamped by the bus publisher) to the
  ``ts_event`` of the ``acknowledged`` OrderEvent, which execution stamps when the simulator's
  openOrder/orderStatus reached it: bus hop + decision + journal commit + placeOrder over TCP +
  the simulator's answer;
* ``round_trip``: to the moment this process received that OrderEvent (one more bus hop).

* ``signal_to_submitted``: to the ``ts_event`` of the ``submitted`` OrderEvent, stamped right
  after ``placeOrder`` returned (bus hop + decision + journal commit + ib_async's placeOrder), so
  the remainder is the simulator's answer and the client reading it.

Signals are paced (default 20 per second) below ib_async's client-side throttle (45 requests per
second, IB's own limit is 50 messages per second), which would otherwise queue orders and measure
the throttle. The first ``warmup`` signals are not counted. All processes run on this machine, so
their clocks agree.

``bench_bare_paced`` is the like-for-like baseline: bare ``ib_async`` placeOrder -> Submitted
against the same simulator at the same pace. Pacing matters on a shared VM: between two orders
every process sleeps, and waking each one costs (measured 2.3 ms p50 paced at 20/s against 0.5 ms
back to back for the very same bare call).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zoneinfo
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from shared.auth import load_or_create_key
from shared.bus import Publisher, Subscriber, security_from_env
from shared.command_channel import CommandError, call
from shared.messages import Bar, OrderEvent, TargetPosition

REPO_ROOT = Path(__file__).resolve().parents[2]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def bench_signal_to_ack(n: int = 200, rate_per_s: float = 20.0, warmup: int = 5) -> dict[str, Any]:
    """p50/p99 (ms): signal published -> order acknowledged by the simulator, real sockets."""
    return asyncio.run(_bench(n, rate_per_s, warmup))


async def _bench(n: int, rate_per_s: float, warmup: int) -> dict[str, Any]:
    from ibsim.process import free_ports

    tmp = Path(tempfile.mkdtemp(prefix="execution-bench-"))
    # every port below the ephemeral range, as SimulatorProcess picks its own: a port from
    # bind(port 0) can be taken by an outbound connection before its process binds it
    sim_port, sim_control_port, pub_port, sub_port, cmd_port = free_ports(5)
    env = {
        **os.environ,
        "BUS_PUB_ENDPOINT": f"tcp://127.0.0.1:{pub_port}",
        "BUS_SUB_ENDPOINT": f"tcp://127.0.0.1:{sub_port}",
        "BUS_SECRET_FILE": str(tmp / "bus.key"),
        "EXECUTION_CMD_ENDPOINT": f"tcp://127.0.0.1:{cmd_port}",
        "IBSIM_PORT": str(sim_port),
        "IBSIM_CONTROL_PORT": str(sim_control_port),
        "IBSIM_PRICE_SOURCE": "bus",  # the bars the bench publishes fill its orders
        "LOG_LEVEL": "WARNING",
    }
    paper = tmp / "paper.json"
    paper.write_text(
        json.dumps(
            {
                "symbols": ["AAPL"],
                "max_position": 100,
                "max_orders_per_minute": 100_000,
                "max_gross_exposure": 1e9,
                # thousands of round trips pay commission and slippage: not a loss to halt on
                "max_daily_loss": 1e12,
                "ib": {"port": int(env["IBSIM_PORT"]), "client_id": 31},
            }
        )
    )
    env.update(
        {
            "EXECUTION_BROKER": "ib",
            "PAPER_TRADING_CONFIG": str(paper),
            "EXECUTION_STATE_DIR": str(tmp / "execution"),
            "EXECUTION_WARMUP_BARS": "false",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
        }
    )
    procs: list[subprocess.Popen[bytes]] = []
    log = open(tmp / "processes.log", "ab")  # noqa: SIM115
    for module in ("shared.busproxy", "ibsim", "execution"):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", module],
                env=env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        await asyncio.sleep(0.3)
    key = load_or_create_key(env["BUS_SECRET_FILE"])
    ctx = zmq.asyncio.Context()
    # With CURVE on, signals come from the inference identity and bars from marketdata's
    publisher = Publisher(ctx, env["BUS_PUB_ENDPOINT"], "inference-bench",
                          security=security_from_env("inference", env))  # fmt: skip
    bars = Publisher(ctx, env["BUS_PUB_ENDPOINT"], "marketdata-bench",
                     security=security_from_env("marketdata", env))  # fmt: skip
    subscriber = Subscriber(ctx, env["BUS_SUB_ENDPOINT"], ["order."],
                            security=security_from_env("monitor", env))  # fmt: skip
    operator = security_from_env("operator", env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status = await asyncio.to_thread(
                    call,
                    env["EXECUTION_CMD_ENDPOINT"],
                    "status",
                    {},
                    key,
                    2.0,
                    "bench",
                    operator,
                    "execution",
                )
                if status.get("ready"):
                    break
            except CommandError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"execution not ready; see {tmp / 'processes.log'}")
            await asyncio.sleep(0.1)
        ny = zoneinfo.ZoneInfo("America/New_York")
        close_ts = int(dt.datetime(2024, 3, 4, 16, tzinfo=ny).timestamp() * 1e9)
        # a bar so execution knows the price; then wait until its subscription is live
        while True:
            bars.publish(
                Bar(
                    symbol="AAPL",
                    timeframe="1d",
                    bar_open_ts=close_ts - 1,
                    open=100,
                    high=101,
                    low=99,
                    close=100,
                    volume=1,
                    ts_event=close_ts,
                )
            )
            status = await asyncio.to_thread(
                call,
                env["EXECUTION_CMD_ENDPOINT"],
                "status",
                {},
                key,
                2.0,
                "bench",
                operator,
                "execution",
            )
            if status.get("bars", 0) > 0:
                break
            await asyncio.sleep(0.1)
        latencies: list[float] = []
        round_trips: list[float] = []
        to_submitted: list[float] = []
        interval = 1.0 / rate_per_s
        for i in range(n + warmup):
            target = 1.0 if i % 2 == 0 else -1.0
            ref = f"rl-AAPL-{i + 1}"
            sent = publisher.publish(
                TargetPosition(
                    symbol="AAPL",
                    target_position=target,
                    model_version="bench",
                    bar_seq=i + 1,
                    bar_close_ts=close_ts,
                    bar_close=100.0,
                    ts_event=close_ts,
                )
            )
            submitted, ack = await asyncio.wait_for(_ack(subscriber, ref), timeout=10)
            received = time.time_ns()
            # the next bar: the simulator fills the market order at its open, as in live trading,
            # so working orders do not pile up across the run
            tick = close_ts + (i + 1) * 1_000_000_000
            bars.publish(
                Bar(symbol="AAPL", timeframe="1s", bar_open_ts=tick - 1_000_000_000, open=100,
                    high=101, low=99, close=100, volume=1, ts_event=tick)
            )  # fmt: skip
            if i >= warmup:
                latencies.append((ack.ts_event - sent.ts_publish) / 1e6)
                to_submitted.append((submitted - sent.ts_publish) / 1e6)
                round_trips.append((received - sent.ts_publish) / 1e6)
            await asyncio.sleep(max(0.0, interval - (received - sent.ts_publish) / 1e9))
        return {
            "n": len(latencies),
            "signal_to_ack_p50_ms": round(_percentile(latencies, 0.50), 3),
            "signal_to_ack_p99_ms": round(_percentile(latencies, 0.99), 3),
            "signal_to_ack_mean_ms": round(statistics.fmean(latencies), 3),
            "signal_to_ack_max_ms": round(max(latencies), 3),
            "signal_to_submitted_p50_ms": round(_percentile(to_submitted, 0.50), 3),
            "round_trip_p50_ms": round(_percentile(round_trips, 0.50), 3),
            "round_trip_p99_ms": round(_percentile(round_trips, 0.99), 3),
            "rate_per_s": rate_per_s,
            "broker": "ib (ibsim over TCP, ib_async client)",
        }
    finally:
        subscriber.close()
        publisher.close()
        bars.close()
        ctx.destroy(linger=0)
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


async def _ack(subscriber: Subscriber, ref: str) -> tuple[int, OrderEvent]:
    """The ``submitted`` event's ts_event and the ``acknowledged`` event of ``ref``."""
    submitted = 0
    while True:
        message = await subscriber.recv()
        if isinstance(message, OrderEvent) and message.order_ref == ref:
            if message.status == "submitted":
                submitted = message.ts_event
            if message.status == "acknowledged":
                return submitted or message.ts_event, message
            if message.status in ("rejected", "skipped"):
                raise RuntimeError(f"{ref} was {message.status}: {message.reason}")


def bench_bare_paced(n: int = 200, rate_per_s: float = 20.0, warmup: int = 20) -> dict[str, Any]:
    """p50/p99 (ms): bare ib_async placeOrder -> Submitted against ``python -m ibsim``, one order
    every ``1/rate_per_s`` s (the signal bench's pace), each cancelled before the next (untimed)."""
    from ibsim.bench import _await_status
    from ibsim.process import SimulatorProcess

    async def measure(port: int) -> list[float]:
        from ib_async import IB, Contract, LimitOrder, Stock

        ib = IB()
        ib.client.MaxRequests = 0  # as ibsim.bench: the round trip, not the client's throttle
        await ib.connectAsync("127.0.0.1", port, clientId=902, timeout=10)
        try:
            [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
            if not isinstance(contract, Contract):
                raise RuntimeError("the simulator did not qualify AAPL")
            samples: list[float] = []
            for i in range(warmup + n):
                start = time.perf_counter()
                trade = ib.placeOrder(contract, LimitOrder("BUY", 1, 1.0, orderRef=f"paced-{i}"))
                acked = await _await_status(trade, "Submitted")
                if i >= warmup:
                    samples.append((acked - start) * 1000.0)
                ib.cancelOrder(trade.order)
                await _await_status(trade, "Cancelled")
                await asyncio.sleep(max(0.0, 1.0 / rate_per_s - (time.perf_counter() - start)))
            return samples
        finally:
            ib.disconnect()

    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    with SimulatorProcess({"IBSIM_FARM_STATUS_MESSAGES": "false"}) as sim:
        samples = asyncio.run(measure(sim.port))
    return {
        "n": len(samples),
        "p50_ms": round(_percentile(samples, 0.50), 4),
        "p99_ms": round(_percentile(samples, 0.99), 4),
        "rate_per_s": rate_per_s,
    }


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(json.dumps(bench_signal_to_ack(count), indent=2))
