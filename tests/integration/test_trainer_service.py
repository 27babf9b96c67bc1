"""The trainer service as a separate process: signed commands, pushes on the bus, refusals.

Artifacts are small ONNX graphs (``tests.model_artifacts``), so no training runs here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq.asyncio

from shared.auth import Verifier, load_or_create_key
from shared.bus import Subscriber
from shared.command_channel import CommandError, call
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.manifest import Promotion
from shared.messages import Heartbeat, ModelUpdated
from tests.conftest import bus_security
from tests.model_artifacts import corrupt, make_artifact

pytestmark = pytest.mark.integration

PROMOTED = Promotion(verdict="promoted", reason="test")


@pytest.fixture
def trainer(busproxy: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    out, models = tmp_path / "out", tmp_path / "models"
    env = {
        **os.environ,
        **busproxy,
        "TRAINER_MODEL_DIR": str(models),
        "TRAINER_OUTPUT_DIR": str(out),
        "BUS_HEARTBEAT_INTERVAL_S": "0.2",  # the subscription readiness marker (hb.trainer)
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    endpoint = busproxy["TRAINER_CMD_ENDPOINT"]
    deadline = time.monotonic() + 30
    while True:
        try:
            status = call(endpoint, "status", {}, key, timeout_s=1.0)
            break
        except CommandError:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "trainer service did not answer"
    assert status["ready"] is True
    try:
        yield {
            "env": busproxy,
            "key": key,
            "endpoint": endpoint,
            "best": out / "best_models",
            "models": models,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def _subscribed(sub: Subscriber, timeout: float = 20.0) -> None:
    """Readiness: the subscriber's topics end with ``hb.trainer``; they reach the trainer's
    publisher in order, so its first heartbeat received proves ``model.updated`` is in place."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "no trainer heartbeat: the subscription never reached the trainer"
        msg = await asyncio.wait_for(sub.recv(), remaining)
        if isinstance(msg, Heartbeat) and msg.service == "trainer":
            return


async def _updates(sub: Subscriber, n: int, timeout: float = 10.0) -> list[ModelUpdated]:
    got: list[ModelUpdated] = []
    while len(got) < n:
        msg = await asyncio.wait_for(sub.recv(), timeout)
        if isinstance(msg, ModelUpdated):
            got.append(msg)
    return got


async def test_push_refusals_and_rollback_over_the_bus(trainer: dict[str, Any]) -> None:
    key, endpoint, best, models = (
        trainer["key"],
        trainer["endpoint"],
        trainer["best"],
        trainer["models"],
    )
    make_artifact(best, "model_a", promotion=PROMOTED)
    make_artifact(best, "model_b", promotion=PROMOTED)
    corrupt(make_artifact(best, "model_corrupt", promotion=PROMOTED))
    # another feature config is servable (inference builds the model's own pipeline), but a
    # fingerprint that is not its config's is a tampered manifest: refused
    make_artifact(
        best,
        "model_other_pipeline",
        config=FeatureConfig(rsi_window=10),
        pipeline_fingerprint=FeaturePipeline().fingerprint,
        promotion=PROMOTED,
    )
    make_artifact(best, "model_rejected", promotion=Promotion(verdict="rejected", reason="lost"))

    ctx = zmq.asyncio.Context()
    sub = Subscriber(
        ctx,
        trainer["env"]["BUS_SUB_ENDPOINT"],
        ["model.updated", "hb.trainer"],  # the readiness marker's topic last
        security=bus_security(trainer["env"], "monitor"),
    )
    await _subscribed(sub)
    loop = asyncio.get_running_loop()

    def command(name: str, **args: Any) -> Any:
        return loop.run_in_executor(None, lambda: call(endpoint, name, args, key, timeout_s=10))

    try:
        pushed = await command("push_model", version="model_a")
        (msg,) = await _updates(sub, 1)
        assert (msg.version, msg.action, msg.onnx_sha256) == ("model_a", "push", pushed["sha256"])
        # what inference does with it: verify the HMAC (stamped fields at defaults), then load
        Verifier(key).verify(
            msgspec.structs.replace(msg, producer="", seq=0, ts_publish=0), msg.ts_event
        )
        assert (
            load_artifact(models / msg.path, expected_sha256=msg.onnx_sha256).version == "model_a"
        )

        for bad, reason in (
            ("model_corrupt", "sha256"),
            ("model_other_pipeline", "pipeline_fingerprint"),
            ("model_rejected", "rejected"),
            ("no_such_model", "no model artifact"),
        ):
            with pytest.raises(CommandError, match=reason):
                await command("push_model", version=bad)
            assert not (models / bad).exists()

        await command("push_model", version="model_b")
        rolled = await command("rollback")
        assert (rolled["version"], rolled["replaced"]) == ("model_a", "model_b")
        b, back = await _updates(sub, 2)  # nothing was announced for the refused pushes
        assert (b.version, back.version, back.action) == ("model_b", "model_a", "rollback")

        status = await command("status")
        assert status["current_model"] == "model_a" and status["refused_pushes"] == 4
        listed = {r["version"]: r for r in await command("list_models")}
        assert listed["model_a"]["current"] and listed["model_rejected"]["verdict"] == "rejected"

        forced = await command("push_model", version="model_rejected", force=True)
        assert forced["forced"] is True
    finally:
        sub.close()
        ctx.destroy(linger=0)


def test_unknown_profile_is_refused_without_starting_a_job(trainer: dict[str, Any]) -> None:
    with pytest.raises(CommandError, match="profile"):
        call(trainer["endpoint"], "train", {"profile": "huge"}, trainer["key"], timeout_s=5)
    status = call(trainer["endpoint"], "status", {}, trainer["key"], timeout_s=5)
    assert status["job"] is None and not status["busy"]


@pytest.mark.slow
async def test_train_command_runs_the_pipeline_and_pushes_through_the_service(
    trainer: dict[str, Any],
) -> None:
    """``train`` (tiny budget, forced past the gate) -> job -> export -> push -> model.updated."""
    key, endpoint = trainer["key"], trainer["endpoint"]
    ctx = zmq.asyncio.Context()
    sub = Subscriber(
        ctx,
        trainer["env"]["BUS_SUB_ENDPOINT"],
        ["model.updated", "hb.trainer"],  # the readiness marker's topic last
        security=bus_security(trainer["env"], "monitor"),
    )
    await _subscribed(sub)
    loop = asyncio.get_running_loop()

    def command(name: str, **args: Any) -> Any:
        return loop.run_in_executor(None, lambda: call(endpoint, name, args, key, timeout_s=10))

    tiny = {
        "iterations": 1,
        "eval_every": 1,
        "train_batch_size": 1000,
        "minibatch_size": 500,
        "num_epochs": 1,
        "num_envs_per_env_runner": 8,
        "hiddens": [8],  # a list, as `--set hiddens=[8]`: typed by shared.commands.TrainArgs
    }
    try:
        job = await command("train", overrides=tiny, force=True)
        assert job["running"] and job["kind"] == "train"
        with pytest.raises(CommandError, match="busy"):
            await command("tune")
        deadline = time.monotonic() + 300
        while (status := await command("status"))["busy"]:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(1.0)
        done = status["job"]
        assert done["returncode"] == 0, done["tail"]
        result = done["result"]
        # one outcome, whichever way the tiny model fares: promoted, and "forced" says exactly
        # whether the gate failed (its own numbers), with the reason saying so
        assert result["verdict"] == "promoted"
        gate_passed = result["gate_numbers"]["gate_passed"] == 1.0
        assert result["forced"] is (not gate_passed)
        assert result["reason"].startswith("FORCED") is (not gate_passed)
        assert result["push"]["via"] == "trainer"
        (msg,) = await _updates(sub, 1, timeout=5)
        assert msg.version == result["version"] == status["current_model"]
        manifest = load_artifact(trainer["models"] / msg.version).manifest
        assert manifest.promotion.verdict == "promoted"
        assert manifest.algorithm == "PPO" and manifest.git_revision
    finally:
        sub.close()
        ctx.destroy(linger=0)


def test_push_model_works_for_every_version_list_models_shows(trainer: dict[str, Any]) -> None:
    """The baseline (in the model root, not best_models/) is listed, so it must be pushable; the
    reply names the symbols the model was trained on."""
    import shutil

    from tests.model_artifacts import baseline_folder

    make_artifact(trainer["best"], "model_a", promotion=PROMOTED)
    shutil.copytree(baseline_folder(), trainer["models"] / "baseline" / baseline_folder().name)
    key, endpoint = trainer["key"], trainer["endpoint"]
    listed = [r["version"] for r in call(endpoint, "list_models", {}, key, timeout_s=10)]
    assert f"baseline/{baseline_folder().name}" in listed and "model_a" in listed
    for version in listed:
        pushed = call(endpoint, "push_model", {"version": version}, key, timeout_s=10)
        assert pushed["version"] == version and "trained_on" in pushed
        status = call(endpoint, "status", {}, key, timeout_s=10)
        assert status["current_model"] == version
