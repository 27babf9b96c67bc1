"""The observation normaliser: a per-feature z-score fitted on the training slice only, clipped
to +-clip (``Normaliser``); a model manifest records it (``to_dict`` / ``from_dict``) and inference
applies it to every feature row before the policy sees it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class Normaliser:
    """Per-feature z-score fitted on the TRAINING slice only, then clipped to +-clip."""

    def __init__(
        self,
        mean: Sequence[float] | np.ndarray,
        std: Sequence[float] | np.ndarray,
        names: Sequence[str] = (),
        clip: float = 5.0,
        fitted_rows: int = 0,
    ) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError("mean and std must be 1-d and of equal length")
        if not np.all(np.isfinite(self.mean)) or not np.all(self.std > 0):
            raise ValueError("mean must be finite and std > 0")
        if names and len(names) != len(self.mean):
            raise ValueError(f"{len(names)} names for {len(self.mean)} features")
        self.names = list(names)
        self.clip = float(clip)
        self.fitted_rows = int(fitted_rows)
        self._inv = 1.0 / self.std

    @classmethod
    def fit(cls, features: np.ndarray, names: Sequence[str] = (), clip: float = 5.0) -> Normaliser:
        """Fit on the rows without NaN (the warm-up rows are skipped)."""
        x = np.asarray(features, dtype=np.float64)
        rows = x[~np.isnan(x).any(axis=1)]
        if len(rows) < 2:
            raise ValueError(f"need >= 2 complete feature rows to fit, got {len(rows)}")
        mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean, std, names, clip, fitted_rows=len(rows))

    def transform(self, features: np.ndarray) -> np.ndarray:
        """(x - mean) / std clipped to +-clip; NaN stays NaN. Works on a row or an (n, k) block."""
        z = np.subtract(features, self.mean, dtype=np.float64)
        z *= self._inv
        np.minimum(z, self.clip, out=z)
        np.maximum(z, -self.clip, out=z)
        return z

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.std + self.mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "zscore_clip",
            "names": list(self.names),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "clip": self.clip,
            "fitted_rows": self.fitted_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normaliser:
        if data.get("kind", "zscore_clip") != "zscore_clip":
            raise ValueError(f"unknown normaliser kind {data.get('kind')!r}")
        return cls(
            data["mean"],
            data["std"],
            data.get("names", ()),
            data.get("clip", 5.0),
            data.get("fitted_rows", 0),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Normaliser) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]
