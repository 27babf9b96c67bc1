"""Inference serves models whose features differ from the default (``inference.pipelines``): a
regime-feature model (with a regime-gated cap) served from start equals its backtest; a swap from
the default features to it and a rollback re-warm every symbol from the snapshot and then equal
the backtest of the serving model from that snapshot, never deciding on a cold pipeline; a
tampered feature config, a wrong fingerprint or another feature code version is refused and the
old model keeps serving; a shadow with its own features equals its backtest; a bar that meets
another pipeline's features is refused, counted and re-warmed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from shared.features import FeaturePipeline
from shared.manifest import read_manifest
from shared.model_store import resolve_artifact
from shared.runtime import BusConnection
from tests.inference_harness import InferenceHarness, baseline_root, inference_bus, packaged_series
from tests.model_artifacts import make_artifact
from tests.regime_artifacts import backtest_targets, frame, regime_artifact, regime_config

pytestmark = pytest.mark.unit

SNAPSHOT = 400
CAPS = (0.5, 0.25)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    with inference_bus(tmp_path) as connection:
        yield connection


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = baseline_root(tmp_path)
    regime_artifact(root, "regime-a", caps=CAPS)
    return root


def harness(root: Path, bus: BusConnection, version: str = "baseline") -> InferenceHarness:
    return InferenceHarness(
        root, bus, packaged_series(), model_version=version, snapshot_bars=SNAPSHOT
    )


def live(h: InferenceHarness, start: int, n: int) -> None:
    """Bars [start, start + n) arrive live; marketdata stores them (its snapshot moves on)."""
    for i in range(start, start + n):
        h.service.handle_batch([h.bar("AAPL", i)])
        h.end["AAPL"] = i + 1


def want(root: Path, version: str, start: int, stop: int) -> list[float]:
    """The backtest of ``version`` over bars [start - SNAPSHOT, stop): its targets of [start,
    stop) (the replayed snapshot is where the features and position start)."""
    folder = resolve_artifact(root, version)
    return backtest_targets(folder, frame().iloc[start - SNAPSHOT : stop])[SNAPSHOT:]


async def test_a_regime_model_is_served_with_its_own_pipeline_and_equals_its_backtest(
    root: Path, bus: BusConnection
) -> None:
    h = harness(root, bus, "regime-a")
    manifest = read_manifest(root / "regime-a")
    assert h.service.pipeline.fingerprint == manifest.pipeline_fingerprint
    assert h.service.pipeline.fingerprint != FeaturePipeline().fingerprint
    await h.service.warm_known_symbols()
    first = h.end["AAPL"]
    live(h, first, 40)
    targets = [s.target_position for s in h.signals("AAPL")]
    assert len(targets) == 40 and {s.model_version for s in h.signals()} == {"regime-a"}
    assert targets == want(root, "regime-a", first, first + 40)
    assert {abs(t) for t in targets} <= {0.0, *CAPS} and len(set(targets)) > 1  # gated
    assert h.service.status_detail()["pipeline_fingerprint"] == manifest.pipeline_fingerprint


async def test_swap_to_a_regime_model_and_back_rewarms_and_never_decides_cold(
    root: Path, bus: BusConnection
) -> None:
    h = harness(root, bus)
    default_fp = h.service.pipeline.fingerprint
    await h.service.warm_known_symbols()
    start = h.end["AAPL"]
    live(h, start, 10)
    assert h.service.swap("regime-a")["accepted"]
    assert h.service.pipeline.fingerprint != default_fp
    state = h.service.states["AAPL"]
    assert state.warming and not state.warm  # re-warming from the snapshot
    swap_at = h.end["AAPL"]
    h.service.handle_batch([h.bar("AAPL", swap_at)])  # arrives while warming: buffered
    assert len(h.signals()) == 10
    await h.settle()
    h.end["AAPL"] = swap_at + 1
    live(h, swap_at + 1, 19)
    after = h.signals()[10:]
    assert [s.model_version for s in after] == ["regime-a"] * 20
    assert [s.target_position for s in after] == want(root, "regime-a", swap_at, swap_at + 20)

    back_at = h.end["AAPL"]
    assert h.service.rollback()["accepted"]
    assert h.service.pipeline.fingerprint == default_fp
    await h.settle()
    live(h, back_at, 15)
    again = h.signals()[30:]
    assert {s.model_version for s in again} == {h.service.model.version} != {"regime-a"}
    baseline = str(h.service.model.path.relative_to(root))
    assert [s.target_position for s in again] == want(root, baseline, back_at, back_at + 15)
    assert h.service.counters.cold_refusals == 0 and h.service.handler_errors == 0
    assert [s.bar_seq for s in h.signals()] == [
        h.bar("AAPL", i).seq for i in range(start, back_at + 15)
    ]  # every bar signalled once, in order, across both swaps


async def test_tampered_feature_manifests_are_refused_and_the_old_model_serves(
    root: Path, bus: BusConnection
) -> None:
    h = harness(root, bus)
    await h.service.warm_known_symbols()
    good = read_manifest(root / "regime-a")
    other = msgspec.structs.replace(good.feature_config, rsi_window=10)
    cases = {
        "tampered-config": ({"feature_config": other}, "pipeline_fingerprint"),
        "wrong-fingerprint": ({"pipeline_fingerprint": "0" * 64}, "pipeline_fingerprint"),
        "old-code": ({"feature_code_version": "0"}, "feature_code_version"),
    }
    serving = h.service.model.version
    for version, (changes, field) in cases.items():
        regime_artifact(root, version, caps=CAPS, **changes)
        result = h.service.swap(version)
        assert not result["accepted"] and field in result["reason"], result
        assert h.statuses()[-1].reason == result["reason"]
    assert h.service.model.version == serving and h.service.counters.models_rejected == 3
    assert h.service.pipeline.fingerprint == FeaturePipeline().fingerprint
    start = h.end["AAPL"]
    live(h, start, 5)
    assert [s.model_version for s in h.signals()] == [serving] * 5


async def test_a_shadow_with_its_own_features_equals_its_backtest(
    root: Path, bus: BusConnection
) -> None:
    h = harness(root, bus)
    await h.service.warm_known_symbols()
    live(h, h.end["AAPL"], 5)
    assert h.service.load_shadow("regime-a")["accepted"]
    loaded_at = h.end["AAPL"]
    await h.settle()  # the shadow replays the snapshot into its own features
    live(h, loaded_at, 25)
    shadows = h.shadows("AAPL")
    assert len(shadows) == 25 and {s.model_version for s in shadows} == {"regime-a"}
    assert [s.target_position for s in shadows] == want(root, "regime-a", loaded_at, loaded_at + 25)
    assert h.service.pipeline.fingerprint == FeaturePipeline().fingerprint  # live unchanged
    assert len(h.signals()) == 30 and h.service.counters.shadow_errors == 0


async def test_a_bar_meeting_another_pipelines_features_is_refused_and_rewarmed(
    root: Path, bus: BusConnection
) -> None:
    h = harness(root, bus)
    await h.service.warm_known_symbols()
    start = h.end["AAPL"]
    live(h, start, 3)
    # a race the swap path prevents: the symbol's features belong to another pipeline
    h.service.states["AAPL"].features = FeaturePipeline(regime_config()).online()
    h.service.handle_batch([h.bar("AAPL", start + 3)])
    assert h.service.counters.cold_refusals == 1 and len(h.signals()) == 3  # not decided
    assert not h.service.states["AAPL"].warm
    await h.settle()  # re-warmed on the live pipeline; the refused bar is decided then
    h.end["AAPL"] = start + 4
    live(h, start + 4, 3)
    assert [s.bar_seq for s in h.signals()] == [
        h.bar("AAPL", i).seq for i in range(start, start + 7)
    ]
    assert h.service.states["AAPL"].features.config is h.service.pipeline.config


async def test_promoting_a_shadow_with_its_own_features_rewarms_the_live_symbols(
    root: Path, bus: BusConnection
) -> None:
    h = harness(root, bus)
    await h.service.warm_known_symbols()
    live(h, h.end["AAPL"], 3)
    assert h.service.load_shadow("regime-a")["accepted"]
    await h.settle()
    live(h, h.end["AAPL"], 3)
    promote_at = h.end["AAPL"]
    assert h.service.promote_shadow()["accepted"]
    assert h.service.shadow is None and h.service.model.version == "regime-a"
    assert h.service.pipeline.fingerprint == read_manifest(root / "regime-a").pipeline_fingerprint
    await h.settle()
    live(h, promote_at, 12)
    after = h.signals()[6:]
    assert [s.model_version for s in after] == ["regime-a"] * 12
    assert [s.target_position for s in after] == want(root, "regime-a", promote_at, promote_at + 12)
    assert h.service.counters.cold_refusals == 0


async def test_a_recorded_shadow_with_its_own_features_warms_with_the_first_warm_up(
    root: Path, bus: BusConnection
) -> None:
    (root / "shadow.json").write_text('{"version": "regime-a"}')
    h = harness(root, bus)  # the shadow is loaded at start, before any symbol is known
    assert h.service.shadow is not None and h.service.shadow.version == "regime-a"
    await h.service.warm_known_symbols()  # the snapshot replay feeds the shadow's features too
    start = h.end["AAPL"]
    live(h, start, 20)
    shadows = [s.target_position for s in h.shadows("AAPL")]
    assert shadows == want(root, "regime-a", start, start + 20)


async def test_a_default_features_shadow_keeps_its_own_when_the_live_features_change(
    root: Path, bus: BusConnection
) -> None:
    from inference.pipelines import OwnPipelineShadow

    from tests.model_artifacts import constant_policy_onnx

    size = len(FeaturePipeline().names) + 1
    make_artifact(root, "default-long", onnx_bytes=constant_policy_onnx(size, 2))
    h = harness(root, bus)
    await h.service.warm_known_symbols()
    assert h.service.load_shadow("default-long")["accepted"]
    assert not isinstance(h.service.shadow, OwnPipelineShadow)  # shares the live features
    live(h, h.end["AAPL"], 3)
    assert h.service.swap("regime-a")["accepted"]
    assert isinstance(h.service.shadow, OwnPipelineShadow)  # the live features changed
    await h.settle()
    swap_at = h.end["AAPL"]
    live(h, swap_at, 5)
    assert [s.target_position for s in h.shadows("AAPL")] == [1.0] * 8
    assert [s.model_version for s in h.signals()[3:]] == ["regime-a"] * 5
    assert h.service.counters.shadow_errors == 0 and h.service.handler_errors == 0
