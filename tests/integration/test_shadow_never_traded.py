"""A shadow model's targets are recorded on the bus and never traded; the same targets traded the
moment that model is promoted.

Processes: the forwarder, the IB simulator, execution (real ``ib_async``) and a real inference
whose live model is always flat and whose shadow (from ``shadow.json``, as the trainer records it)
is always long. Every bar gives a flat ``signal.AAPL`` and a long ``shadow.AAPL``: the simulator
receives no order. Then the shadow is promoted (``shadow_promote``): the next bar's live signal is
long and the simulator receives exactly one BUY, which proves the path would have traded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zmq.asyncio

from shared.bus import Subscriber
from shared.command_channel import call
from shared.features import FeaturePipeline
from shared.manifest import read_manifest
from shared.messages import OrderEvent, ShadowTarget, TargetPosition
from shared.observation import observation_names
from tests.conftest import bus_security
from tests.integration.execution_stack import ExecutionStack, trading_days
from tests.model_artifacts import baseline_folder, constant_policy_onnx, make_artifact

pytestmark = pytest.mark.integration

SIZE = len(observation_names(FeaturePipeline()))
DAYS = trading_days(dt.date(2023, 1, 2), 140)  # DAYS[125] (2023-06-27): a session day
WARM = 120  # bars before the features are surely ready


async def test_shadow_targets_are_recorded_and_never_traded(
    tmp_path: Path, busproxy: dict[str, str]
) -> None:
    env = busproxy
    root = tmp_path / "models"
    shutil.copytree(baseline_folder(), root / "baseline" / baseline_folder().name)
    make_artifact(root, "v-flat", onnx_bytes=constant_policy_onnx(SIZE, 1))
    long_folder = make_artifact(root, "v-long", onnx_bytes=constant_policy_onnx(SIZE, 2))
    sha = read_manifest(long_folder).onnx_sha256
    (root / "shadow.json").write_text(json.dumps({"version": "v-long", "sha256": sha}))
    stack = await ExecutionStack(tmp_path, env).start()
    ctx = zmq.asyncio.Context()
    recorder = Subscriber(  # what the monitor records
        ctx, env["BUS_SUB_ENDPOINT"], ["signal.", "shadow."], security=bus_security(env, "monitor")
    )
    log = (tmp_path / "inference.log").open("wb")
    inference = subprocess.Popen(
        [sys.executable, "-m", "inference"], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, **env, "INFERENCE_MODEL_DIR": str(root),
             "INFERENCE_MODEL_VERSION": "v-flat", "INFERENCE_SNAPSHOT_ATTEMPTS": "1",
             "INFERENCE_SNAPSHOT_TIMEOUT_S": "0.5"},
    )  # fmt: skip
    cmd = env["INFERENCE_CMD_ENDPOINT"]
    seen: list[object] = []

    async def read() -> None:
        while True:
            seen.append(await recorder.recv())

    reader = asyncio.create_task(read())

    def status() -> dict:
        return call(cmd, "status", {}, stack.key, timeout_s=3.0)  # type: ignore[no-any-return]

    try:
        up = await stack.wait_until(
            lambda: asyncio.to_thread(lambda: _safe(status)), "inference ready", timeout_s=60
        )
        assert up["model"]["version"] == "v-flat" and up["shadow_model"]["version"] == "v-long"
        bars = []
        for day in DAYS[:WARM]:
            bars.append(await stack.bar(day, 99, 101, 98, 100, to_broker=False))
        await stack.wait_until(
            lambda: [m for m in seen if isinstance(m, ShadowTarget)], "a shadow target recorded"
        )
        for day in DAYS[WARM : WARM + 5]:
            bars.append(await stack.bar(day, 99, 101, 98, 100))
        last = bars[-1]
        await stack.wait_until(
            lambda: any(
                isinstance(m, ShadowTarget) and m.bar_seq == last.seq for m in seen
            ) and any(isinstance(m, TargetPosition) and m.bar_seq == last.seq for m in seen),
            "the last bar's signal and shadow target",
        )  # fmt: skip
        live = [m for m in seen if isinstance(m, TargetPosition)]
        shadow = [m for m in seen if isinstance(m, ShadowTarget)]
        assert {m.target_position for m in live} == {0.0} and len(live) >= 5
        assert {m.target_position for m in shadow} == {1.0}
        assert [m.bar_seq for m in shadow] == [m.bar_seq for m in live]
        # execution saw every bar and flat signals: not one order reached the broker
        assert await stack.sim_orders() == []
        # (execution may publish "skipped" events for live signals, e.g. a holiday bar: none is an
        # order that went anywhere)
        assert not [
            m for m in stack.received if isinstance(m, OrderEvent) and m.status != "skipped"
        ]

        # control: the same model, promoted, trades on the next bar
        promoted = await asyncio.to_thread(call, cmd, "shadow_promote", {}, stack.key)
        assert promoted["serving"] == "v-long"
        nxt = await stack.bar(DAYS[WARM + 5], 99, 101, 98, 100)
        ref = f"rl-AAPL-{nxt.seq}"
        await stack.wait_until(
            lambda: stack.sim_orders(ref),
            "the promoted model's BUY at the broker",
        )
        orders = await stack.sim_orders()
        assert [(o["order_ref"], o["action"]) for o in orders] == [(ref, "BUY")]
    finally:
        reader.cancel()
        inference.terminate()
        try:
            inference.wait(timeout=15)
        except subprocess.TimeoutExpired:
            inference.kill()
        recorder.close()
        ctx.destroy(linger=0)
        await stack.close()
    assert inference.returncode == 0, (tmp_path / "inference.log").read_text()[-3000:]


def _safe(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except Exception:
        return None
