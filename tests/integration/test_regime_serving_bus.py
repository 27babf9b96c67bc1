"""A regime-feature model (HMM regime block, regime-gated cap) served by the inference process over
the real bus (forwarder, CURVE, command sockets). The process starts on the shipped baseline (the
default features); ``push_model`` of the regime model re-warms the symbol from the snapshot with
the model's own pipeline, and its signals equal the backtest decider (what evaluation scores)
over the same bars; ``rollback`` re-warms on the default features and equals the baseline's
backtest. No decision on a cold pipeline (``cold_refusals`` 0), every bar signalled once. The
test plays marketdata (``status`` / ``snapshot``, real AAPL bars).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from shared.auth import load_or_create_key
from shared.bus import Subscriber
from shared.command_channel import call
from shared.messages import TargetPosition
from shared.model_store import resolve_artifact
from tests.conftest import bus_security
from tests.fake_marketdata import (
    FakeMarketData,
    features_ready,
    next_of,
    start_inference,
    wait_bars_reach_inference,
)
from tests.inference_harness import baseline_root
from tests.regime_artifacts import backtest_targets, frame, regime_artifact

pytestmark = pytest.mark.integration

SNAPSHOT = 400
CAPS = (0.5, 0.25)


async def status(cmd: str, key: bytes) -> dict[str, Any]:
    reply: dict[str, Any] = await asyncio.to_thread(call, cmd, "status", {}, key)
    return reply


async def wait_warm(cmd: str, key: bytes, version: str) -> dict[str, Any]:
    """Readiness after a swap: the symbol's re-warm from the snapshot finished (a probe with a
    deadline; bars published before it would move the snapshot the re-warm replays)."""
    deadline = time.monotonic() + 60
    while True:
        s = await status(cmd, key)
        symbol = s["symbols"].get("AAPL", {})
        if s["model"]["version"] == version and symbol.get("warm") and symbol["features_ready"]:
            return s
        assert time.monotonic() < deadline, f"AAPL never warm on {version}: {s['symbols']}"
        await asyncio.sleep(0.1)


def want(folder: Path, start: int, stop: int) -> list[float]:
    """The backtest of ``folder`` over the snapshot before ``start`` and bars [start, stop)."""
    return backtest_targets(folder, frame().iloc[start - SNAPSHOT : stop])[SNAPSHOT:]


async def test_a_regime_model_pushed_over_the_bus_equals_its_backtest_and_rolls_back(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    env = busproxy
    key = load_or_create_key(env["BUS_SECRET_FILE"])
    root = baseline_root(tmp_path)
    regime = regime_artifact(root, "regime-a", caps=CAPS)
    baseline = resolve_artifact(root, "baseline")
    ctx = zmq.asyncio.Context()
    md = FakeMarketData(ctx, env, key)
    serve = asyncio.create_task(md.server.serve_forever())
    monitor = bus_security(env, "monitor")
    sub = Subscriber(ctx, env["BUS_SUB_ENDPOINT"], ["signal.", "hb.inference"], security=monitor)
    proc = start_inference(env, root, SNAPSHOT, "baseline")
    cmd = env["INFERENCE_CMD_ENDPOINT"]
    try:
        await features_ready(sub, 120)
        await wait_bars_reach_inference(md, cmd, key)
        start = md.next
        bars = [md.publish_next() for _ in range(10)]
        signals = [await next_of(sub, TargetPosition) for _ in range(10)]
        assert [s.bar_seq for s in signals] == [b.seq for b in bars]
        assert [s.target_position for s in signals] == want(baseline, start, md.next)

        # push the regime model: re-warmed from the snapshot with its own pipeline
        swap_at = md.next
        reply = await asyncio.to_thread(call, cmd, "push_model", {"version": "regime-a"}, key)
        assert reply["accepted"] and reply["serving"] == "regime-a"
        detail = await wait_warm(cmd, key, "regime-a")
        assert detail["pipeline_fingerprint"] == detail["model"]["pipeline_fingerprint"]
        bars = [md.publish_next() for _ in range(25)]
        signals = [await next_of(sub, TargetPosition) for _ in range(25)]
        assert [s.bar_seq for s in signals] == [b.seq for b in bars]
        assert {s.model_version for s in signals} == {"regime-a"}
        targets = [s.target_position for s in signals]
        assert targets == want(regime, swap_at, md.next)
        assert {abs(t) for t in targets} <= {0.0, *CAPS}  # the regime-gated cap, served

        # and back: the default features again, re-warmed
        back_at = md.next
        reply = await asyncio.to_thread(call, cmd, "rollback", {}, key)
        assert reply["accepted"] and reply["serving"] == baseline.name
        detail = await wait_warm(cmd, key, baseline.name)
        bars = [md.publish_next() for _ in range(10)]
        signals = [await next_of(sub, TargetPosition) for _ in range(10)]
        assert [s.bar_seq for s in signals] == [b.seq for b in bars]
        assert [s.target_position for s in signals] == want(baseline, back_at, md.next)
        final = await status(cmd, key)
        assert final["counters"]["cold_refusals"] == 0 and final["handler_errors"] == 0
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        serve.cancel()
        md.publisher.close()
        md.server.close()
        sub.close()
        ctx.destroy(linger=0)
    assert proc.returncode == 0, out.decode()[-3000:]
