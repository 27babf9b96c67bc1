"""Push -> rollback -> restart, as a user would with `make push`, `make rollback` and a restart.

The trainer service and an inference instance run as separate processes on the real
authenticated bus and share one model folder (the Docker models volume). After a push and a
rollback through the trainer, a restarted inference instance must serve what the running one
served (the rolled-back version), not the pushed one and not its start setting.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from shared.auth import load_or_create_key
from shared.command_channel import call
from shared.features import FeaturePipeline
from shared.manifest import Promotion
from shared.observation import observation_names
from tests.model_artifacts import baseline_folder, constant_policy_onnx, make_artifact
from tests.processes import Stack, wait_for, wait_ready

pytestmark = pytest.mark.integration

BASELINE = "ma-crossover-10-50-v1"


def serving(env: dict[str, str], key: bytes) -> str | None:
    try:
        status = call(env["INFERENCE_CMD_ENDPOINT"], "status", {}, key, timeout_s=3)
    except Exception:  # not up yet
        return None
    return str(status["model"]["version"])


def test_push_rollback_restart_serves_the_rolled_back_version(busproxy, tmp_path: Path) -> None:
    models, out = tmp_path / "models", tmp_path / "out"
    shutil.copytree(baseline_folder(), models / "baseline" / BASELINE)
    size = len(observation_names(FeaturePipeline()))
    promoted = Promotion(verdict="promoted", reason="test")
    for version, action in (("v-one", 0), ("v-two", 2)):
        make_artifact(out / "best_models", version, onnx_bytes=constant_policy_onnx(size, action),
                      promotion=promoted)  # fmt: skip
    env = {
        **busproxy,
        "TRAINER_MODEL_DIR": str(models),
        "TRAINER_OUTPUT_DIR": str(out),
        "INFERENCE_MODEL_DIR": str(models),
        "INFERENCE_MODEL_VERSION": "current",  # the last pushed version (none yet: baseline)
    }
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    logs = tmp_path / "logs"
    logs.mkdir()
    stack = Stack(env, logs)

    def trainer(name: str, args: dict[str, Any] | None = None) -> Any:
        return call(env["TRAINER_CMD_ENDPOINT"], name, args or {}, key, timeout_s=60)

    try:
        stack.start("trainer", "trainer")
        stack.start("inference", "inference")
        wait_ready(env["TRAINER_CMD_ENDPOINT"], key)
        wait_ready(env["INFERENCE_CMD_ENDPOINT"], key)
        assert serving(env, key) == BASELINE
        # push twice, then roll back once: the running instance serves v-one
        for version in ("v-one", "v-two"):
            trainer("push_model", {"version": version})
            wait_for(lambda v=version: serving(env, key) == v, f"{version} served", 60)
        trainer("rollback")
        wait_for(lambda: serving(env, key) == "v-one", "v-one served after the rollback", 60)
        # a restart (or a new replica) serves what the running one served
        stack.stop_one("inference")
        stack.start("inference", "inference")
        wait_ready(env["INFERENCE_CMD_ENDPOINT"], key)
        assert serving(env, key) == "v-one"
    finally:
        stack.stop()
