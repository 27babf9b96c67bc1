"""Serving a stateful (LSTM / attention) artifact: graph checks and a step with explicit state.

``shared.loaded_model.load_artifact`` hands an artifact whose ``policy.kind`` is ``lstm`` or
``attention`` to ``open_stateful``, after the checks every artifact passes (manifest, sha256,
pipeline). The graph must then have exactly the inputs and outputs the manifest's ``policy``
block describes (names, ``state_shape``, ``window``, the observation size, one output per
action) or the artifact is refused like any bad push (``ManifestMismatch``).

The state lives with the caller, one per stream (symbol), as a list of arrays with a leading
batch axis of 1: LSTM ``[h, c]`` each ``[1, *state_shape]``; attention ``[window]``
``[1, W, size]``: the last W observations, oldest first, zero rows before the first
decision (exactly ``trainer.policies.onnx.OnnxStepper``, the trainer's backtest decider).
``step`` stacks the states of several streams along the batch axis for one ONNX call.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from shared.loaded_model import LoadedModel
from shared.manifest import ArtifactError, ManifestMismatch, ModelManifest
from shared.normaliser import Normaliser

State = list[np.ndarray]
WINDOW_INPUT = "obs_window"  # trainer.policies.onnx.WINDOW_INPUT


class StatefulModel(LoadedModel):
    """A ``LoadedModel`` whose decision needs the stream's state: use ``initial_state`` and
    ``step``; ``decide``/``decide_batch`` (stateless) are refused."""

    stateful = True

    def __init__(
        self,
        path: Path,
        manifest: ModelManifest,
        normaliser: Normaliser,
        session: Any,
        input_name: str,
        *,
        batchable: bool,
    ) -> None:
        super().__init__(
            path, manifest, normaliser, session, input_name, "logits", batchable=batchable
        )
        policy = manifest.policy
        assert policy is not None and policy.stateful
        self.kind = policy.kind
        self.state_inputs = list(policy.state_inputs)
        self._outputs = [manifest.onnx_output, *policy.state_outputs]
        self.state_shape = tuple(policy.state_shape)
        self.window = policy.window

    def initial_state(self) -> State:
        if self.kind == "lstm":
            return [np.zeros((1, *self.state_shape), np.float32) for _ in self.state_inputs]
        return [np.zeros((1, self.window, self.size), np.float32)]

    def _run(self, x: np.ndarray, states: list[State]) -> tuple[np.ndarray, list[State]]:
        """Logits (n, outputs) and next states for a batch: the states stacked on axis 0."""
        n = x.shape[0]
        if self.kind == "lstm":
            feed = {self._input: x}
            for i, name in enumerate(self.state_inputs):
                feed[name] = np.concatenate([s[i] for s in states], axis=0)
            logits, *nxt = self._session.run(self._outputs, feed)
            new = [[np.asarray(a[j : j + 1], np.float32) for a in nxt] for j in range(n)]
            return np.asarray(logits, np.float64).reshape(n, -1), new
        window = np.concatenate(
            [np.concatenate([s[0] for s in states], axis=0)[:, 1:, :], x[:, None, :]], axis=1
        )
        (logits,) = self._session.run(self._outputs, {self._input: window})
        return np.asarray(logits, np.float64).reshape(n, -1), [
            [window[j : j + 1]] for j in range(n)
        ]

    def step_outputs(self, obs: np.ndarray, states: list[State]) -> tuple[np.ndarray, list[State]]:
        """Raw outputs (n, outputs) and next states for observations (n, size), one state per
        row; one ONNX call unless the graph has a fixed batch dimension."""
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if len(states) != x.shape[0]:
            raise ValueError(f"{x.shape[0]} observations but {len(states)} states")
        if self.batchable or x.shape[0] == 1:
            return self._run(x, states)
        outs, new = [], []
        for j in range(x.shape[0]):
            out, nxt = self._run(x[j : j + 1], [states[j]])
            outs.append(out)
            new.extend(nxt)
        return np.concatenate(outs, axis=0), new

    def step(self, obs: np.ndarray, states: list[State]) -> tuple[list[float], list[State]]:
        """Targets (as ``LoadedModel.decide``) and next states, row i for stream i."""
        out, new = self.step_outputs(obs, states)
        return [self._target(row) for row in out.tolist()], new

    def outputs(self, obs: np.ndarray) -> np.ndarray:
        """Outputs of a first step (every row from the initial state)."""
        x = np.asarray(obs, dtype=np.float32).reshape(-1, self.size)
        return self.step_outputs(x, [self.initial_state() for _ in range(x.shape[0])])[0]

    def decide(self, obs: np.ndarray) -> float:
        raise TypeError(f"{self.version}: a {self.kind} policy decides with step(obs, states)")

    def decide_batch(self, obs: np.ndarray) -> np.ndarray:
        raise TypeError(f"{self.version}: a {self.kind} policy decides with step(obs, states)")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "policy": self.kind}


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _shape_matches(graph: list[Any], want: list[int]) -> bool:
    """Graph shape ``[batch, *want]`` (symbolic batch or 1; other dims fixed or symbolic)."""
    if len(graph) != len(want) + 1:
        return False
    return all(_dim(g) in (None, w) for g, w in zip(graph[1:], want, strict=True))


def open_stateful(
    folder: Path, manifest: ModelManifest, normaliser: Normaliser, session: Any
) -> StatefulModel:
    """Check the graph against the manifest's ``policy`` block and probe one first step."""
    policy = manifest.policy
    assert policy is not None and policy.stateful
    size = manifest.observation.size
    n_out = manifest.action_space.n_outputs
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if policy.kind == "lstm":
        if not policy.state_shape or any(d <= 0 for d in policy.state_shape):
            raise ManifestMismatch("policy.state_shape", policy.state_shape, "positive dims")
        if not policy.state_inputs or len(policy.state_inputs) != len(policy.state_outputs):
            raise ManifestMismatch(
                "policy.state_outputs", policy.state_outputs, policy.state_inputs, "one per input"
            )
        input_name = manifest.onnx_input
        want_in = {input_name: [size], **{n: list(policy.state_shape) for n in policy.state_inputs}}
        want_out = {n: list(policy.state_shape) for n in policy.state_outputs}
    else:
        if policy.window < 1:
            raise ManifestMismatch("policy.window", policy.window, ">= 1")
        input_name = str(policy.details.get("input") or WINDOW_INPUT)
        want_in = {input_name: [policy.window, size]}
        want_out = {}
    if sorted(inputs) != sorted(want_in):
        raise ManifestMismatch("policy inputs", sorted(want_in), sorted(inputs), "graph inputs")
    for name, want in want_in.items():
        if inputs[name].type != "tensor(float)" or not _shape_matches(inputs[name].shape, want):
            raise ManifestMismatch(
                f"policy input {name}",
                ["batch", *want],
                [inputs[name].type, list(inputs[name].shape)],
                "graph input shape",
            )
    for name, want in [(manifest.onnx_output, [n_out]), *want_out.items()]:
        if name not in outputs:
            raise ManifestMismatch("policy outputs", name, sorted(outputs), "graph outputs")
        if not _shape_matches(outputs[name].shape, want):
            raise ManifestMismatch(
                f"policy output {name}", ["batch", *want], list(outputs[name].shape)
            )
    model = StatefulModel(
        folder,
        manifest,
        normaliser,
        session,
        input_name,
        batchable=all(_dim(i.shape[0]) is None for i in inputs.values()),
    )
    try:
        probe, nxt = model.step_outputs(np.zeros((1, size), np.float32), [model.initial_state()])
    except Exception as exc:
        raise ArtifactError(f"{folder}: test inference failed: {exc}") from None
    first = model.initial_state()
    if (
        probe.shape != (1, n_out)
        or not all(math.isfinite(v) for v in probe.ravel())
        or [a.shape for a in nxt[0]] != [a.shape for a in first]
    ):
        raise ArtifactError(
            f"{folder}: test step returned outputs {probe.shape} {probe.ravel().tolist()} and "
            f"state {[a.shape for a in nxt[0]]} (want {n_out} finite outputs, state "
            f"{[a.shape for a in first]})"
        )
    return model
