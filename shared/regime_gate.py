"""Regime-gated position cap (issue 15 item 3): one cap per HMM state on the policy's target.

A manifest may carry ``regime_caps`` (one cap in [0, 1] per state of its feature config's regime
block, state order as ``shared.regime`` defines it: state 0 is the calmest). The model's decision
(``shared.loaded_model.LoadedModel``) clips the policy's target to ``[-cap[k], +cap[k]]`` where
``k`` is the most probable state in the observation's HMM probabilities (``hmm_p<k>_<K>``). Every
caller (evaluation, backtest, the trainer's gate, inference, the shadow) decides through
``LoadedModel``, so they all apply this one rule from this one code.

The observation holds the NORMALISED features (z-scores clipped to +-clip, float32): the
probabilities are read back as ``z * std + mean``. That is exact (to float32 rounding) only where
the normaliser never clips a probability in [0, 1], so an artifact with caps whose normaliser
could clip an ``hmm_p`` column is refused at load (``check_caps``), never gated on a clipped value.

Ties (two states equally probable in the observation): the SMALLEST of their caps applies (the
conservative choice: a tie never loosens the cap).

No look-ahead: the probabilities at bar t are filtered with bars <= t (``shared.regime``), and the
gate reads nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from shared.feature_config import FeatureConfig, feature_names
from shared.normaliser import Normaliser
from shared.regime import regime_names

__all__ = ["RegimeGate", "cap_for", "check_caps", "gate_target"]


def cap_for(probabilities: Sequence[float], caps: Sequence[float]) -> float:
    """The cap of the most probable state; ties take the smallest cap among the tied states."""
    best = max(probabilities)
    return min(c for p, c in zip(probabilities, caps, strict=True) if p == best)


def gate_target(target: float, probabilities: Sequence[float], caps: Sequence[float]) -> float:
    """``target`` clipped to +-cap of the most probable state."""
    cap = cap_for(probabilities, caps)
    return min(cap, max(-cap, target))


def check_caps(
    caps: Sequence[float], config: FeatureConfig, normaliser: Normaliser | None = None
) -> str:
    """Why ``caps`` cannot gate a model with this feature config and normaliser ("" when it
    can)."""
    if not caps:
        return ""
    if config.regime is None:
        return "regime_caps needs the regime feature block (feature_config.regime)"
    k = config.regime.n_states
    if len(caps) != k:
        return f"regime_caps has {len(caps)} caps for {k} HMM states (one per state)"
    if any(not (math.isfinite(c) and 0.0 <= c <= 1.0) for c in caps):
        return f"regime_caps {list(caps)}: each cap must be in [0, 1]"
    if normaliser is not None:
        names = feature_names(config)
        for name in regime_names(config.regime)[:k]:
            j = names.index(name)
            mean, std, clip = float(normaliser.mean[j]), float(normaliser.std[j]), normaliser.clip
            if (0.0 - mean) / std < -clip or (1.0 - mean) / std > clip:
                return (
                    f"regime_caps: the normaliser clips {name} (mean={mean:.4g} std={std:.4g} "
                    f"clip={clip:g}), so the observation cannot tell which state is most probable"
                )
    return ""


class RegimeGate:
    """The cap rule bound to one model: where its HMM columns sit in the observation and how to
    read them back from z-scores."""

    def __init__(self, caps: Sequence[float], config: FeatureConfig, normaliser: Normaliser):
        reason = check_caps(caps, config, normaliser)
        if reason:
            raise ValueError(reason)
        assert config.regime is not None
        names = feature_names(config)
        self.caps = [float(c) for c in caps]
        self.columns = [names.index(n) for n in regime_names(config.regime)[: len(caps)]]
        self._mean = normaliser.mean[self.columns]
        self._std = normaliser.std[self.columns]

    def probabilities(self, obs: np.ndarray) -> list[float]:
        """The HMM probabilities one observation (1-d) carries, de-normalised."""
        z = np.asarray(obs, dtype=np.float64)[self.columns]
        return (z * self._std + self._mean).tolist()

    def apply(self, target: float, obs: np.ndarray) -> float:
        return gate_target(target, self.probabilities(obs), self.caps)

    def apply_rows(self, targets: Sequence[float], obs: np.ndarray) -> list[float]:
        """Row i of a batch (n, size) gates ``targets[i]``."""
        x = np.asarray(obs, dtype=np.float64).reshape(len(targets), -1)
        probs = (x[:, self.columns] * self._std + self._mean).tolist()
        return [gate_target(t, p, self.caps) for t, p in zip(targets, probs, strict=True)]
