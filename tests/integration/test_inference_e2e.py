"""inference as a separate process over real ZeroMQ (forwarder + command sockets).

The test plays marketdata itself: it answers ``status``/``snapshot`` on marketdata's command
endpoint and publishes real AAPL bars. It checks that the late-joining inference warms from the
snapshot and signals on the first live bar, and that hot swaps over the command endpoint and over a
signed ``model.updated`` are applied, refused or rolled back while serving continues.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from marketdata.replay import SymbolSeries

from shared.auth import load_or_create_key, sign
from shared.bus import Publisher, Subscriber, producer_id
from shared.command_channel import CommandError, call
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.manifest import read_manifest
from shared.messages import ModelStatus, ModelUpdated, TargetPosition
from shared.observation import build_observation, observation_names
from tests.conftest import bus_security
from tests.fake_marketdata import (
    FakeMarketData,
    features_ready,
    next_of,
    start_inference,
    wait_bars_reach_inference,
)
from tests.model_artifacts import baseline_folder, constant_policy_onnx, corrupt, make_artifact
from tests.processes import wait_for

pytestmark = pytest.mark.integration

SIZE = len(observation_names(FeaturePipeline()))
BASELINE = baseline_folder().name


def expected_targets(series: SymbolSeries, start: int, stop: int) -> list[float]:
    model = load_artifact(baseline_folder())
    online = FeaturePipeline().online()
    position, out = 0.0, []
    for i in range(start, stop):
        row = online.update(*series.ohlcv[i].tolist())
        if row is not None:
            position = model.decide(build_observation(model.normalise(row), position))
        out.append(position)
    return out


async def test_inference_end_to_end_with_hot_swap(busproxy: dict[str, str], tmp_path: Path) -> None:
    env = busproxy
    key = load_or_create_key(env["BUS_SECRET_FILE"])
    root = tmp_path / "models"
    shutil.copytree(baseline_folder(), root / "baseline" / BASELINE)
    make_artifact(root, "v-short", onnx_bytes=constant_policy_onnx(SIZE, 0))
    long_folder = make_artifact(root, "v-long", onnx_bytes=constant_policy_onnx(SIZE, 2))
    corrupt(make_artifact(root, "v-bad"))

    ctx = zmq.asyncio.Context()
    md = FakeMarketData(ctx, env, key)
    serve = asyncio.create_task(md.server.serve_forever())
    sub = Subscriber(
        ctx,
        env["BUS_SUB_ENDPOINT"],
        ["signal.", "model.status", "hb.inference"],
        security=bus_security(env, "monitor"),
    )
    raw_pub = zmq.Context.instance().socket(zmq.PUB)
    marketdata_security = bus_security(env, "marketdata")
    assert marketdata_security is not None
    marketdata_security.client(raw_pub, "bus")
    raw_pub.connect(env["BUS_PUB_ENDPOINT"])
    trainer_pub = Publisher(
        zmq.Context.instance(),
        env["BUS_PUB_ENDPOINT"],
        producer_id("trainer"),
        security=bus_security(env, "trainer"),
    )
    proc = start_inference(env, root, 250)
    cmd = env["INFERENCE_CMD_ENDPOINT"]
    try:
        # 1. a late joiner: it asks marketdata which symbols exist and warms from the snapshot
        hb = await features_ready(sub, 60)
        assert hb.ready and hb.detail["model"]["version"] == BASELINE
        assert md.snapshots == 1
        await wait_bars_reach_inference(md, cmd, key)

        first = md.next
        bars = [md.publish_next() for _ in range(30)]
        signals = [await next_of(sub, TargetPosition) for _ in range(30)]
        assert [s.bar_seq for s in signals] == [b.seq for b in bars]
        assert [s.bar_close_ts for s in signals] == [b.ts_event for b in bars]
        assert {s.model_version for s in signals} == {BASELINE}
        want = expected_targets(md.series, first - 250, first + 30)[-30:]
        assert [s.target_position for s in signals] == want

        # 2. a corrupted artifact is refused over the command endpoint; serving goes on
        with pytest.raises(CommandError, match="sha256"):
            await asyncio.to_thread(call, cmd, "push_model", {"version": "v-bad"}, key)
        status = await next_of(sub, ModelStatus)
        assert not status.accepted and status.serving_version == BASELINE
        assert "sha256" in status.reason
        md.publish_next()
        assert (await next_of(sub, TargetPosition)).model_version == BASELINE

        # 3. a good push swaps without a restart
        reply = await asyncio.to_thread(call, cmd, "push_model", {"version": "v-short"}, key)
        assert reply["accepted"] and reply["serving"] == "v-short"
        assert (await next_of(sub, ModelStatus)).accepted
        md.publish_next()
        signal = await next_of(sub, TargetPosition)
        assert signal.model_version == "v-short" and signal.target_position == -1.0

        # 4. a signed model.updated on the bus swaps too; an unsigned one is refused, and one
        # from an identity that may not publish models never reaches inference at all
        update = ModelUpdated(
            version="v-long",
            path="v-long",
            onnx_sha256=read_manifest(long_folder).onnx_sha256,
            ts_event=time.time_ns(),
        )
        md.publisher.publish(sign(update, key))  # marketdata's key: dropped by the forwarder
        unsigned = ModelUpdated(
            version="v-long", path="v-long", onnx_sha256="", ts_event=time.time_ns()
        )
        trainer_pub.publish(unsigned)
        refused = await next_of(sub, ModelStatus)
        assert not refused.accepted and "unauthorised" in refused.reason
        update = ModelUpdated(
            version="v-long",
            path="v-long",
            onnx_sha256=read_manifest(long_folder).onnx_sha256,
            ts_event=time.time_ns(),
        )
        trainer_pub.publish(sign(update, key))
        accepted = await next_of(sub, ModelStatus)
        assert accepted.accepted and accepted.serving_version == "v-long"
        md.publish_next()
        signal = await next_of(sub, TargetPosition)
        assert signal.model_version == "v-long" and signal.target_position == 1.0

        # 5. rollback returns to the model served before the last swap
        reply = await asyncio.to_thread(call, cmd, "rollback", {}, key)
        assert reply["serving"] == "v-short"
        md.publish_next()
        assert (await next_of(sub, TargetPosition)).model_version == "v-short"

        # 6. malformed frames are counted and dropped; the service keeps answering. The raw
        # frame and the next bar come through two publisher connections, which the forwarder
        # serves in no fixed order (seen in the stability loop: the bar's signal came first), so
        # the count is awaited, not assumed from the next signal
        raw_pub.send_multipart([b"bar.AAPL", b"\xc1 not msgpack"])
        await asyncio.to_thread(
            wait_for,
            lambda: call(cmd, "status", {}, key)["bus"]["malformed"] >= 1,
            "inference counts the malformed frame",
            60.0,
        )
        md.publish_next()
        assert (await next_of(sub, TargetPosition)).model_version == "v-short"
        status_reply = await asyncio.to_thread(call, cmd, "status", {}, key)
        assert status_reply["bus"]["malformed"] == 1
        assert status_reply["counters"]["models_rejected"] == 1
        assert status_reply["counters"]["updates_refused"] == 1
        assert status_reply["symbols"]["AAPL"]["signals"] == 35
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        serve.cancel()
        raw_pub.close()
        md.publisher.close()
        trainer_pub.close()
        md.server.close()
        sub.close()
        ctx.destroy(linger=0)
    assert proc.returncode == 0, out.decode()[-3000:]
    assert b'"event":"stopped"' in out
