"""The observation vector: what the policy sees, identical in training (env) and serving.

``build_observation(normalised_features, position)`` = the normalised feature row followed by the
current position (a fraction of the allowed size in [-1, 1]), as float32. The gymnasium env and the
inference service both call it, so a model trained on one is served on the same vector layout.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

POSITION_NAME = "position"


class _HasNames(Protocol):
    names: list[str]


def observation_names(pipeline: _HasNames) -> list[str]:
    """Names of the observation's entries, in order: the pipeline's features, then position."""
    return [*pipeline.names, POSITION_NAME]


def observation_size(pipeline: _HasNames) -> int:
    return len(pipeline.names) + 1


def build_observation(normalised_features: np.ndarray, position: float) -> np.ndarray:
    """1-d float32 vector ``[*features, position]``; features must be a 1-d row without NaN."""
    row = (
        normalised_features
        if isinstance(normalised_features, np.ndarray)
        else np.asarray(normalised_features, dtype=np.float64)
    )
    if row.ndim != 1:
        raise ValueError(f"expected one feature row (1-d), got shape {row.shape}")
    out = np.empty(row.shape[0] + 1, dtype=np.float32)
    out[:-1] = row
    out[-1] = position
    if not math.isfinite(float(out.sum())):  # NaN/inf anywhere propagate into the sum
        raise ValueError("observation contains NaN or inf (features not warmed up?)")
    return out


def build_observations(normalised_features: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Batched twin of ``build_observation``: (n, k) features and (n,) positions -> (n, k+1)."""
    x = np.asarray(normalised_features, dtype=np.float64)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != pos.shape[0]:
        raise ValueError(f"shapes {x.shape} and {pos.shape} do not line up")
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = x
    out[:, -1] = pos
    return out
