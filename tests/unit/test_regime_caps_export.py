"""The trainer's ``regime_caps`` option reaches the exported manifest, and the exported artifact
(the one export evaluates on its folds and hold-out, and inference serves) decides with the
regime-gated cap. An untrained RLModule stands in for a trained one (as in test_regime_export)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from trainer.config import TrainConfig

from shared.manifest import read_manifest
from shared.regime_gate import cap_for
from tests.regime_artifacts import open_own
from tests.untrained_export import export_untrained, load_slices

pytestmark = pytest.mark.unit

CAPS = [0.5, 0.25]  # every +-1 of the policy is clipped


def test_regime_caps_are_exported_and_gate_the_artifacts_decisions(tmp_path: Path) -> None:
    cfg = TrainConfig(hiddens=[16, 16], features={"regime": {"n_states": 2}}, regime_caps=CAPS)
    train, slices = load_slices(cfg)
    result = export_untrained(cfg, tmp_path, "regime-caps-test", (train, slices))
    manifest = read_manifest(result.artifact)
    assert manifest.regime_caps == CAPS
    assert manifest.validation_metrics  # export evaluated the gated artifact on its folds
    model = open_own(result.artifact)
    assert model.gate is not None and model.gate.caps == CAPS
    # the env's training observations (position 0): |target| within the cap of the most
    # probable state, and the gate acted on some (the ungated policy says +-1)
    market = train.market
    feats = market.features[market.first :]
    obs = np.hstack([feats, np.zeros((len(feats), 1))]).astype(np.float32)
    targets = model.decide_batch(obs).tolist()
    caps = [cap_for(model.gate.probabilities(o), CAPS) for o in obs]
    assert all(abs(t) <= c for t, c in zip(targets, caps, strict=True))
    ungated = [model._target(row) for row in model.outputs(obs).tolist()]
    assert sum(g != u for g, u in zip(targets, ungated, strict=True)) > 0
