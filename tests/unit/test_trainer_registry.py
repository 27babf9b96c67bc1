"""Pushes and rollbacks: corrupted or mismatched models are refused before anything is copied."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest
from trainer import registry
from trainer.registry import PushError, push_model, rollback

from shared.auth import Verifier
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.manifest import Promotion
from shared.messages import ModelUpdated
from tests.model_artifacts import baseline_folder, corrupt, make_artifact

pytestmark = pytest.mark.unit

KEY = b"k" * 64
PROMOTED = Promotion(verdict="promoted", reason="test")


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "best_models", tmp_path / "models"


def _push(version: str, roots: tuple[Path, Path], sent: list[Any], **kw: Any) -> dict[str, Any]:
    return push_model(
        version, source_root=roots[0], model_dir=roots[1], key=KEY, publish=sent.append, **kw
    )


def _verified(message: ModelUpdated) -> None:
    """The check inference runs on a received model.updated (stamped fields at defaults)."""
    Verifier(KEY).verify(msgspec.structs.replace(message, seq=0, ts_publish=0), message.ts_event)


def test_push_copies_verifies_and_announces_a_signed_update(roots: tuple[Path, Path]) -> None:
    best, models = roots
    make_artifact(best, "model_a", promotion=PROMOTED)
    sent: list[Any] = []
    result = _push("model_a", roots, sent)
    assert result["version"] == "model_a" and not result["forced"]
    copy = models / "model_a"
    assert load_artifact(copy, expected_sha256=result["sha256"]).version == "model_a"
    (message,) = sent
    assert isinstance(message, ModelUpdated)
    assert (message.version, message.path, message.action) == ("model_a", "model_a", "push")
    assert message.onnx_sha256 == result["sha256"]
    _verified(message)
    assert registry.current_version(models) == "model_a"
    with pytest.raises(Exception, match="signature"):  # tampering breaks the signature
        _verified(msgspec.structs.replace(message, version="model_b", path="model_b"))


def test_corrupted_model_is_refused_and_nothing_is_copied(roots: tuple[Path, Path]) -> None:
    best, models = roots
    corrupt(make_artifact(best, "model_c", promotion=PROMOTED))
    sent: list[Any] = []
    with pytest.raises(PushError, match="sha256"):
        _push("model_c", roots, sent)
    assert not (models / "model_c").exists() and sent == []
    assert registry.read_history(models) == []


def test_model_whose_fingerprint_is_not_its_configs_is_refused(roots: tuple[Path, Path]) -> None:
    # another feature config is pushed (inference serves it with its own pipeline); a manifest
    # whose fingerprint does not belong to its recorded config is refused
    best, models = roots
    make_artifact(
        best,
        "model_m",
        config=FeatureConfig(rsi_window=10),
        pipeline_fingerprint=FeaturePipeline().fingerprint,
        promotion=PROMOTED,
    )
    sent: list[Any] = []
    with pytest.raises(PushError, match="pipeline_fingerprint"):
        _push("model_m", roots, sent)
    assert not (models / "model_m").exists() and sent == []


def test_rejected_model_needs_force_which_is_logged(roots: tuple[Path, Path]) -> None:
    best, models = roots
    make_artifact(best, "model_r", promotion=Promotion(verdict="rejected", reason="lost"))
    sent: list[Any] = []
    with pytest.raises(PushError, match="rejected"):
        _push("model_r", roots, sent)
    assert sent == []
    logged: list[tuple[str, dict[str, Any]]] = []
    result = _push(
        "model_r", roots, sent, force=True, log=lambda name, **f: logged.append((name, f))
    )
    assert result["forced"] and len(sent) == 1
    assert logged and logged[0][0] == "push_forced" and logged[0][1]["version"] == "model_r"
    assert registry.read_history(models)[-1]["forced"] is True


def test_versions_are_immutable_in_the_model_root(roots: tuple[Path, Path]) -> None:
    best = roots[0]
    make_artifact(best, "model_a", promotion=PROMOTED)
    sent: list[Any] = []
    _push("model_a", roots, sent)
    _push("model_a", roots, sent)  # the identical artifact again: fine
    shutil.rmtree(best / "model_a")
    make_artifact(best, "model_a", promotion=Promotion(verdict="promoted", reason="other"))
    with pytest.raises(PushError, match="immutable"):
        _push("model_a", roots, sent)


def test_rollback_announces_the_previous_version(roots: tuple[Path, Path]) -> None:
    best, models = roots
    make_artifact(best, "model_a", promotion=PROMOTED)
    make_artifact(best, "model_b", promotion=PROMOTED)
    sent: list[Any] = []
    _push("model_a", roots, sent)
    _push("model_b", roots, sent)
    result = rollback(model_dir=models, key=KEY, publish=sent.append)
    assert (result["version"], result["replaced"]) == ("model_a", "model_b")
    message = sent[-1]
    assert (message.action, message.version) == ("rollback", "model_a")
    _verified(message)
    assert registry.current_version(models) == "model_a"


def test_rollback_refuses_a_previous_version_that_no_longer_verifies(
    roots: tuple[Path, Path],
) -> None:
    best, models = roots
    make_artifact(best, "model_a", promotion=PROMOTED)
    make_artifact(best, "model_b", promotion=PROMOTED)
    sent: list[Any] = []
    _push("model_a", roots, sent)
    _push("model_b", roots, sent)
    corrupt(models / "model_a")
    with pytest.raises(PushError, match="sha256"):
        rollback(model_dir=models, key=KEY, publish=sent.append)
    assert registry.current_version(models) == "model_b" and len(sent) == 2


def test_rollback_without_history_falls_back_to_the_baseline(roots: tuple[Path, Path]) -> None:
    _, models = roots
    with pytest.raises(PushError, match="nothing to roll back"):
        rollback(model_dir=models, key=KEY)
    shutil.copytree(baseline_folder(), models / "baseline" / baseline_folder().name)
    sent: list[Any] = []
    result = rollback(model_dir=models, key=KEY, publish=sent.append)
    assert result["version"] == f"baseline/{baseline_folder().name}"
    assert sent[-1].path == result["version"]


def test_list_models_shows_verdicts_and_the_current_one(roots: tuple[Path, Path]) -> None:
    best, models = roots
    make_artifact(best, "model_a", promotion=PROMOTED)
    make_artifact(best, "model_r", promotion=Promotion(verdict="rejected", reason="lost"))
    _push("model_a", roots, [])
    rows = {r["version"]: r for r in registry.list_models(best, models)}
    assert rows["model_a"]["current"] and rows["model_a"]["pushed"]
    assert rows["model_r"]["verdict"] == "rejected" and not rows["model_r"]["pushed"]


def test_every_listed_version_can_be_pushed(roots: tuple[Path, Path]) -> None:
    """list_models shows exported versions and the ones already in the model root (the baseline):
    push_model finds each of them; one already in the root is announced by its path there."""
    best, models = roots
    make_artifact(best, "model_a", promotion=PROMOTED)
    shutil.copytree(baseline_folder(), models / "baseline" / baseline_folder().name)
    (best / ".staging" / "model_s").mkdir(parents=True)  # an interrupted export: not a version
    shutil.copytree(best / "model_a", best / ".staging" / "model_s", dirs_exist_ok=True)
    rows = registry.list_models(best, models)
    versions = [r["version"] for r in rows]
    assert f"baseline/{baseline_folder().name}" in versions and "model_a" in versions
    assert not any(v.startswith(".") for v in versions)
    for version in versions:
        sent: list[Any] = []
        result = _push(version, roots, sent)
        assert result["version"] == version and sent[-1].path == version
        _verified(sent[-1])
        assert load_artifact(models / sent[-1].path, expected_sha256=result["sha256"])
        assert registry.current_version(models) == version
        assert isinstance(result["trained_on"], list) and version in result["serves"]
    current = [r for r in registry.list_models(best, models) if r["current"]]
    assert [r["version"] for r in current] == [versions[-1]]


def test_push_of_an_unknown_version_names_both_places(roots: tuple[Path, Path]) -> None:
    with pytest.raises(PushError, match=r"best_models.*models"):
        _push("model_nope", roots, [])
