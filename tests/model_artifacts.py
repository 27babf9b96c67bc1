"""Test helpers: small ONNX graphs and artifacts derived from the shipped baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.manifest import MODEL_FILE, ActionSpace, ModelManifest, ObservationSpec, read_manifest
from shared.model_store import resolve_artifact, write_artifact
from shared.normaliser import Normaliser
from shared.observation import observation_names

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


def baseline_folder() -> Path:
    return resolve_artifact(MODELS, "baseline")


def linear_onnx(
    weights: np.ndarray,
    bias: np.ndarray,
    *,
    input_name: str = "obs",
    output_name: str = "logits",
    input_dim: int | None = None,
) -> bytes:
    """``output = obs @ weights + bias`` as an ONNX graph (float32, dynamic batch)."""
    from onnx import TensorProto, helper, numpy_helper

    n_in, n_out = weights.shape
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [input_name, "W"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], [output_name]),
        ],
        "test_linear",
        [
            helper.make_tensor_value_info(
                input_name, TensorProto.FLOAT, ["batch", input_dim or n_in]
            )
        ],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", n_out])],
        [
            numpy_helper.from_array(np.asarray(weights, dtype=np.float32), "W"),
            numpy_helper.from_array(np.asarray(bias, dtype=np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return bytes(model.SerializeToString(deterministic=True))


def constant_policy_onnx(size: int, action_index: int, n_actions: int = 3) -> bytes:
    """Discrete policy that always picks ``action_index``."""
    bias = np.zeros(n_actions, dtype=np.float32)
    bias[action_index] = 1.0
    return linear_onnx(np.zeros((size, n_actions), dtype=np.float32), bias)


def position_flipping_onnx(size: int, n_actions: int = 3) -> bytes:
    """Discrete policy that reads only its position input (the observation's last element):
    flat -> long (+1), long -> flat (0). Served bar after bar it alternates 1, 0, 1, 0 ... only
    if the position it is given is updated with its own previous target."""
    weights = np.zeros((size, n_actions), dtype=np.float32)
    weights[-1, 1] = 10.0  # flat wins when the position is +1
    weights[-1, 2] = -10.0
    bias = np.array([0.0, 0.0, 5.0], dtype=np.float32)  # long wins when the position is 0
    return linear_onnx(weights, bias)


def make_artifact(
    root: Path,
    version: str,
    *,
    onnx_bytes: bytes | None = None,
    config: FeatureConfig | None = None,
    action_space: ActionSpace | None = None,
    **overrides: Any,
) -> Path:
    """An artifact like the baseline (same normaliser, data hashes...) with the given changes."""
    base = read_manifest(baseline_folder())
    fields: dict[str, Any] = {"version": version, "promotion": base.promotion}
    if config is not None:
        pipe = FeaturePipeline(config)
        names = observation_names(pipe)
        rng = np.random.default_rng(0)
        norm = Normaliser(rng.normal(size=len(pipe.names)), np.ones(len(pipe.names)), pipe.names)
        fields.update(
            feature_config=config,
            pipeline_fingerprint=pipe.fingerprint,
            observation=ObservationSpec(names=names, size=len(names)),
            normaliser=norm.to_dict(),
        )
    if action_space is not None:
        fields["action_space"] = action_space
    fields.update(overrides)
    manifest: ModelManifest = msgspec.structs.replace(base, **fields)
    if onnx_bytes is None:
        onnx_bytes = (baseline_folder() / MODEL_FILE).read_bytes()
    return write_artifact(root, manifest, onnx_bytes)


def corrupt(folder: Path) -> None:
    """Flip one byte of model.onnx (the manifest's sha256 no longer matches)."""
    path = folder / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
