"""LSTM and attention policies (RLlib RLModules) exported to ONNX with explicit state.

Randomly initialised (seeded) modules: parity does not depend on how good the weights are.
Torch runs RLlib's own ``forward_inference`` with the state carried as RLlib carries it; ONNX
runs the exported graph with the state (or window) kept outside, as a server would. Neither
side is ever re-synchronised, so a drift would accumulate over the 500 steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import msgspec
import numpy as np
import pytest
from trainer.policies import PolicyConfig, build_policy_module
from trainer.policies.onnx import (
    LSTM_INPUTS,
    LSTM_OUTPUTS,
    WINDOW_INPUT,
    OnnxStepper,
    StatefulHead,
    export_stateful,
    policy_spec,
    sequence_parity,
    sequential_decider,
)

from shared.loaded_model import load_artifact
from shared.manifest import read_manifest
from shared.model_store import write_artifact
from tests.model_artifacts import baseline_folder

pytestmark = pytest.mark.unit

OBS = 12
TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; a step is ~1 ms on one thread
    yield
    torch.set_num_threads(before)


def _spaces() -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    return gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32), gym.spaces.Discrete(3)


def _sequence(steps: int = 500, batch: int = 2, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seq = rng.normal(0.0, 1.5, size=(steps, batch, OBS)).astype(np.float32)
    seq[:, :, -1] = rng.choice([-1.0, 0.0, 1.0], size=(steps, batch))  # the position entry
    return seq


@pytest.mark.parametrize("kind", ["lstm", "attention"])
def test_onnx_matches_torch_over_a_500_step_sequence(kind: str) -> None:
    policy = PolicyConfig(kind=kind, lstm_cell_size=16, window=8)  # type: ignore[arg-type]
    module = build_policy_module(policy, *_spaces(), seed=11)
    onnx_bytes = export_stateful(module, kind, OBS)
    spec = policy_spec(module, policy)
    stepper = OnnxStepper(onnx_bytes, spec)

    names_in = [i.name for i in stepper.session.get_inputs()]
    names_out = [o.name for o in stepper.session.get_outputs()]
    if kind == "lstm":
        assert names_in == ["obs", *LSTM_INPUTS]
        assert names_out == ["logits", *LSTM_OUTPUTS]
        assert spec.state_shape == [1, 16]
    else:
        assert names_in == [WINDOW_INPUT]
        assert names_out == ["logits"]
        assert spec.window == 8

    worst = sequence_parity(StatefulHead(module, kind), stepper, _sequence())
    assert worst["logits"] <= TOLERANCE, worst
    assert worst["state"] <= TOLERANCE, worst


@pytest.mark.parametrize("kind", ["lstm", "attention"])
def test_the_state_matters_so_parity_is_not_vacuous(kind: str) -> None:
    """The same observation after different histories gives different logits: the graph really
    uses its state/window (a stateless export would pass the parity test above only if the
    torch side ignored it too)."""
    policy = PolicyConfig(kind=kind, lstm_cell_size=16, window=8)  # type: ignore[arg-type]
    module = build_policy_module(policy, *_spaces(), seed=5)
    stepper = OnnxStepper(export_stateful(module, kind, OBS), policy_spec(module, policy))
    seq = _sequence(steps=6, batch=1)
    fresh, _ = stepper.step(seq[-1], stepper.initial_state(1, OBS))
    state = stepper.initial_state(1, OBS)
    for t in range(len(seq)):
        after_history, state = stepper.step(seq[t], state)
    assert float(np.max(np.abs(after_history - fresh))) > 1e-4


def test_sequential_decider_carries_the_state_and_resets_on_a_gap() -> None:
    """Backtests carry the state bar to bar and start from zeros after a skipped bar."""
    policy = PolicyConfig(kind="lstm", lstm_cell_size=16)
    head = StatefulHead(build_policy_module(policy, *_spaces(), seed=2), "lstm")
    seq = _sequence(steps=10, batch=1)[:, 0, :]
    seen: list[np.ndarray] = []

    def record(logits: np.ndarray) -> float:
        seen.append(logits)
        return 0.0

    decide = sequential_decider(head, seq, np.ones(len(seq), dtype=bool), record)
    state = head.initial_state(1)
    for t in range(6):
        decide(t, float(seq[t, -1]))
        carried, state = head.step(seq[t : t + 1], state)
    fresh5, _ = head.step(seq[5:6], head.initial_state(1))
    np.testing.assert_allclose(seen[-1], carried[0], atol=1e-7)  # no gap: carried
    assert float(np.max(np.abs(seen[-1] - fresh5[0]))) > 1e-4
    decide(8, float(seq[8, -1]))  # bars 6 and 7 missing: a gap
    fresh8, _ = head.step(seq[8:9], head.initial_state(1))
    np.testing.assert_allclose(seen[-1], fresh8[0], atol=1e-7)


def test_manifest_describes_a_stateful_artifact_and_the_loader_serves_it(
    tmp_path: Path,
) -> None:
    policy = PolicyConfig(kind="lstm", lstm_cell_size=16)
    base = read_manifest(baseline_folder())
    obs = base.observation.size
    space = gym.spaces.Box(-np.inf, np.inf, (obs,), np.float32)
    module = build_policy_module(policy, space, gym.spaces.Discrete(3), seed=0)
    spec = policy_spec(module, policy)
    manifest = msgspec.structs.replace(base, version="lstm-test", algorithm="PPO", policy=spec)
    folder = write_artifact(tmp_path, manifest, export_stateful(module, "lstm", obs))
    back = read_manifest(folder)
    assert back.policy is not None and back.policy.kind == "lstm"
    assert back.policy.state_inputs == ["h_in", "c_in"]
    assert back.policy.state_shape == [1, 16]
    assert "epoch" in back.policy.reset and "gap" in back.policy.reset
    # served with per-symbol state since the serving side landed (shared.stateful_model)
    assert load_artifact(folder).stateful
