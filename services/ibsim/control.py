"""Control interface for tests and docker tests: JSON lines over TCP (``IBSIM_CONTROL_PORT``).

One JSON object per line in, one per line out; every reply has ``"ok"`` and, on failure,
``"error"``. Try it with ``echo '{"cmd": "ping"}' | nc 127.0.0.1 4003``.

Commands (``cmd``):
- ``ping`` -> server version, ports, account, connected client ids.
- ``faults`` with optional ``set`` {delay_acks_ms, reject_next_n, reject_reason, reject_code,
  partial_fill_fraction, drop_connection_now: true | <clientId>, outage_seconds} and optional
  ``clear: true`` -> the fault switches after the change.
- ``executions`` (optional ``order_ref``, ``symbol``) -> the simulator's execution record.
- ``orders`` (optional ``order_ref``) -> every order received, with status and reject reason.
- ``push_bar`` {symbol, open, high, low, close, volume, ts (bar close, ns UTC; default now),
  bar_open_ts (optional)} -> number of fills the bar caused.
- ``positions`` / ``account`` -> positions, cash and the account figures.
- ``reset`` -> forget orders, executions (the journal too), positions, bars, faults and pacing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ibsim.encoders import SERVER_VERSION
from shared.logs import event

if TYPE_CHECKING:
    from ibsim.app import Simulator

log = logging.getLogger("ibsim.control")
MAX_LINE_BYTES = 1 << 20


class ControlServer:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.port = sim.settings.control_port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.sim.settings.control_host, self.port, limit=MAX_LINE_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]
        event(log, "control_listening", host=self.sim.settings.control_host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                if not line.strip():
                    continue
                writer.write(json.dumps(self.handle_line(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    def handle_line(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a command is a JSON object")
            return self.handle(request)
        except (ValueError, TypeError, KeyError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("cmd")
        handler = {
            "ping": self._ping,
            "faults": self._faults,
            "executions": self._executions,
            "orders": self._orders,
            "push_bar": self._push_bar,
            "positions": self._positions,
            "account": self._account,
            "reset": self._reset,
        }.get(str(name))
        if handler is None:
            return {"ok": False, "error": f"unknown cmd {name!r}"}
        reply = handler(request)
        if name not in ("ping", "executions", "orders", "positions", "account"):
            event(log, "control", cmd=name)
        return {"ok": True, **reply}

    def _ping(self, request: dict[str, Any]) -> dict[str, Any]:
        ib = self.sim.ib_server
        return {
            "server_version": SERVER_VERSION,
            "port": ib.port,
            "control_port": self.port,
            "account": ib.account,
            "clients": sorted(ib.by_client_id),
            "accepting": ib.accepting,
        }

    def _faults(self, request: dict[str, Any]) -> dict[str, Any]:
        faults = self.sim.faults
        ib = self.sim.ib_server
        reply: dict[str, Any] = {}
        if request.get("clear"):
            faults.clear()
        changes = dict(request.get("set") or {})
        drop = changes.pop("drop_connection_now", None)
        outage = changes.pop("outage_seconds", None)
        faults.update(changes)  # validates before any one-shot action runs
        if outage is not None:
            seconds = float(outage)
            if not 0 < seconds <= 86_400:
                raise ValueError("outage_seconds must be in (0, 86400]")
            ib.outage(seconds)
            reply["outage_seconds"] = seconds
        elif drop is not None and drop is not False:
            client_id = None if drop is True else int(drop)
            reply["dropped"] = ib.drop_connections(client_id)
        reply["faults"] = faults.to_json()
        return reply

    def _executions(self, request: dict[str, Any]) -> dict[str, Any]:
        order_ref = request.get("order_ref")
        symbol = request.get("symbol")
        records = [
            r.to_json()
            for r in self.sim.exchange.executions
            if (order_ref is None or r.order_ref == order_ref)
            and (symbol is None or r.symbol == str(symbol).upper())
        ]
        return {"executions": records}

    def _orders(self, request: dict[str, Any]) -> dict[str, Any]:
        order_ref = request.get("order_ref")
        orders = [
            o.to_json()
            for o in self.sim.exchange.orders.values()
            if order_ref is None or o.order_ref == order_ref
        ]
        return {"orders": orders}

    def _push_bar(self, request: dict[str, Any]) -> dict[str, Any]:
        bar_open_ts = request.get("bar_open_ts")
        fills = self.sim.exchange.on_bar(
            str(request["symbol"]),
            int(request.get("ts") or time.time_ns()),
            float(request["open"]),
            float(request["high"]),
            float(request["low"]),
            float(request["close"]),
            float(request.get("volume", 0.0)),
            bar_open_ts=int(bar_open_ts) if bar_open_ts is not None else None,
        )
        return {"fills": fills}

    def _positions(self, request: dict[str, Any]) -> dict[str, Any]:
        exchange = self.sim.exchange
        positions = {
            symbol: {"quantity": p.quantity, "avg_cost": p.avg_cost, "realized_pnl": p.realized_pnl}
            for symbol, p in exchange.positions.items()
            if p.quantity != 0
        }
        return {"positions": positions, "cash": exchange.cash}

    def _account(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "account": self.sim.exchange.account,
            **asdict(self.sim.exchange.account_snapshot()),
        }

    def _reset(self, request: dict[str, Any]) -> dict[str, Any]:
        self.sim.exchange.reset()
        self.sim.faults.clear()
        self.sim.ib_server.pacing.clear()
        return {}


def control_request(
    port: int, payload: dict[str, Any], host: str = "127.0.0.1", timeout_s: float = 10.0
) -> dict[str, Any]:
    """Blocking one-shot control command (tests, scripts, docker tests)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(json.dumps(payload).encode() + b"\n")
        buffer = b""
        while not buffer.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("control port closed before replying")
            buffer += chunk
    reply: dict[str, Any] = json.loads(buffer)
    return reply


async def control_request_async(
    port: int, payload: dict[str, Any], host: str = "127.0.0.1", timeout_s: float = 10.0
) -> dict[str, Any]:
    """The same from inside an event loop, without blocking it."""

    async def roundtrip() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE_BYTES * 64)
        try:
            writer.write(json.dumps(payload).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        if not line:
            raise ConnectionError("control port closed before replying")
        reply: dict[str, Any] = json.loads(line)
        return reply

    return await asyncio.wait_for(roundtrip(), timeout_s)
