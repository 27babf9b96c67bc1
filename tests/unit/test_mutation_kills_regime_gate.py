"""Kill surviving mutants of shared/regime_gate.py (issue 17): the regime-gated position cap,
every expected number worked out here by hand.

The feature config carries an unfitted three-state regime block: the gate and its checks read
only the feature names (``... hmm_p0_3, hmm_p1_3, hmm_p2_3, ac1_60``), never the HMM itself.
The normaliser here gives every HMM probability mean 0.5 and std 0.125 with clip 4, so a
probability p is the z-score 8p - 4 exactly, and p = 0 and p = 1 sit exactly on -clip and +clip
(allowed: the normaliser clips only beyond them).
"""

from __future__ import annotations

import numpy as np
import pytest

from shared.feature_config import FeatureConfig, feature_names
from shared.normaliser import Normaliser
from shared.regime import RegimeConfig
from shared.regime_gate import RegimeGate, cap_for, check_caps, gate_target

pytestmark = pytest.mark.unit

CONFIG = FeatureConfig(regime=RegimeConfig(n_states=3))
NAMES = feature_names(CONFIG)
HMM = [NAMES.index(f"hmm_p{k}_3") for k in range(3)]
AC1 = NAMES.index("ac1_60")


def norm(
    hmm_mean: float = 0.5, hmm_std: float = 0.125, clip: float = 4.0, column: int | None = None
) -> Normaliser:
    """Mean 0 / std 1 everywhere but the HMM columns (or only ``column`` when given)."""
    mean, std = np.zeros(len(NAMES)), np.ones(len(NAMES))
    for j in HMM if column is None else [column]:
        mean[j], std[j] = hmm_mean, hmm_std
    return Normaliser(mean, std, NAMES, clip=clip)


def obs_for(p: list[float]) -> np.ndarray:
    """An observation (features + position) whose HMM z-scores carry the probabilities ``p``."""
    obs = np.zeros(len(NAMES) + 1, dtype=np.float32)
    obs[HMM] = [8.0 * q - 4.0 for q in p]
    return obs


# ----------------------------------------------------------------------------- cap_for
def test_cap_for_refuses_probabilities_and_caps_of_different_lengths() -> None:
    # a truncating zip would answer 1.0 (the only pair): a wrong cap instead of an error
    with pytest.raises(ValueError):
        cap_for([0.5, 0.5], [1.0])
    with pytest.raises(ValueError):
        cap_for([0.9], [0.3, 0.1])


def test_gate_target_clips_both_sides_to_the_most_probable_states_cap() -> None:
    assert gate_target(0.8, [0.1, 0.7, 0.2], [1.0, 0.3, 0.0]) == 0.3
    assert gate_target(-0.8, [0.1, 0.7, 0.2], [1.0, 0.3, 0.0]) == -0.3
    assert gate_target(0.2, [0.1, 0.7, 0.2], [1.0, 0.3, 0.0]) == 0.2
    assert gate_target(0.9, [0.1, 0.2, 0.7], [1.0, 0.3, 0.0]) == 0.0


# ----------------------------------------------------------------------------- check_caps
def test_no_caps_need_nothing() -> None:
    assert check_caps([], FeatureConfig()) == ""
    assert check_caps((), CONFIG, norm(hmm_mean=0.01, hmm_std=0.001)) == ""


def test_check_caps_names_what_is_missing_or_wrong() -> None:
    assert check_caps([0.5, 0.5], FeatureConfig()) == (
        "regime_caps needs the regime feature block (feature_config.regime)"
    )
    assert check_caps([0.5, 0.5], CONFIG) == (
        "regime_caps has 2 caps for 3 HMM states (one per state)"
    )
    assert check_caps([1.5, 0.5, 0.0], CONFIG) == (
        "regime_caps [1.5, 0.5, 0.0]: each cap must be in [0, 1]"
    )
    for bad in (-0.01, float("nan"), float("inf")):
        assert check_caps([0.5, bad, 0.5], CONFIG).endswith(": each cap must be in [0, 1]")


def test_caps_of_exactly_zero_and_one_are_allowed() -> None:
    assert check_caps([0.0, 1.0, 0.5], CONFIG) == ""
    assert check_caps([0.0, 1.0, 0.5], CONFIG, norm()) == ""


def test_a_normaliser_whose_clip_lies_exactly_at_p_0_and_p_1_clips_nothing() -> None:
    # (0 - 0.5) / 0.125 = -4 = -clip and (1 - 0.5) / 0.125 = 4 = clip: both on the edge
    assert check_caps([1.0, 0.5, 0.2], CONFIG, norm()) == ""


def test_a_normaliser_that_clips_p_0_or_p_1_is_refused_with_the_column() -> None:
    # mean 0.9, std 0.2: p = 0 is -4.5 std (clipped at -4), p = 1 is +0.5 std
    low = norm(hmm_mean=0.9, hmm_std=0.2, column=HMM[1])
    assert check_caps([1.0, 0.5, 0.2], CONFIG, low) == (
        "regime_caps: the normaliser clips hmm_p1_3 (mean=0.9 std=0.2 clip=4), so the "
        "observation cannot tell which state is most probable"
    )
    # mean 0.1, std 0.2: p = 0 is -0.5 std, p = 1 is +4.5 std (clipped at 4)
    high = norm(hmm_mean=0.1, hmm_std=0.2, column=HMM[2])
    assert "clips hmm_p2_3 (mean=0.1 std=0.2 clip=4)" in check_caps([1.0, 0.5, 0.2], CONFIG, high)
    # the autocorrelation column is not a probability: clipping it does not matter
    ac1 = norm(hmm_mean=0.9, hmm_std=0.01, column=AC1)
    assert check_caps([1.0, 0.5, 0.2], CONFIG, ac1) == ""


# ----------------------------------------------------------------------------- RegimeGate
def test_the_gate_refuses_caps_its_checks_refuse_with_the_same_reason() -> None:
    with pytest.raises(ValueError) as err:
        RegimeGate([0.5, 0.5], CONFIG, norm())
    assert str(err.value) == "regime_caps has 2 caps for 3 HMM states (one per state)"
    with pytest.raises(ValueError) as err:
        RegimeGate([1.0, 0.5, 0.2], CONFIG, norm(hmm_mean=0.9, hmm_std=0.2, column=HMM[0]))
    assert str(err.value).startswith("regime_caps: the normaliser clips hmm_p0_3 (mean=0.9")


def test_the_gate_reads_the_probabilities_back_from_z_scores_and_clips() -> None:
    gate = RegimeGate([1.0, 0.5, 0.2], CONFIG, norm())
    assert gate.caps == [1.0, 0.5, 0.2] and gate.columns == HMM
    obs = obs_for([0.25, 0.5, 0.25])
    assert gate.probabilities(obs) == [0.25, 0.5, 0.25]
    assert gate.apply(0.9, obs) == 0.5
    assert gate.apply(-0.9, obs_for([0.125, 0.125, 0.75])) == -0.2
    assert gate.apply(0.9, obs_for([0.75, 0.125, 0.125])) == 0.9
    assert gate.apply(0.9, obs_for([0.5, 0.0, 0.5])) == 0.2  # a tie: the smaller cap
    rows = np.stack([obs_for([0.25, 0.5, 0.25]), obs_for([0.125, 0.125, 0.75])])
    assert gate.apply_rows([0.9, -0.9], rows) == [0.5, -0.2]
    assert gate.apply_rows([0.9, -0.9], rows.reshape(-1)) == [0.5, -0.2]  # a flat batch
