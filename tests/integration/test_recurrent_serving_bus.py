"""An LSTM artifact served by the inference process over the real bus (forwarder, CURVE, command
sockets): its signals equal the trainer's stateful backtest decider over the same bars, and a
second LSTM pushed over the command endpoint rebuilds the state from the snapshot and serves the
backtest of its own model. The test plays marketdata (``status`` / ``snapshot``, real AAPL bars).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from shared.auth import load_or_create_key
from shared.bus import Subscriber
from shared.command_channel import call
from shared.messages import TargetPosition
from tests.conftest import bus_security
from tests.fake_marketdata import (
    FakeMarketData,
    features_ready,
    next_of,
    start_inference,
    wait_bars_reach_inference,
)
from tests.recurrent_artifacts import backtest_targets, frame, model_root, stateful_artifact

pytestmark = pytest.mark.integration

SNAPSHOT = 400


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
    proc = start_inference(env, root, SNAPSHOT, "lstm-a")
    cmd = env["INFERENCE_CMD_ENDPOINT"]
    try:
        hb = await features_ready(sub, 90)
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
