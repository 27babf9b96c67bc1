"""ONNX export of the stateful policies, with the state as explicit graph inputs and outputs.

- LSTM: ``obs`` [B, F], ``h_in`` [B, 1, H], ``c_in`` [B, 1, H] -> ``logits`` [B, A],
  ``h_out``, ``c_out`` (the actor's LSTM; RLlib's separate critic LSTM never reaches the logits,
  so the graph feeds it zeros and it is pruned). The first step of a sequence gets zeros.
- attention: ``obs_window`` [B, W, F] (oldest first, zero rows before the first bar) ->
  ``logits`` [B, A]; the server keeps the window.

``StatefulHead`` is the torch side step by step through RLlib's own ``forward_inference`` (the
state carried as RLlib carries it); ``OnnxStepper`` the onnxruntime side with the serving
options; ``sequence_parity`` walks both over one sequence and returns the largest difference.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from shared.manifest import PolicySpec
from trainer.policies import RESET_RULE, PolicyConfig

ONNX_OPSET = 17
LSTM_INPUTS = ["h_in", "c_in"]
LSTM_OUTPUTS = ["h_out", "c_out"]
WINDOW_INPUT = "obs_window"


def _state_batch(state: Any, batch: int) -> Any:
    import torch

    if isinstance(state, dict):
        return {k: _state_batch(v, batch) for k, v in state.items()}
    t = torch.as_tensor(np.asarray(state, dtype=np.float32))
    return t.unsqueeze(0).repeat(batch, *([1] * t.ndim))


class StatefulHead:
    """Greedy decisions of a stateful RLModule, one step at a time (torch, RLlib's forward)."""

    def __init__(self, module: Any, kind: str) -> None:
        if kind not in ("lstm", "attention"):
            raise ValueError(f"not a stateful policy kind: {kind!r}")
        self.module = module
        self.kind = kind

    def initial_state(self, batch: int = 1) -> Any:
        return _state_batch(self.module.get_initial_state(), batch)

    def step(self, obs: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """(logits [B, A], next state) for observations [B, F] and the state before them."""
        import torch

        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        with torch.no_grad():
            out = self.module.forward_inference({"obs": x[:, None, :], "state_in": state})
        logits = out["action_dist_inputs"][:, 0, :].cpu().numpy().astype(np.float64)
        return logits, out["state_out"]


class OnnxStepper:
    """The exported graph step by step, the state (or window) kept here as a server would."""

    def __init__(self, onnx_bytes: bytes, spec: PolicySpec) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.spec = spec

    def initial_state(self, batch: int, obs_size: int) -> list[np.ndarray]:
        if self.spec.kind == "lstm":
            return [np.zeros((batch, *self.spec.state_shape), np.float32) for _ in LSTM_INPUTS]
        return [np.zeros((batch, self.spec.window, obs_size), np.float32)]

    def step(self, obs: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        x = np.asarray(obs, dtype=np.float32)
        if self.spec.kind == "lstm":
            logits, h, c = self.session.run(
                ["logits", *LSTM_OUTPUTS], {"obs": x, "h_in": state[0], "c_in": state[1]}
            )
            return np.asarray(logits, np.float64), [h, c]
        window = np.concatenate([state[0][:, 1:, :], x[:, None, :]], axis=1)
        (logits,) = self.session.run(["logits"], {WINDOW_INPUT: window})
        return np.asarray(logits, np.float64), [window]


def _export(wrapper: Any, args: tuple[Any, ...], inputs: list[str], outputs: list[str]) -> bytes:
    import torch

    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in [*inputs, *outputs]}
    # dynamo=False as in trainer.export: the TorchScript exporter traces RLlib's forward as run.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper.eval(),
            args,
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            dynamo=False,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
        )
    return buffer.getvalue()


def export_stateful(module: Any, kind: str, obs_size: int) -> bytes:
    """ONNX bytes of a stateful module (see the module doc for the graph's names)."""
    import torch

    if kind == "lstm":
        initial = module.get_initial_state()["actor"]
        shape = tuple(np.asarray(initial["h"]).shape)  # (layers, cell)

        class LstmPolicy(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.module = module

            def forward(self, obs: Any, h_in: Any, c_in: Any) -> Any:
                zeros = torch.zeros_like(h_in)
                state = {
                    "actor": {"h": h_in, "c": c_in},
                    "critic": {"h": zeros, "c": zeros},
                }
                out = self.module.forward_inference({"obs": obs[:, None, :], "state_in": state})
                nxt = out["state_out"]["actor"]
                return out["action_dist_inputs"][:, 0, :], nxt["h"], nxt["c"]

        args = (torch.zeros(1, obs_size), torch.zeros(1, *shape), torch.zeros(1, *shape))
        return _export(LstmPolicy(), args, ["obs", *LSTM_INPUTS], ["logits", *LSTM_OUTPUTS])
    if kind == "attention":

        class WindowPolicy(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.module = module

            def forward(self, obs_window: Any) -> Any:
                return self.module.policy_logits(obs_window)

        return _export(
            WindowPolicy(), (torch.zeros(1, module.window, obs_size),), [WINDOW_INPUT], ["logits"]
        )
    raise ValueError(f"not a stateful policy kind: {kind!r}")


def policy_spec(module: Any, policy: PolicyConfig) -> PolicySpec:
    """The manifest's ``policy`` block for an exported stateful module."""
    if policy.kind == "lstm":
        shape = list(np.asarray(module.get_initial_state()["actor"]["h"]).shape)
        return PolicySpec(
            kind="lstm",
            state_inputs=list(LSTM_INPUTS),
            state_outputs=list(LSTM_OUTPUTS),
            state_shape=shape,
            reset=RESET_RULE,
            details={"lstm_cell_size": policy.lstm_cell_size, "max_seq_len": policy.max_seq_len},
        )
    if policy.kind == "attention":
        return PolicySpec(
            kind="attention",
            window=policy.window,
            reset=RESET_RULE + "; the window's rows before the reset are zeros",
            details={
                "input": WINDOW_INPUT,
                "d_model": policy.d_model,
                "heads": policy.heads,
                "layers": policy.layers,
                "ff_size": policy.ff_size,
            },
        )
    return PolicySpec(kind="mlp")


def sequence_parity(
    head: StatefulHead, stepper: OnnxStepper, sequence: np.ndarray
) -> dict[str, float]:
    """Walk ``sequence`` [T, B, F] through torch and ONNX, each carrying its own state.

    Returns the largest |difference| of the logits (and, for an LSTM, of h and c) over all
    steps; the two states are never synchronised, so a drift would accumulate and show."""
    steps, batch, size = sequence.shape
    t_state = head.initial_state(batch)
    o_state = stepper.initial_state(batch, size)
    worst = {"logits": 0.0, "state": 0.0}
    for t in range(steps):
        want, t_state = head.step(sequence[t], t_state)
        got, o_state = stepper.step(sequence[t], o_state)
        worst["logits"] = max(worst["logits"], float(np.max(np.abs(got - want))))
        if head.kind == "lstm":
            for name, arr in zip(("h", "c"), o_state, strict=True):
                ref = t_state["actor"][name].cpu().numpy()
                worst["state"] = max(worst["state"], float(np.max(np.abs(arr - ref))))
    return worst


def sequential_decider(
    head: StatefulHead, base: np.ndarray, valid: np.ndarray, targets: Callable[[np.ndarray], float]
) -> Callable[[int, float], float]:
    """``decide(t, position)`` for ``shared.backtest.run_policy``: the state is carried from bar
    to bar and reset (zeros) at the first call, after a skipped bar (a gap) and at an invalid
    (not warmed-up) bar, the rule the manifest gives a server."""
    memory: dict[str, Any] = {"t": None, "state": None}

    def decide(t: int, position: float) -> float:
        if not valid[t]:
            memory["t"] = None
            return 0.0
        if memory["t"] is None or t != memory["t"] + 1:
            memory["state"] = head.initial_state(1)
        obs = base[t].copy()
        obs[-1] = position
        logits, memory["state"] = head.step(obs[None, :], memory["state"])
        memory["t"] = t
        return targets(logits[0])

    return decide
