"""The export's ONNX step: the policy's deterministic action head as ONNX, checked against torch.

The head (``trainer.policy_head.PolicyHead``: the RLModule's ``forward_inference`` action logits,
DQN's Q-values, or a Gaussian's mean) is wrapped in a ``torch.nn.Module`` and exported with
``torch.onnx.export(..., dynamo=False)``; input ``obs`` (batch, features + position), output
``logits`` (batch, actions). Parity: onnxruntime (run as inference serves it) and torch are
compared on the given observations; a difference above ``PARITY_TOLERANCE`` refuses the export
(``ExportError``).
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import numpy as np

from trainer.policy_head import PolicyHead
from trainer.train_data import SliceData

PARITY_TOLERANCE = 1e-5
ONNX_OPSET = 17


class ExportError(RuntimeError):
    """The export was refused (parity failure, bad artifact); the message says why."""


# ----------------------------------------------------------------------------- ONNX


def _onnx_wrapper(head: PolicyHead) -> Any:
    import torch

    class OnnxPolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = head.module

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = head.forward(obs)
            return out

    return OnnxPolicy().eval()


def _register_nanmean() -> None:
    """RLlib's dueling DQN centres advantages with ``nanmean``, which the TorchScript exporter
    lacks; on finite inputs it is ``ReduceMean`` (our observations are finite, and a non-finite
    output is served as "flat" by inference anyway)."""
    from torch.onnx import register_custom_op_symbolic, symbolic_helper

    def nanmean(g: Any, x: Any, dim: Any, keepdim: Any, dtype: Any) -> Any:
        axes = symbolic_helper._get_const(dim, "is", "dim")
        keep = symbolic_helper._get_const(keepdim, "i", "keepdim")
        return g.op("ReduceMean", x, axes_i=axes, keepdims_i=keep)

    register_custom_op_symbolic("aten::nanmean", nanmean, ONNX_OPSET)


def export_onnx(head: PolicyHead, obs_size: int) -> bytes:
    """ONNX bytes of the head (input ``obs`` [batch, obs_size] -> output ``logits``)."""
    import torch

    _register_nanmean()
    wrapper = _onnx_wrapper(head)
    buffer = io.BytesIO()
    # dynamo=False is deliberate (the TorchScript exporter traces forward_inference as RLlib
    # runs it); silence its deprecation notice.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (torch.zeros(1, obs_size, dtype=torch.float32),),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            dynamo=False,
            input_names=["obs"],
            output_names=["logits"],
            dynamic_axes={"obs": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
    return buffer.getvalue()


def parity_observations(
    obs_size: int, slices: list[SliceData], positions: tuple[float, ...], seed: int = 0
) -> np.ndarray:
    """1,000 random observations plus every valid real one of ``slices`` at every position."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(0.0, 2.0, size=(1000, obs_size)).astype(np.float32)]
    for data in slices:
        base, valid = data.observations
        for pos in positions:
            obs = base[valid].copy()
            obs[:, -1] = pos
            parts.append(obs)
    return np.concatenate(parts).astype(np.float32)


def check_parity(head: PolicyHead, onnx_bytes: bytes, obs: np.ndarray) -> float:
    """Max |onnxruntime - torch| over ``obs``; ``ExportError`` above ``PARITY_TOLERANCE``.

    onnxruntime runs with the options inference serves with (one thread, sequential).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
    )
    got = np.asarray(session.run(["logits"], {"obs": obs})[0], dtype=np.float64)
    want = head.outputs(obs)
    if got.shape != want.shape:
        raise ExportError(f"ONNX output shape {got.shape} != torch {want.shape}")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not math.isfinite(diff) or diff > PARITY_TOLERANCE:
        raise ExportError(
            f"ONNX/torch parity {diff:.3g} exceeds {PARITY_TOLERANCE:g} on {len(obs)} observations"
        )
    return diff
