"""Serving a model artifact: ``load_artifact`` opens and verifies one ``<root>/<version>/`` folder
(the schema and its checks are ``shared.manifest``) and returns a ``LoadedModel``, inference's
decision core (ONNX outputs -> target). The trainer writes an artifact with
``shared.model_store.write_artifact``; inference and the backtester open one with
``load_artifact``, which refuses anything that would not be served exactly as it was trained:

1. ``manifest.json`` decodes into ``ModelManifest`` (unknown fields and wrong types are refused,
   ``manifest_schema`` must be one this code knows) -> ``ManifestSchemaError``;
2. the sha256 of ``model.onnx`` equals ``manifest.onnx_sha256`` (and the caller's expected hash,
   e.g. from a ``model.updated`` message) -> ``ChecksumMismatch``;
3. the manifest's ``pipeline_fingerprint`` equals the running pipeline's, its observation names
   and size equal ``observation_names(pipeline)``, its normaliser has one entry per feature and
   the folder name equals ``manifest.version`` -> ``ManifestMismatch`` naming the field and both
   values;
4. onnxruntime opens the bytes that were hashed (``intra_op_num_threads=1``), the graph's input and
   output shapes match the manifest, and one test inference returns finite values of the right
   shape -> ``ArtifactError``. A stateful ``policy.kind`` (lstm / attention) is checked against
   its state inputs/outputs or window in ``shared.stateful_model`` and served with per-stream
   state.

Serving a model whose features differ from the default: ``pipeline_from_manifest`` builds the
pipeline of the manifest's own ``feature_config`` (refused unless its ``feature_code_version`` is
this code's and its fingerprint is that config's) and ``load_artifact`` checks against it.
``regime_caps`` (optional, one cap per HMM state) gates every target ``LoadedModel`` decides
(``shared.regime_gate``): evaluation, backtest, gate and inference apply the same rule.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from shared.feature_config import FEATURE_CODE_VERSION, pipeline_fingerprint
from shared.features import FeaturePipeline
from shared.manifest import (
    MODEL_FILE,
    ArtifactError,
    ChecksumMismatch,
    ManifestMismatch,
    ManifestSchemaError,
    ModelManifest,
    check_compatible,
    read_manifest,
    sha256_bytes,
)
from shared.normaliser import Normaliser
from shared.regime_gate import RegimeGate


class LoadedModel:
    """An artifact that passed every check, ready to decide. ``stateful`` models (LSTM /
    attention) are ``shared.stateful_model.StatefulModel``: they decide with ``step``."""

    stateful = False

    def __init__(
        self,
        path: Path,
        manifest: ModelManifest,
        normaliser: Normaliser,
        session: Any,
        input_name: str,
        output_name: str,
        *,
        batchable: bool = True,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.version = manifest.version
        self.normaliser = normaliser
        self._session = session
        self._input = input_name
        self._outputs = [output_name]
        self._discrete = manifest.action_space.kind == "discrete"
        self._action_list = [float(v) for v in manifest.action_space.action_values]
        self._low = float(manifest.action_space.low)
        self._high = float(manifest.action_space.high)
        self.size = manifest.observation.size
        self.nonfinite_outputs = 0
        # False when the graph's input has a fixed batch dimension (e.g. exported with batch 1):
        # ``decide_batch`` then runs one call per row instead of one call for the batch.
        self.batchable = batchable
        # the regime-gated position cap (None: no caps in the manifest); checked by load_artifact
        self.gate = (
            RegimeGate(manifest.regime_caps, manifest.feature_config, normaliser)
            if manifest.regime_caps
            else None
        )
        # the feature pipeline the artifact was checked against (set by ``load_artifact``)
        self.pipeline: FeaturePipeline | None = None

    def outputs(self, obs: np.ndarray) -> np.ndarray:
        """Raw model outputs for a batch (n, size) or one observation (size,) -> (n, outputs)."""
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        result = self._session.run(self._outputs, {self._input: x})[0]
        return np.asarray(result, dtype=np.float64).reshape(x.shape[0], -1)

    def _target(self, out: list[float]) -> float:
        for v in out:
            if not math.isfinite(v):
                self.nonfinite_outputs += 1
                return 0.0  # a broken output never opens a position
        if self._discrete:
            best = 0
            for i in range(1, len(out)):
                if out[i] > out[best]:
                    best = i  # first maximum wins, like numpy.argmax
            return self._action_list[best]
        return min(self._high, max(self._low, out[0]))

    def decide(self, obs: np.ndarray) -> float:
        """Target position (fraction of the allowed size) for one observation."""
        x = obs if obs.dtype == np.float32 else np.asarray(obs, dtype=np.float32)
        result = self._session.run(self._outputs, {self._input: x.reshape(1, -1)})[0]
        if self.gate is not None:
            return self.gate.apply(self._target(result.reshape(-1).tolist()), x.reshape(-1))
        return self._target(result.reshape(-1).tolist())

    def decide_batch(self, obs: np.ndarray) -> np.ndarray:
        """Targets for a batch of observations (n, size) in one ONNX call; row i equals
        ``decide(obs[i])`` exactly. A graph with a fixed batch dimension gets one call per row."""
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"expected a batch of observations (n, size), got shape {x.shape}")
        if x.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        if not self.batchable or x.shape[0] == 1:
            return np.array([self.decide(row) for row in x], dtype=np.float64)
        out = self.outputs(x)
        targets = [self._target(row) for row in out.tolist()]
        if self.gate is not None:
            targets = self.gate.apply_rows(targets, x)
        return np.array(targets, dtype=np.float64)

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return self.normaliser.transform(features)

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "path": str(self.path),
            "algorithm": self.manifest.algorithm,
            "onnx_sha256": self.manifest.onnx_sha256,
            "pipeline_fingerprint": self.manifest.pipeline_fingerprint,
            "action_space": self.manifest.action_space.kind,
            "promotion": self.manifest.promotion.verdict,
        }


def _session(onnx_bytes: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(
        onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
    )


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def load_artifact(
    path: str | os.PathLike[str],
    pipeline: FeaturePipeline | None = None,
    *,
    expected_sha256: str | None = None,
) -> LoadedModel:
    """Open and verify one artifact folder (see the module doc); raises ``ArtifactError``.

    ``pipeline`` None: the pipeline of the artifact's own feature config
    (``pipeline_from_manifest``, fingerprint and code version checked), so a reader that does
    not run features of its own (an evaluation, ``make compare``) opens any servable model."""
    folder = Path(path)
    manifest = read_manifest(folder)
    pipeline = pipeline if pipeline is not None else pipeline_from_manifest(manifest)
    try:
        onnx_bytes = (folder / MODEL_FILE).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{folder / MODEL_FILE}: cannot read: {exc.strerror or exc}") from None
    actual = sha256_bytes(onnx_bytes)
    if actual != manifest.onnx_sha256:
        raise ChecksumMismatch(
            f"{folder / MODEL_FILE}: sha256 {actual} != manifest onnx_sha256 {manifest.onnx_sha256}"
        )
    if expected_sha256 and expected_sha256 != actual:
        raise ChecksumMismatch(
            f"{folder / MODEL_FILE}: sha256 {actual} != announced {expected_sha256}"
        )
    check_compatible(manifest, pipeline, folder)
    normaliser = Normaliser.from_dict(manifest.normaliser)

    try:
        session = _session(onnx_bytes)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ArtifactError(f"{folder / MODEL_FILE}: onnxruntime cannot load it: {exc}") from None
    if manifest.policy is not None and manifest.policy.stateful:
        # LSTM / attention: the state (or window) is per stream; its graph checks are there
        from shared.stateful_model import open_stateful

        stateful = open_stateful(folder, manifest, normaliser, session)
        stateful.pipeline = pipeline
        return stateful
    inputs = session.get_inputs()
    outputs = {o.name: o for o in session.get_outputs()}
    size = manifest.observation.size
    if len(inputs) != 1 or inputs[0].name != manifest.onnx_input:
        raise ManifestMismatch("onnx_input", manifest.onnx_input, [i.name for i in inputs])
    inp = inputs[0]
    if inp.type != "tensor(float)":
        raise ManifestMismatch("observation.dtype", "tensor(float)", inp.type)
    if len(inp.shape) != 2 or _dim(inp.shape[1]) != size:
        raise ManifestMismatch("observation.size", size, list(inp.shape), "graph input shape")
    if manifest.onnx_output not in outputs:
        raise ManifestMismatch("onnx_output", manifest.onnx_output, sorted(outputs))
    out = outputs[manifest.onnx_output]
    n_out = manifest.action_space.n_outputs
    if len(out.shape) != 2 or _dim(out.shape[1]) not in (None, n_out):
        raise ManifestMismatch("action_space", n_out, list(out.shape), "graph output shape")

    model = LoadedModel(
        folder,
        manifest,
        normaliser,
        session,
        inp.name,
        manifest.onnx_output,
        batchable=_dim(inp.shape[0]) is None,  # a symbolic/unknown batch dimension
    )
    try:
        probe = model.outputs(np.zeros((1, size), dtype=np.float32))
    except Exception as exc:
        raise ArtifactError(f"{folder / MODEL_FILE}: test inference failed: {exc}") from None
    if probe.shape != (1, n_out) or not all(math.isfinite(v) for v in probe.ravel()):
        raise ArtifactError(
            f"{folder / MODEL_FILE}: test inference returned shape {probe.shape} "
            f"values {probe.ravel().tolist()} (want {n_out} finite outputs)"
        )
    model.pipeline = pipeline
    return model


def pipeline_from_manifest(manifest: ModelManifest) -> FeaturePipeline:
    """The feature pipeline an artifact was trained on, built from its own ``feature_config``
    (so a server can run a model whose features differ from the default). Refused
    (``ManifestMismatch``) unless the manifest's ``feature_code_version`` is this code's and
    its ``pipeline_fingerprint`` is the fingerprint of its recorded config."""
    if manifest.feature_code_version != FEATURE_CODE_VERSION:
        raise ManifestMismatch(
            "feature_code_version",
            manifest.feature_code_version,
            FEATURE_CODE_VERSION,
            "the features were computed by other code",
        )
    regime = manifest.feature_config.regime
    if regime is not None and regime.params is None:
        raise ManifestSchemaError("feature_config.regime: no fitted HMM numbers (params)")
    try:
        own = pipeline_fingerprint(manifest.feature_config)
        pipeline = FeaturePipeline(manifest.feature_config)
    except (ValueError, TypeError, KeyError) as exc:
        raise ManifestSchemaError(f"feature_config: cannot build its pipeline: {exc}") from None
    if own != manifest.pipeline_fingerprint:
        raise ManifestMismatch(
            "pipeline_fingerprint",
            manifest.pipeline_fingerprint,
            own,
            "the fingerprint does not belong to the recorded feature_config",
        )
    return pipeline
