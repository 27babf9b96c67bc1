"""An exported model as a backtest policy: the ``decide(t, position)`` callable that
``shared.backtest.run_policy`` drives, built from the model's feature pipeline and normaliser the
way the env and the inference service build observations (moved out of ``shared.backtest``: it
changes with the observation and the model interface, not with the accounting).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = ["ModelPolicy"]


class ModelPolicy:
    """A model as a ``decide(t, position)`` callable over a bar frame.

    ``model`` is a ``shared.loaded_model.LoadedModel`` or any object with ``decide(obs) -> target``
    and ``normaliser`` (a fitted ``shared.normaliser.Normaliser``), plus either ``manifest`` (its
    ``feature_config`` is used) or ``feature_config`` - e.g. a trainer's torch policy wrapped
    before export. Features are computed once over all ``bars`` (they only look back) and
    normalised; each call is the observation of bar ``t`` with the current position -
    ``build_observation`` exactly as the env and the inference service build it - and one
    ``model.decide``. Bars still in the feature warm-up decide flat.
    """

    def __init__(self, model: Any, bars: pd.DataFrame, pipeline: Any | None = None) -> None:
        from shared.feature_config import FeatureConfig
        from shared.features import FeaturePipeline
        from shared.observation import build_observations

        self.model = model
        if pipeline is None:
            manifest = getattr(model, "manifest", None)
            config = (
                manifest.feature_config
                if manifest is not None
                else getattr(model, "feature_config", None) or FeatureConfig()
            )
            pipeline = FeaturePipeline(config)
        self.pipeline = pipeline
        feats = np.asarray(model.normaliser.transform(self.pipeline.batch(bars)), np.float64)
        self.features = feats
        self.valid: NDArray[np.bool_] = np.asarray(np.isfinite(feats).all(axis=1), dtype=bool)
        self.obs = np.zeros((len(bars), feats.shape[1] + 1), dtype=np.float32)
        rows = np.flatnonzero(self.valid)
        self.obs[rows] = build_observations(feats[rows], np.zeros(len(rows)))
        self.calls = 0
        self.seconds = 0.0

    def observation(self, t: int, position: float) -> NDArray[np.float32]:
        obs = self.obs[t].copy()
        obs[-1] = position
        return obs

    def __call__(self, t: int, position: float) -> float:
        if not self.valid[t]:
            return 0.0
        t0 = time.perf_counter()
        target = float(self.model.decide(self.observation(t, position)))
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return target
