"""The model artifact contract: ``<root>/<version>/`` holding ``model.onnx`` + ``manifest.json``.

This module is the manifest's schema and its checks: the structs (``ModelManifest`` with its
``ObservationSpec``, ``ActionSpace``, ``DataSlice``, ``Promotion``, ``PolicySpec``),
``encode_manifest`` / ``decode_manifest`` / ``read_manifest``, the errors (``ArtifactError``,
``ManifestSchemaError``, ``ChecksumMismatch``, ``ManifestMismatch``), the checksums
(``sha256_bytes`` / ``sha256_file``) and ``check_compatible`` (a manifest against the running
pipeline). The trainer (or ``scripts/make_baseline_model.py``) writes an artifact with
``shared.model_store.write_artifact`` (the model folder store: writing, locating and listing
versions, the push history); inference and the backtester open one with
``shared.loaded_model.load_artifact``, which refuses anything that would not be served exactly
as it was trained and returns a ``LoadedModel``.

Action spaces: ``discrete`` -> the model outputs one logit per entry of ``action_values`` (default
``[-1, 0, 1]``) and the target is ``action_values[argmax]``; ``continuous`` -> one output clipped
to ``[low, high]`` (within ``[-1, 1]``). Targets are fractions of the allowed position size.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import msgspec

from shared.feature_config import FEATURE_CODE_VERSION, FeatureConfig, pipeline_fingerprint
from shared.features import FeaturePipeline
from shared.normaliser import Normaliser
from shared.observation import observation_names
from shared.regime_gate import check_caps

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
