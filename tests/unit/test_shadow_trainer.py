"""The trainer's shadow verbs: verify + copy + record + a signed ``model.updated`` (shadow), a
promotion that is an ordinary push (gate and history included), a drop that is announced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from trainer import registry
from trainer.registry import PushError
from trainer.shadow import drop_shadow, load_shadow, promote_shadow

from shared.auth import Verifier
from shared.loaded_model import load_artifact
from shared.manifest import Promotion
from shared.messages import ModelUpdated
from tests.model_artifacts import corrupt, make_artifact

pytestmark = pytest.mark.unit

KEY = b"k" * 64


def verified(message: ModelUpdated) -> ModelUpdated:
    Verifier(KEY).verify(msgspec.structs.replace(message, seq=0, ts_publish=0), message.ts_event)
    return message


def test_shadow_promote_and_drop(tmp_path: Path) -> None:
    best, models = tmp_path / "best_models", tmp_path / "models"
    make_artifact(best, "cand", promotion=Promotion(verdict="rejected", reason="weak"))
    sent: list[Any] = []
    record = load_shadow("cand", source_root=best, model_dir=models, key=KEY, publish=sent.append)
    assert record["version"] == "cand" and record["verdict"] == "rejected"  # no gate to watch
    assert load_artifact(models / "cand", expected_sha256=record["sha256"]).version == "cand"
    (message,) = sent
    assert (verified(message).action, message.version) == ("shadow", "cand")
    assert registry.current_version(models) is None  # nothing pushed: live is unchanged
    with pytest.raises(PushError, match="verdict"):  # promotion passes the push gate
        promote_shadow(model_dir=models, key=KEY, publish=sent.append)
    result = promote_shadow(model_dir=models, key=KEY, publish=sent.append, force=True)
    assert result["promoted_shadow"] == "cand" and result["forced"]
    assert verified(sent[-1]).action == "push" and registry.current_version(models) == "cand"
    assert not (models / "shadow.json").exists()
    with pytest.raises(PushError, match="no shadow"):
        promote_shadow(model_dir=models, key=KEY, publish=sent.append)


def test_drop_announces_and_a_corrupted_candidate_is_refused(tmp_path: Path) -> None:
    best, models = tmp_path / "best_models", tmp_path / "models"
    make_artifact(best, "cand")
    sent: list[Any] = []
    load_shadow("cand", source_root=best, model_dir=models, key=KEY, publish=sent.append)
    assert drop_shadow(model_dir=models, key=KEY, publish=sent.append)["dropped"] == "cand"
    assert verified(sent[-1]).action == "drop_shadow"
    assert not (models / "shadow.json").exists()
    corrupt(make_artifact(best, "bad"))
    with pytest.raises(PushError, match="sha256"):
        load_shadow("bad", source_root=best, model_dir=models, key=KEY, publish=sent.append)
    assert not (models / "bad").exists() and not (models / "shadow.json").exists()
