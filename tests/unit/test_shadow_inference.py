"""Shadow mode in the inference service: load (same checks as a push), publish only on
``shadow.<SYM>`` as ``ShadowTarget`` (never a ``TargetPosition``), promote through the hot-swap
path (rollback still works), drop, follow signed ``model.updated``, survive a failing candidate,
and come back from ``shadow.json`` at start."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inference.service import InferenceService
from marketdata.replay import SymbolSeries

from shared.auth import sign
from shared.features import FeaturePipeline
from shared.manifest import ArtifactError, read_manifest
from shared.messages import Message, ModelUpdated, ShadowTarget, TargetPosition
from shared.observation import observation_names
from shared.runtime import BusConnection
from tests.inference_harness import (
    BASELINE,
    InferenceHarness,
    baseline_root,
    inference_bus,
    packaged_series,
)
from tests.model_artifacts import corrupt, make_artifact, position_flipping_onnx

pytestmark = pytest.mark.unit

SIZE = len(observation_names(FeaturePipeline()))


@pytest.fixture(scope="module")
def series() -> SymbolSeries:
    return packaged_series("AAPL")


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = baseline_root(tmp_path)
    make_artifact(root, "v-flip", onnx_bytes=position_flipping_onnx(SIZE))
    corrupt(make_artifact(root, "v-bad"))
    return root


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    with inference_bus(tmp_path) as connection:
        yield connection


async def started(
    model_root: Path, bus: BusConnection, series: SymbolSeries
) -> tuple[InferenceService, list[Message]]:
    h = InferenceHarness(model_root, bus, series)
    await h.warm("AAPL")
    return h.service, h.published


def feed(service: InferenceService, series: SymbolSeries, start: int, n: int) -> None:
    for i in range(start, start + n):
        service.handle_batch([series.bar(series.first_live + i)])


def of(published: list[Message], kind: type) -> list[Any]:
    return [m for m in published if isinstance(m, kind)]


async def test_shadow_publishes_only_shadow_targets_beside_unchanged_live_signals(
    model_root: Path, bus: BusConnection, series: SymbolSeries
) -> None:
    service, out = await started(model_root, bus, series)
    feed(service, series, 0, 5)
    assert of(out, ShadowTarget) == []
    reply = await service.cmd_shadow_load({"version": "v-flip"})
    assert reply == {"accepted": True, "shadow": "v-flip", "serving": BASELINE}
    feed(service, series, 5, 10)
    live, shadow = of(out, TargetPosition), of(out, ShadowTarget)
    assert len(live) == 15 and len(shadow) == 10
    assert {s.model_version for s in live} == {BASELINE}
    assert {s.model_version for s in shadow} == {"v-flip"}
    assert all(s.topic() == "shadow.AAPL" and not isinstance(s, TargetPosition) for s in shadow)
    assert [s.bar_seq for s in shadow] == [s.bar_seq for s in live[5:]]
    targets = [s.target_position for s in shadow]  # the flipping policy, from flat
    assert targets == [1.0, 0.0] * 5
    status = service.status_detail()
    assert status["shadow_model"] == {"version": "v-flip", "published": 10}
    assert status["model"]["version"] == BASELINE


async def test_a_refused_shadow_leaves_live_and_shadow_as_they_were(
    model_root: Path, bus: BusConnection, series: SymbolSeries
) -> None:
    service, out = await started(model_root, bus, series)
    with pytest.raises(ArtifactError, match="sha256"):
        await service.cmd_shadow_load({"version": "v-bad"})
    assert service.shadow is None and service.model.version == BASELINE
    feed(service, series, 0, 3)
    assert len(of(out, TargetPosition)) == 3 and of(out, ShadowTarget) == []


async def test_promote_goes_through_the_swap_and_rollback_returns(
    model_root: Path, bus: BusConnection, series: SymbolSeries
) -> None:
    service, out = await started(model_root, bus, series)
    await service.cmd_shadow_load({"version": "v-flip"})
    reply = await service.cmd_shadow_promote({})
    assert reply["accepted"] and reply["serving"] == "v-flip" and reply["previous"] == BASELINE
    assert service.shadow is None and service.previous is not None
    feed(service, series, 0, 2)
    assert [s.model_version for s in of(out, TargetPosition)] == ["v-flip"] * 2
    assert of(out, ShadowTarget) == []
    assert (await service.cmd_rollback({}))["serving"] == BASELINE
    with pytest.raises(ArtifactError, match="no shadow"):
        await service.cmd_shadow_promote({})


async def test_signed_model_updated_loads_and_drops_the_shadow(
    model_root: Path, bus: BusConnection, series: SymbolSeries
) -> None:
    service, _ = await started(model_root, bus, series)
    sha = read_manifest(model_root / "v-flip").onnx_sha256

    def update(action: str, version: str, sha256: str = "") -> ModelUpdated:
        message = ModelUpdated(
            version=version, path=version, onnx_sha256=sha256, action=action,  # type: ignore[arg-type]
            ts_event=time.time_ns(),
        )  # fmt: skip
        return message

    assert service.on_model_updated(update("shadow", "v-flip", sha)) is None  # unsigned
    assert service.shadow is None and service.counters.updates_refused == 1
    service.on_model_updated(sign(update("shadow", "v-flip", sha), bus.key))
    assert service.shadow is not None and service.shadow.version == "v-flip"
    service.on_model_updated(sign(update("drop_shadow", ""), bus.key))
    assert service.shadow is None
    # a push of the shadow's own version (the trainer's promote_shadow) drops it: it is live
    service.on_model_updated(sign(update("shadow", "v-flip", sha), bus.key))
    service.on_model_updated(sign(update("push", "v-flip", sha), bus.key))
    assert service.model.version == "v-flip" and service.shadow is None


async def test_a_failing_shadow_never_costs_a_live_signal(
    model_root: Path, bus: BusConnection, series: SymbolSeries
) -> None:
    service, out = await started(model_root, bus, series)
    await service.cmd_shadow_load({"version": "v-flip"})
    assert service.shadow is not None

    def broken(obs: Any) -> float:
        raise RuntimeError("candidate blew up")

    service.shadow.model.decide = broken  # type: ignore[method-assign]
    feed(service, series, 0, 4)
    assert len(of(out, TargetPosition)) == 4 and of(out, ShadowTarget) == []
    assert service.counters.shadow_errors == 4 and service.handler_errors == 0


async def test_the_recorded_shadow_is_loaded_at_start(
    model_root: Path, bus: BusConnection, series: SymbolSeries
) -> None:
    sha = read_manifest(model_root / "v-flip").onnx_sha256
    (model_root / "shadow.json").write_text(json.dumps({"version": "v-flip", "sha256": sha}))
    service, _ = await started(model_root, bus, series)
    assert service.shadow is not None and service.shadow.version == "v-flip"
    (model_root / "shadow.json").write_text(json.dumps({"version": "v-bad"}))
    service, _ = await started(model_root, bus, series)
    assert service.shadow is None and service.model.version == BASELINE
