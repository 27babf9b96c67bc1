"""shared.regime_gate: the regime-gated position cap inside ``LoadedModel``'s decision. The clip
against an independent oracle (hypothesis), the gated model against the ungated one plus the
oracle on the RAW (un-normalised) HMM probabilities of real AAPL bars, batch == one by one, the
refusals at load (no regime block, wrong count, out of range, a normaliser that clips a
probability column, a stateful policy), the trainer option, and the future-perturbation test
over the gated targets."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from trainer.analysis_lookahead import lookahead_analysis
from trainer.config import TrainConfig, trainer_settings

from shared.config import ConfigError
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.manifest import ManifestMismatch
from shared.observation import build_observation
from shared.regime import regime_names
from shared.regime_gate import cap_for, gate_target
from tests.model_artifacts import make_artifact
from tests.regime_artifacts import (
    frame,
    normaliser,
    open_own,
    regime_artifact,
    regime_config,
)

pytestmark = pytest.mark.unit

CAPS = (0.5, 0.25)


def oracle(target: float, probabilities: list[float], caps: list[float]) -> float:
    """Sort the states by (probability desc, cap asc): the first one's cap bounds |target|."""
    first = sorted(range(len(caps)), key=lambda k: (-probabilities[k], caps[k]))[0]
    cap = caps[first]
    return float(np.clip(target, -cap, cap))


unit = st.floats(0.0, 1.0, allow_nan=False)


@given(
    st.integers(2, 3).flatmap(
        lambda k: st.tuples(
            st.lists(st.sampled_from([0.0, 0.2, 0.5, 1.0]) | unit, min_size=k, max_size=k),
            st.lists(unit, min_size=k, max_size=k),
        )
    ),
    st.floats(-1.0, 1.0, allow_nan=False),
)
def test_gate_clips_to_the_cap_of_the_most_probable_state(
    probs_caps: tuple[list[float], list[float]], target: float
) -> None:
    probabilities, caps = probs_caps
    got = gate_target(target, probabilities, caps)
    assert got == oracle(target, probabilities, caps)
    assert abs(got) <= max(caps)


def test_a_tie_takes_the_smaller_cap() -> None:
    assert cap_for([0.5, 0.5], [1.0, 0.25]) == 0.25
    assert cap_for([0.5, 0.5], [0.25, 1.0]) == 0.25
    assert cap_for([0.2, 0.4, 0.4], [0.0, 0.9, 0.6]) == 0.6


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "plain": regime_artifact(root, "r-plain"),
        "gated": regime_artifact(root, "r-gated", caps=CAPS),
    }


def test_gated_decision_is_the_plain_decision_clipped_by_the_raw_probabilities(
    models: dict[str, Path],
) -> None:
    plain, gated = open_own(models["plain"]), open_own(models["gated"])
    config = regime_config()
    pipe = FeaturePipeline(config)
    bars = frame().iloc[1000:1600]
    rows = pipe.batch(bars)
    hmm = [pipe.index(n) for n in regime_names(config.regime)[:2]]  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    clipped = compared = 0
    obs_batch = []
    for row in rows:
        if not np.isfinite(row).all():
            continue
        obs = build_observation(plain.normalise(row), float(rng.choice([-1.0, 0.0, 1.0])))
        want = oracle(plain.decide(obs), row[hmm].tolist(), list(CAPS))
        assert gated.decide(obs) == want
        clipped += want != plain.decide(obs)
        compared += 1
        obs_batch.append(obs)
    assert compared > 400 and clipped > 50  # the gate acted, in both states
    batch = gated.decide_batch(np.stack(obs_batch))
    assert batch.tolist() == [gated.decide(o) for o in obs_batch]
    assert {abs(t) for t in batch.tolist()} <= {0.0, *CAPS}


def test_caps_that_cannot_gate_are_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ManifestMismatch, match=r"regime_caps.*regime feature block"):
        open_own(make_artifact(tmp_path, "no-regime", regime_caps=[0.5, 0.5]))
    with pytest.raises(ManifestMismatch, match="one per state"):
        open_own(regime_artifact(tmp_path, "three-caps", caps=(1.0, 0.5, 0.2)))
    with pytest.raises(ManifestMismatch, match=r"in \[0, 1\]"):
        open_own(regime_artifact(tmp_path, "too-big", caps=(1.5, 0.5)))
    norm = normaliser(regime_config()).to_dict()
    j = FeaturePipeline(regime_config()).index("hmm_p1_2")
    norm["mean"][j], norm["std"][j] = 0.01, 0.1  # a rare state: p=1 is 9.9 std, clipped at 5
    with pytest.raises(ManifestMismatch, match="clips hmm_p1_2"):
        open_own(regime_artifact(tmp_path, "clipping", caps=CAPS, normaliser=norm))


def test_trainer_option_is_validated_naming_the_key() -> None:
    regime = {"regime": {"n_states": 2}}
    with pytest.raises(ValueError, match=r"regime_caps.*regime feature block"):
        TrainConfig.profile("quick", regime_caps=[1.0, 0.5])
    with pytest.raises(ValueError, match=r"regime_caps.*one cap per HMM state"):
        TrainConfig(features=regime, regime_caps=[1.0])  # fits nothing: fails before the HMM
    with pytest.raises(ConfigError, match="REGIME_CAPS"):
        trainer_settings({"TRAINER_REGIME_CAPS": "1,1.5"})
    assert trainer_settings({"TRAINER_REGIME_CAPS": "1, 0.5"}).regime_caps == [1.0, 0.5]


def test_the_env_default_reaches_the_cli_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from trainer.config import cli_data_overrides

    args = argparse.Namespace(symbols=None, source=None)
    assert "regime_caps" not in cli_data_overrides(args, {})
    monkeypatch.setenv("TRAINER_REGIME_CAPS", "1,0.5")
    assert cli_data_overrides(args, {})["regime_caps"] == [1.0, 0.5]
    assert cli_data_overrides(args, {"regime_caps": [0.2, 0.1]})["regime_caps"] == [0.2, 0.1]


def test_gated_targets_pass_the_future_perturbation_test(models: dict[str, Path]) -> None:
    gated = open_own(models["gated"])
    assert gated.pipeline is not None
    bars = frame().iloc[-500:]
    report = lookahead_analysis(bars, gated.pipeline, gated, points=8, seed=5)
    assert report.leaks == [] and report.decision_diff == 0.0
    # not vacuous: the gate decides some of those targets
    plain = open_own(models["plain"])
    report_plain = lookahead_analysis(bars, plain.pipeline, plain, points=1, seed=5)  # type: ignore[arg-type]
    assert report_plain.leaks == []
    from trainer.analysis_common import policy_path

    gated_path = policy_path(gated, gated.pipeline, bars, len(bars) - 2)
    plain_path = policy_path(plain, plain.pipeline, bars, len(bars) - 2)  # type: ignore[arg-type]
    assert not np.array_equal(gated_path, plain_path)
    assert set(np.abs(gated_path).tolist()) <= {0.0, *CAPS}


def test_manifest_round_trip_keeps_the_caps(models: dict[str, Path]) -> None:
    gated = open_own(models["gated"])
    assert gated.manifest.regime_caps == list(CAPS) and gated.gate is not None
    assert open_own(models["plain"]).gate is None
    assert msgspec.json.decode((models["gated"] / "manifest.json").read_bytes())[
        "regime_caps"
    ] == list(CAPS)
    assert isinstance(regime_config(), FeatureConfig)
