"""The model artifact contract: ``<root>/<version>/`` holding ``model.onnx`` + ``manifest.json``.

The trainer (or ``scripts/make_baseline_model.py``) writes an artifact with
``shared.model_store.write_artifact`` (the model folder store: writing, locating and listing
versions, the push history); inference and the backtester open one with ``load_artifact``, which
refuses anything that would not be served exactly as it was trained:

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

Action spaces: ``discrete`` -> the model outputs one logit per entry of ``action_values`` (default
``[-1, 0, 1]``) and the target is ``action_values[argmax]``; ``continuous`` -> one output clipped
to ``[low, high]`` (within ``[-1, 1]``). Targets are fractions of the allowed position size.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np

from shared.features import (
    FEATURE_CODE_VERSION,
    FeatureConfig,
    FeaturePipeline,
    Normaliser,
    pipeline_fingerprint,
)
from shared.observation import observation_names
from shared.regime_gate import RegimeGate, check_caps

MANIFEST_SCHEMA_VERSION = 1
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"


# --------------------------------------------------------------------------- errors


class ArtifactError(Exception):
    """An artifact cannot be served; the message says why."""


class ManifestSchemaError(ArtifactError):
    """manifest.json is missing, not JSON, or does not match ``ModelManifest``."""


class ChecksumMismatch(ArtifactError):
    """model.onnx is not the file the manifest (or the pusher) describes."""


class ManifestMismatch(ArtifactError):
    """The manifest does not match the running pipeline: ``field`` and both values are named."""

    def __init__(
        self, field: str, manifest_value: Any, running_value: Any, detail: str = ""
    ) -> None:
        self.field = field
        self.manifest_value = manifest_value
        self.running_value = running_value
        msg = (
            f"manifest field '{field}' mismatch: "
            f"manifest={manifest_value!r} running={running_value!r}"
        )
        super().__init__(f"{msg} ({detail})" if detail else msg)


# --------------------------------------------------------------------------- schema


class ObservationSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    names: list[str]
    size: int
    dtype: Literal["float32"] = "float32"


class ActionSpace(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["discrete", "continuous"]
    action_values: list[float] = msgspec.field(default_factory=lambda: [-1.0, 0.0, 1.0])
    low: float = -1.0
    high: float = 1.0

    @property
    def n_outputs(self) -> int:
        return len(self.action_values) if self.kind == "discrete" else 1


class DataSlice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One slice of bars the model saw; ``content_hash`` is ``shared.data.content_hash``."""

    role: str  # "train", "normaliser", "validation", "test"
    source: str
    symbol: str
    start: str
    end: str
    rows: int
    content_hash: str


class Promotion(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    verdict: Literal["promoted", "rejected", "candidate", "baseline"]
    reason: str = ""


class PolicySpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What kind of graph ``model.onnx`` is, so a server knows what to feed it (issue 15).

    ``mlp``: stateless, ``obs`` [batch, size] -> ``logits`` (what inference serves today).
    ``ensemble``: one stateless graph with the MLP's input/output names combining ``members``
    by ``combination``. ``lstm``: ``obs`` plus the recurrent state (``state_inputs``, each
    [batch, *state_shape]) -> ``logits`` plus the next state (``state_outputs``). ``attention``:
    ``obs_window`` [batch, window, size] (the last ``window`` observations, oldest first,
    zero rows before the first bar) -> ``logits``. ``reset``: when a server must start the
    state (or window) from zeros again."""

    kind: Literal["mlp", "ensemble", "lstm", "attention"] = "mlp"
    state_inputs: list[str] = msgspec.field(default_factory=list)
    state_outputs: list[str] = msgspec.field(default_factory=list)
    state_shape: list[int] = msgspec.field(default_factory=list)
    window: int = 0
    reset: str = ""
    members: list[str] = msgspec.field(default_factory=list)
    combination: str = ""
    details: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def stateful(self) -> bool:
        return self.kind in ("lstm", "attention")


class ModelManifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: str
    created_at: str  # ISO-8601 UTC
    algorithm: str  # "PPO", "ma_crossover", ...
    onnx_sha256: str
    observation: ObservationSpec
    feature_config: FeatureConfig
    pipeline_fingerprint: str
    normaliser: dict[str, Any]
    action_space: ActionSpace
    action_meaning: str
    symbols: list[str]
    timeframe: str
    training_data: list[DataSlice]
    seeds: dict[str, int]
    git_revision: str
    promotion: Promotion
    feature_code_version: str = FEATURE_CODE_VERSION
    onnx_input: str = "obs"
    onnx_output: str = "logits"
    tune_trial_id: str = ""
    validation_metrics: dict[str, float | None] = msgspec.field(default_factory=dict)
    test_metrics: dict[str, float | None] = msgspec.field(default_factory=dict)
    provenance: str = ""
    manifest_schema: int = MANIFEST_SCHEMA_VERSION
    policy: PolicySpec | None = None  # None = a plain MLP (manifests before issue 15)
    # one position cap in [0, 1] per HMM state of ``feature_config.regime``
    # (``shared.regime_gate``); empty = no gate
    regime_caps: list[float] = msgspec.field(default_factory=list)


_json_encoder = msgspec.json.Encoder(order="deterministic")


def encode_manifest(manifest: ModelManifest) -> bytes:
    """Deterministic, human-readable JSON (same manifest -> same bytes)."""
    return msgspec.json.format(_json_encoder.encode(manifest), indent=2) + b"\n"


def decode_manifest(data: bytes, source: str = "manifest.json") -> ModelManifest:
    try:
        head = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ManifestSchemaError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(head, dict):
        raise ManifestSchemaError(f"{source}: top level must be an object")
    schema = head.get("manifest_schema", MANIFEST_SCHEMA_VERSION)
    if schema != MANIFEST_SCHEMA_VERSION:
        raise ManifestSchemaError(
            f"{source}: manifest_schema {schema!r} is not supported (this code reads "
            f"{MANIFEST_SCHEMA_VERSION})"
        )
    try:
        return msgspec.json.decode(data, type=ModelManifest)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ManifestSchemaError(f"{source}: {exc}") from None


def read_manifest(folder: str | os.PathLike[str]) -> ModelManifest:
    path = Path(folder) / MANIFEST_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestSchemaError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return decode_manifest(data, str(path))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- checking


def _first_config_difference(a: FeatureConfig, b: FeatureConfig) -> tuple[str, Any, Any] | None:
    da, db = a.to_dict(), b.to_dict()
    for key in da:
        if da[key] != db.get(key):
            return key, da[key], db.get(key)
    return None


def check_compatible(
    manifest: ModelManifest, pipeline: FeaturePipeline, folder: Path | None
) -> None:
    """Raise ``ManifestMismatch`` for the first field that differs from the running pipeline."""
    if folder is not None and folder.name != manifest.version:
        raise ManifestMismatch("version", manifest.version, folder.name, "folder name")
    running = pipeline.fingerprint
    if manifest.pipeline_fingerprint != running:
        if manifest.feature_code_version != FEATURE_CODE_VERSION:
            detail = (
                f"feature_code_version manifest={manifest.feature_code_version!r} "
                f"running={FEATURE_CODE_VERSION!r}"
            )
        else:
            diff = _first_config_difference(manifest.feature_config, pipeline.config)
            detail = (
                f"feature_config.{diff[0]} manifest={diff[1]!r} running={diff[2]!r}"
                if diff
                else "same config: the manifest's fingerprint was not made by this code"
            )
        raise ManifestMismatch(
            "pipeline_fingerprint", manifest.pipeline_fingerprint, running, detail
        )
    own = pipeline_fingerprint(manifest.feature_config)
    if own != running:
        raise ManifestMismatch(
            "feature_config",
            manifest.feature_config.to_dict(),
            pipeline.config.to_dict(),
            "the fingerprint does not belong to the recorded config",
        )
    names = observation_names(pipeline)
    if manifest.observation.names != names:
        raise ManifestMismatch("observation.names", manifest.observation.names, names)
    if manifest.observation.size != len(names):
        raise ManifestMismatch("observation.size", manifest.observation.size, len(names))
    try:
        norm = Normaliser.from_dict(manifest.normaliser)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestSchemaError(f"normaliser: {exc}") from None
    if len(norm.mean) != len(pipeline.names):
        raise ManifestMismatch("normaliser.size", len(norm.mean), len(pipeline.names))
    if norm.names and norm.names != pipeline.names:
        raise ManifestMismatch("normaliser.names", norm.names, pipeline.names)
    if manifest.regime_caps:
        reason = check_caps(manifest.regime_caps, manifest.feature_config, norm)
        if manifest.policy is not None and manifest.policy.stateful and not reason:
            reason = f"regime_caps: not supported for a {manifest.policy.kind} policy yet"
        if reason:
            raise ManifestMismatch("regime_caps", manifest.regime_caps, None, reason)
    space = manifest.action_space
    if space.kind == "discrete":
        if not space.action_values or any(not -1.0 <= v <= 1.0 for v in space.action_values):
            raise ManifestSchemaError("action_space.action_values: need values within [-1, 1]")
    elif not -1.0 <= space.low < space.high <= 1.0:
        raise ManifestSchemaError("action_space: need -1 <= low < high <= 1")


# --------------------------------------------------------------------------- serving


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
