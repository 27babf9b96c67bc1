"""What the look-ahead and the warm-up analyses share (``trainer.analysis_lookahead``,
``trainer.analysis_warmup``): the feature-set protocol, the per-column difference, the feature
block names and the model's sequential decisions over a bar frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pandas as pd

from shared.model_policy import ModelPolicy
from shared.rebalancing import clip_target

Progress = Callable[[str], None]


class FeatureSet(Protocol):
    """What the analyses need of a feature pipeline (``shared.features.FeaturePipeline`` is one)."""

    names: list[str]
    warmup_bars: int

    def batch(self, bars: pd.DataFrame) -> np.ndarray: ...


def feature_block(name: str) -> str:
    """``macd_hist_12_26_9`` -> ``macd_hist``: the name without its numeric parameters."""
    return re.sub(r"(_[0-9][0-9.]*)+$", "", name) or name


def max_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per column max |a - b|; NaN == NaN, NaN vs a number is inf."""
    both = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        d = np.where(both, 0.0, np.abs(a - b))
    d = np.where(np.isnan(d), np.inf, d)
    return d.max(axis=0) if len(d) else np.zeros(a.shape[1])


def policy_path(model: Any, features: FeatureSet, bars: pd.DataFrame, upto: int) -> np.ndarray:
    """Targets decided at the closes of bars 0..upto (flat while features warm up), each fed the
    position the previous one set, as ``run_policy`` does."""
    policy = ModelPolicy(model, bars, features)
    out = np.zeros(upto + 1)
    pos = 0.0
    for t in range(upto + 1):
        pos = clip_target(policy(t, pos), True)
        out[t] = pos
    return out
