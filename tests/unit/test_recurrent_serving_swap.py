"""Hot swap of stateful and ensemble artifacts through the existing push path (a signed
``model.updated`` into the service's handler, or the ``push_model`` command): a good one serves
(a stateful one rebuilds every symbol's state from the snapshot, so it equals the backtest of
those bars), a bad one (graph and manifest disagree on the state or window, a tampered ensemble)
is refused and the old model keeps serving. A stateful shadow keeps its own per-symbol state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from shared.auth import sign
from shared.loaded_model import load_artifact
from shared.manifest import (
    MODEL_FILE,
    ArtifactError,
    ManifestMismatch,
    ModelManifest,
    read_manifest,
)
from shared.messages import ModelStatus, ModelUpdated, ShadowTarget
from shared.model_store import write_artifact
from shared.runtime import BusConnection, connect_bus
from shared.stateful_model import StatefulModel
from tests.conftest import free_port
from tests.model_artifacts import baseline_folder
from tests.recurrent_artifacts import (
    Harness,
    backtest_targets,
    frame,
    model_root,
    series,
    stateful_artifact,
)

pytestmark = pytest.mark.unit

BASELINE = f"baseline/{baseline_folder().name}"


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    env = {
        "BUS_PUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SECRET_FILE": str(tmp_path / "bus.key"),
    }
    connection = connect_bus("inference", env)
    yield connection
    connection.close()


def _push(bus: BusConnection, folder: Path, sha: str = "") -> ModelUpdated:
    """What the trainer's push publishes (signed, then stamped by the publisher)."""
    msg = ModelUpdated(
        version=folder.name,
        path=folder.name,
        onnx_sha256=sha or read_manifest(folder).onnx_sha256,
        ts_event=time.time_ns(),
    )
    signed = sign(msg, bus.key)
    return msgspec.structs.replace(signed, producer="trainer@host:1", seq=1, ts_publish=1)


def _variant(folder: Path, version: str, **policy: Any) -> Path:
    """The same graph under a manifest whose ``policy`` block says something else."""
    manifest = read_manifest(folder)
    assert manifest.policy is not None
    changed: ModelManifest = msgspec.structs.replace(
        manifest, version=version, policy=msgspec.structs.replace(manifest.policy, **policy)
    )
    return write_artifact(folder.parent, changed, (folder / MODEL_FILE).read_bytes())


def _ensemble_member(root: Path, seed: int) -> Path:
    import gymnasium as gym
    import torch
    from trainer.config import TrainConfig
    from trainer.onnx_export import export_onnx
    from trainer.policy_head import PolicyHead
    from trainer.train import build_module

    base = read_manifest(baseline_folder())
    size = base.observation.size
    torch.manual_seed(seed)
    module = build_module(
        TrainConfig(hiddens=[16]),
        gym.spaces.Box(-np.inf, np.inf, (size,), np.float32),
        gym.spaces.Discrete(3),
    )
    manifest = msgspec.structs.replace(
        base,
        version=f"member_{seed}",
        algorithm="PPO",
        validation_metrics={"fold_mean_sharpe": 0.1 * seed},
    )
    return write_artifact(root, manifest, export_onnx(PolicyHead(module, "PPO", True), size))


def test_a_graph_that_disagrees_with_its_policy_block_is_refused(tmp_path: Path) -> None:
    lstm = stateful_artifact(tmp_path, "lstm", "lstm-ok")
    attention = stateful_artifact(tmp_path, "attention", "att-ok")
    assert isinstance(load_artifact(lstm), StatefulModel)
    assert isinstance(load_artifact(attention), StatefulModel)
    bad = [
        (_variant(lstm, "lstm-shape", state_shape=[1, 8]), "policy input h_in"),
        (_variant(lstm, "lstm-names", state_inputs=["h", "c"]), "policy inputs"),
        (_variant(lstm, "lstm-outs", state_outputs=["h_out"]), "policy.state_outputs"),
        (_variant(attention, "att-window", window=5), "policy input obs_window"),
        (
            _variant(
                attention,
                "att-as-lstm",
                kind="lstm",
                state_shape=[1, 16],
                state_inputs=["h_in", "c_in"],
                state_outputs=["h_out", "c_out"],
            ),
            "policy inputs",
        ),
    ]
    for folder, field in bad:
        with pytest.raises(ManifestMismatch) as caught:
            load_artifact(folder)
        assert caught.value.field == field, (folder.name, str(caught.value))


async def test_a_pushed_lstm_rebuilds_every_symbols_state_and_a_bad_push_keeps_it_serving(
    tmp_path: Path, bus: BusConnection
) -> None:
    root = model_root(tmp_path)
    good = stateful_artifact(root, "lstm", "lstm-pushed")
    bad = _variant(good, "lstm-bad", state_shape=[1, 8])
    h = Harness(root, bus, BASELINE, {"AAPL": series()})
    svc = h.service
    await svc.warm("AAPL")
    start = h.end["AAPL"]
    for i in range(start, start + 5):
        h.end["AAPL"] = i + 1
        svc.handle_batch([h.bar("AAPL", i)])
    assert not svc.model.stateful
    svc.handle_batch([_push(bus, good)])
    assert svc.model.version == "lstm-pushed"
    await h.settle()  # the swap re-warmed the symbol from the snapshot, through the LSTM
    for i in range(start + 5, start + 25):
        svc.handle_batch([h.bar("AAPL", i)])
    n = svc.settings.snapshot_bars
    want, _ = backtest_targets(good, frame().iloc[start + 5 - n : start + 25])
    after = [s for s in h.signals("AAPL") if s.model_version == "lstm-pushed"]
    assert [s.bar_seq for s in after] == [i + 1 for i in range(start + 5, start + 25)]
    assert [s.target_position for s in after] == want[n:]
    # a bad push: refused, the LSTM keeps serving with its state carried on
    before = svc.states["AAPL"].policy_state
    svc.handle_batch([_push(bus, bad)])
    statuses = [m for m in h.published if isinstance(m, ModelStatus)]
    assert not statuses[-1].accepted and "h_in" in statuses[-1].reason
    assert svc.model.version == "lstm-pushed" and svc.states["AAPL"].policy_state is before
    svc.handle_batch([h.bar("AAPL", start + 25)])
    assert h.signals("AAPL")[-1].model_version == "lstm-pushed"
    want_next, _ = backtest_targets(good, frame().iloc[start + 5 - n : start + 26])
    assert h.signals("AAPL")[-1].target_position == want_next[-1]
    assert svc.counters.models_rejected == 1 and svc.counters.state_resets == 0


async def test_an_ensemble_hot_swaps_in_and_a_tampered_one_is_refused(
    tmp_path: Path, bus: BusConnection
) -> None:
    from trainer.ensemble import build_ensemble

    root = model_root(tmp_path)
    members = [_ensemble_member(tmp_path / "members", seed) for seed in (1, 2, 3)]
    ensemble = build_ensemble(members, root, version="ens-3")
    tampered = build_ensemble(members, root, version="ens-tampered", k=2)
    (tampered / MODEL_FILE).write_bytes((tampered / MODEL_FILE).read_bytes() + b"\0")
    h = Harness(root, bus, BASELINE, {"AAPL": series()})
    svc = h.service
    await svc.warm("AAPL")
    start = h.end["AAPL"]
    svc.handle_batch([h.bar("AAPL", start)])
    reply = await svc.cmd_push_model({"version": "ens-3"})
    assert reply["accepted"] and svc.model.version == "ens-3"
    served = load_artifact(ensemble)
    assert served.manifest.policy is not None and served.manifest.policy.kind == "ensemble"
    for i in range(start + 1, start + 6):
        svc.handle_batch([h.bar("AAPL", i)])
    assert [s.model_version for s in h.signals("AAPL")] == [BASELINE.split("/")[1]] + ["ens-3"] * 5
    with pytest.raises(ArtifactError, match="sha256"):
        await svc.cmd_push_model({"version": "ens-tampered"})
    svc.handle_batch([_push(bus, tampered, sha=read_manifest(tampered).onnx_sha256)])
    assert svc.model.version == "ens-3" and svc.counters.models_rejected == 2
    svc.handle_batch([h.bar("AAPL", start + 6)])
    assert h.signals("AAPL")[-1].model_version == "ens-3"


async def test_a_stateful_shadow_rebuilds_its_own_state_from_the_snapshot(
    tmp_path: Path, bus: BusConnection
) -> None:
    root = model_root(tmp_path)
    live = stateful_artifact(root, "lstm", "lstm-live", seed=1)
    shadow = stateful_artifact(root, "attention", "att-shadow", seed=0)
    h = Harness(root, bus, "lstm-live", {"AAPL": series()})
    svc = h.service
    await svc.warm("AAPL")
    start = h.end["AAPL"]
    for i in range(start, start + 5):
        h.end["AAPL"] = i + 1
        svc.handle_batch([h.bar("AAPL", i)])
    assert svc.load_shadow("att-shadow")["accepted"]
    assert svc.shadow is not None and svc.shadow.warming == {"AAPL"}
    await h.settle()  # the shadow replayed the snapshot (bars up to start+4) for itself
    assert not svc.shadow.warming
    for i in range(start + 5, start + 20):
        h.end["AAPL"] = i + 1
        svc.handle_batch([h.bar("AAPL", i)])
    n = svc.settings.snapshot_bars
    want_live, _ = backtest_targets(live, frame().iloc[start - n : start + 20])
    assert [s.target_position for s in h.signals("AAPL")] == want_live[n:]
    # the shadow: the backtest of its own model from its snapshot (position, state) on
    want_shadow, shadow_states = backtest_targets(shadow, frame().iloc[start + 5 - n : start + 20])
    shadows = [m for m in h.published if isinstance(m, ShadowTarget)]
    assert [m.bar_seq for m in shadows] == [i + 1 for i in range(start + 5, start + 20)]
    assert [m.target_position for m in shadows] == want_shadow[n:]
    held = svc.shadow.states["AAPL"][1]
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(held, shadow_states[-1], strict=True))
    assert len({m.target_position for m in shadows}) > 1
