"""A policy over the regime block, trained with the env's risk rules: the export records the
fitted HMM numbers in the manifest's feature config, the artifact loads against a pipeline built
from that config (and is refused by the default one), and the live features computed online from
the manifest's numbers equal the training env's observations row for row.

An untrained RLModule stands in for a trained one (as in test_trainer_export)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from trainer.config import TrainConfig

from shared.data import load_bars
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.manifest import ArtifactError, read_manifest
from tests.untrained_export import export_untrained, load_slices

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit


def test_regime_model_manifest_carries_the_fitted_numbers(tmp_path: Path) -> None:
    cfg = TrainConfig(
        hiddens=[16, 16],
        features={"regime": {"n_states": 2, "use_vol": True}},
        env_risk_rules=True,
    )
    train, slices = load_slices(cfg)
    assert train.env_config.risk is not None  # trained under execution's limits
    assert slices["validation"].env_config.risk == train.env_config.risk  # scored under them too
    result = export_untrained(cfg, tmp_path, "regime-test", (train, slices))
    folder = result.artifact
    manifest = read_manifest(folder)
    recorded = manifest.feature_config
    assert recorded == FeatureConfig.from_dict(cfg.features)
    assert recorded.regime is not None and recorded.regime.params is not None
    assert train.market.pipeline.config == recorded  # the env trained with these numbers

    with pytest.raises(ArtifactError):
        load_artifact(folder, FeaturePipeline())  # the default pipeline has no regime block
    assert load_artifact(folder).pipeline.config == recorded  # no pipeline given: its own
    pipeline = FeaturePipeline(recorded)
    model = load_artifact(folder, pipeline)

    # live: the manifest's numbers, fed bar by bar, give the training env's observations
    bars = load_bars(cfg.source, cfg.symbol)
    end = len(train.market.index)
    online = pipeline.online()
    rows = [online.update_many(bars.iloc[t : t + 1]) for t in range(end)]
    first = train.market.first
    for t in (first, first + 250, end - 1):
        row = rows[t]
        assert row is not None
        obs_live = model.normaliser.transform(row)
        np.testing.assert_allclose(obs_live, train.market.features[t], rtol=0, atol=1e-9)
        assert np.isfinite(model.decide(np.append(obs_live, 0.0).astype(np.float32)))
