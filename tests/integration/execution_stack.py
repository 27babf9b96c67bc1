"""A private execution stack for integration tests: busproxy, ibsim and execution as processes.

The test publishes bars and signals on the real bus, feeds the same bars to the simulator through
its control port (``push_bar``, so a fill happens exactly when the test says), and watches
``order.*``, ``fill.*`` and ``position.*`` on the bus. The execution process talks to the
simulator with the unchanged ``ib_async`` client over TCP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from ibsim.control import control_request_async

from shared.auth import load_or_create_key
from shared.bus import Publisher, Subscriber, producer_id
from shared.command_channel import CommandError, call
from shared.messages import Bar, Message, TargetPosition
from tests.conftest import REPO_ROOT, bus_security, free_port

NY = zoneinfo.ZoneInfo("America/New_York")
WAIT_S = 20.0  # a failure guard, never a timing assertion


def close_ns(day: dt.date, hour: int = 16) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=NY).timestamp() * 1e9)


def trading_days(start: dt.date, n: int) -> list[dt.date]:
    days, d = [], start
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d += dt.timedelta(days=1)
    return days


class TopicPublisher:
    """Publishes each message as the identity allowed to send its topic (CURVE rights): bars as
    marketdata, signals as inference."""

    def __init__(self, ctx: zmq.asyncio.Context, bus_env: dict[str, str]) -> None:
        endpoint = bus_env["BUS_PUB_ENDPOINT"]
        self._by_prefix = {
            "bar.": Publisher(
                ctx,
                endpoint,
                producer_id("marketdata"),
                security=bus_security(bus_env, "marketdata"),
            ),
            "signal.": Publisher(
                ctx,
                endpoint,
                producer_id("inference"),
                security=bus_security(bus_env, "inference"),
            ),
        }

    def publish(self, message: Message) -> Message:
        topic = message.topic()
        for prefix, publisher in self._by_prefix.items():
            if topic.startswith(prefix):
                return publisher.publish(message)
        raise ValueError(f"the test stack does not publish {topic}")

    def close(self) -> None:
        for publisher in self._by_prefix.values():
            publisher.close()


class ExecutionStack:
    def __init__(
        self,
        tmp: Path,
        bus_env: dict[str, str],
        paper: dict[str, Any] | None = None,
        ibsim_env: dict[str, str] | None = None,
        execution_env: dict[str, str] | None = None,
        broker: str = "ib",
    ) -> None:
        self.tmp = tmp
        self.broker = broker
        self.bus_env = bus_env
        self.ib_port = free_port()
        self.ctl_port = free_port()
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        paper_cfg = {
            "symbols": ["AAPL", "MSFT"],
            "max_position": 100,
            "ib": {"port": self.ib_port, "client_id": 11, "connect_timeout_s": 5},
            "monitoring": {"heartbeat_timeout_s": 30},
            **(paper or {}),
        }
        self.paper_path = tmp / "paper_trading_config.json"
        self.paper_path.write_text(json.dumps(paper_cfg))
        self.ibsim_env = {
            "IBSIM_PORT": str(self.ib_port),
            "IBSIM_CONTROL_PORT": str(self.ctl_port),
            "IBSIM_PRICE_SOURCE": "none",
            **(ibsim_env or {}),
        }
        self.execution_env = {
            "EXECUTION_BROKER": broker,
            "PAPER_TRADING_CONFIG": str(self.paper_path),
            "EXECUTION_STATE_DIR": str(tmp / "execution"),
            "EXECUTION_WARMUP_BARS": "false",
            "EXECUTION_RECONNECT_MIN_S": "0.2",
            "EXECUTION_RECONNECT_MAX_S": "1",
            "EXECUTION_COMMISSION_WAIT_S": "1",
            **(execution_env or {}),
        }
        self.ibsim: subprocess.Popen[bytes] | None = None
        self.execution: subprocess.Popen[bytes] | None = None
        self.ctx = zmq.asyncio.Context()
        self.publisher = TopicPublisher(self.ctx, bus_env)
        self.subscriber = Subscriber(
            self.ctx,
            bus_env["BUS_SUB_ENDPOINT"],
            ["order.", "fill.", "position.", "hb.execution"],
            security=bus_security(bus_env, "monitor"),
        )
        self.received: list[Message] = []
        self.key = load_or_create_key(bus_env["BUS_SECRET_FILE"])
        self._reader: asyncio.Task[None] | None = None
        self.bar_seq = 0
        self.probe = 0
        self._starts = 0

    # ------------------------------------------------------------------ processes
    def _spawn(self, module: str, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        return subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=REPO_ROOT,
            env={**os.environ, **self.bus_env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def start(self) -> ExecutionStack:
        """Start the processes; on any failure close everything before raising (a half-started
        stack left to the garbage collector would leave processes and sockets behind)."""
        try:
            self._reader = asyncio.create_task(self._read())
            if self.broker == "ib":
                self.ibsim = self._spawn("ibsim", self.ibsim_env, "ibsim")
                await self.wait_until(self._ibsim_up, "ibsim control port")
            await self.start_execution()
        except BaseException:
            await self.close()
            raise
        return self

    async def _ibsim_up(self) -> bool:
        try:
            return bool((await self.ctl({"cmd": "ping"}))["ok"])
        except OSError:
            return False

    async def start_execution(self, wait_ready: bool = True) -> None:
        self._starts += 1
        self.execution = self._spawn("execution", self.execution_env, f"execution{self._starts}")
        if wait_ready:
            await self.wait_until(lambda: self._status_ok("ready"), "execution ready")
            # our own subscription is live once we hear the service's heartbeat
            await self.wait_for(lambda m: m.topic() == "hb.execution" and m.ready, "heartbeat")
            await self.sync_bus()

    async def sync_bus(self) -> None:
        """Publish probe bars of an untraded symbol (dated 2000) until execution sees one."""
        probe_ts = close_ns(dt.date(2000, 1, 3))
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            self.probe += 1
            self.publisher.publish(
                Bar(
                    symbol="ZZZZ",
                    timeframe="1d",
                    bar_open_ts=probe_ts - 1,
                    open=1,
                    high=1,
                    low=1,
                    close=1,
                    volume=0,
                    ts_event=probe_ts + self.probe,
                )
            )
            await asyncio.sleep(0.05)
            if (await self.status()).get("bars", 0) > 0:
                return
        raise AssertionError("execution never saw a probe bar (bus rights or subscription?)")

    def kill_execution(self, sig: int = signal.SIGKILL) -> None:
        assert self.execution is not None
        self.execution.send_signal(sig)
        self.execution.wait(timeout=30)

    async def close(self) -> None:
        for proc in (self.execution, self.ibsim):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._reader is not None:
            self._reader.cancel()
        self.subscriber.close()
        self.publisher.close()
        self.ctx.destroy(linger=0)

    # ------------------------------------------------------------------ bus and control
    async def _read(self) -> None:
        while True:
            self.received.append(await self.subscriber.recv())

    async def ctl(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await control_request_async(self.ctl_port, payload)

    async def command(self, name: str, args: dict[str, Any] | None = None) -> Any:
        endpoint = self.bus_env["EXECUTION_CMD_ENDPOINT"]
        return await asyncio.to_thread(call, endpoint, name, args or {}, self.key, 3.0, "test")

    async def status(self) -> dict[str, Any]:
        try:
            result = await self.command("status")
        except CommandError:
            return {}
        return result if isinstance(result, dict) else {}

    async def _status_ok(self, key: str) -> bool:
        return bool((await self.status()).get(key))

    async def wait_until(
        self, predicate: Callable[[], Any], what: str, timeout_s: float = WAIT_S
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if (
                self.execution is not None
                and self.execution.poll() is not None
                and ("execution" in what)
            ):
                raise AssertionError(
                    f"execution exited ({self.execution.returncode}) while waiting for {what}"
                )
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    async def wait_for(
        self, match: Callable[[Message], bool], what: str, timeout_s: float = WAIT_S
    ) -> Message:
        def found() -> Message | None:
            return next((m for m in self.received if match(m)), None)

        return await self.wait_until(found, what, timeout_s)  # type: ignore[no-any-return]

    def messages(self, kind: type, **fields: Any) -> list[Any]:
        return [
            m
            for m in self.received
            if isinstance(m, kind) and all(getattr(m, k) == v for k, v in fields.items())
        ]

    # ------------------------------------------------------------------ market
    async def bar(
        self,
        day: dt.date,
        o: float,
        h: float,
        lo: float,
        c: float,
        symbol: str = "AAPL",
        to_broker: bool = True,
    ) -> Bar:
        """One daily bar: on the bus (execution) and into the simulator (fills)."""
        self.bar_seq += 1
        ts = close_ns(day)
        bar = Bar(
            symbol=symbol,
            timeframe="1d",
            bar_open_ts=ts - 23_400 * 10**9,
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=1e6,
            ts_event=ts,
            seq=self.bar_seq,
        )
        seen = int((await self.status()).get("bars", 0))
        self.publisher.publish(bar)
        await self.wait_until(lambda: self._seen_bars(seen + 1), "execution saw the bar")
        if to_broker and self.broker == "ib":
            reply = await self.ctl(
                {
                    "cmd": "push_bar",
                    "symbol": symbol,
                    "open": o,
                    "high": h,
                    "low": lo,
                    "close": c,
                    "volume": 1e6,
                    "ts": ts,
                    "bar_open_ts": ts - 23_400 * 10**9,
                }
            )
            assert reply["ok"], reply
        return bar

    async def _seen_bars(self, n: int) -> bool:
        return int((await self.status()).get("bars", 0)) >= n

    def signal(self, bar: Bar, target: float, bar_seq: int | None = None) -> str:
        seq = bar.seq if bar_seq is None else bar_seq
        self.publisher.publish(
            TargetPosition(
                symbol=bar.symbol,
                target_position=target,
                model_version="test",
                bar_seq=seq,
                bar_close_ts=bar.ts_event,
                bar_close=bar.close,
                ts_event=bar.ts_event,
            )
        )
        return f"rl-{bar.symbol}-{seq}"

    async def sim_orders(self, order_ref: str | None = None) -> list[dict[str, Any]]:
        payload: dict[str, Any] = {"cmd": "orders"}
        if order_ref is not None:
            payload["order_ref"] = order_ref
        return list((await self.ctl(payload))["orders"])

    async def sim_executions(self, order_ref: str | None = None) -> list[dict[str, Any]]:
        payload: dict[str, Any] = {"cmd": "executions"}
        if order_ref is not None:
            payload["order_ref"] = order_ref
        return list((await self.ctl(payload))["executions"])
