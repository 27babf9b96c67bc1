"""The inference service in-process: warm-up from snapshots, signals, hot swap and its refusals."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from inference.config import InferenceSettings
from marketdata.replay import SymbolSeries

from shared.auth import sign
from shared.config import ConfigError, from_env
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.manifest import ArtifactError, read_manifest
from shared.messages import Message, ModelUpdated
from shared.observation import build_observation, observation_names
from shared.runtime import BusConnection
from tests.conftest import REPO_ROOT
from tests.inference_harness import (
    BASELINE,
    InferenceHarness,
    baseline_root,
    inference_bus,
    packaged_series,
)
from tests.model_artifacts import (
    baseline_folder,
    constant_policy_onnx,
    corrupt,
    make_artifact,
    position_flipping_onnx,
)

pytestmark = pytest.mark.unit

SIZE = len(observation_names(FeaturePipeline()))


@pytest.fixture(scope="module")
def series() -> SymbolSeries:
    return packaged_series("AAPL")


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    return baseline_root(tmp_path)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    with inference_bus(tmp_path) as connection:
        yield connection


def make_service(
    model_root: Path, bus: BusConnection, series: SymbolSeries, **kw: Any
) -> InferenceHarness:
    return InferenceHarness(model_root, bus, series, **kw)


def expected_targets(series: SymbolSeries, start: int, stop: int) -> list[float]:
    """What the policy decides for bars [start, stop) after walking the history the same way."""
    model = load_artifact(baseline_folder())
    online = FeaturePipeline().online()
    position, out = 0.0, []
    for i in range(start, stop):
        row = online.update(*series.ohlcv[i].tolist())
        if row is not None:
            position = model.decide(build_observation(model.normalise(row), position))
        out.append(position)
    return out


async def test_late_joiner_decides_on_the_first_live_bar(model_root, bus, series) -> None:
    h = make_service(model_root, bus, series, symbols=("AAPL",))
    await h.service.warm_known_symbols()
    state = h.service.states["AAPL"]
    assert state.warm and state.features.ready and h.service.counters.snapshot_bars == 400
    live = range(series.first_live, series.first_live + 60)
    for i in live:
        h.service.on_bar(series.bar(i))
    signals = h.signals()
    assert len(signals) == 60  # no waiting for the feature window
    first = signals[0]
    bar = series.bar(series.first_live)
    assert first.symbol == "AAPL" and first.bar_seq == bar.seq
    assert first.bar_close_ts == bar.ts_event == first.ts_event and first.bar_close == bar.close
    assert first.model_version == BASELINE and first.strategy == "rl"
    want = expected_targets(series, series.first_live - 300, series.first_live + 60)[-60:]
    assert [s.target_position for s in signals] == want
    assert state.features.atr is not None and state.features.atr > 0


async def test_bars_arriving_while_warming_are_buffered_and_not_doubled(
    model_root, bus, series
) -> None:
    h = make_service(model_root, bus, series)
    first_live = series.first_live
    h.end["AAPL"] = first_live + 2  # the snapshot already covers the first two live bars
    for i in range(first_live, first_live + 5):
        h.service.on_bar(series.bar(i))  # triggers the warm-up task; bars are buffered
    assert h.signals() == [] and h.service.states["AAPL"].warming
    await h.settle()
    assert [s.bar_seq for s in h.signals()] == [
        series.bar(i).seq for i in range(first_live + 2, first_live + 5)
    ]
    assert h.service.counters.stale_bars == 2
    h.service.on_bar(series.bar(first_live + 4))  # a duplicate live bar
    assert len(h.signals()) == 3 and h.service.counters.stale_bars == 3


async def test_unreachable_marketdata_starts_cold(model_root, bus, series) -> None:
    h = make_service(model_root, bus, series, symbols=("AAPL",), snapshot_attempts=2)
    h.fail_snapshot = True
    await h.service.warm_known_symbols()
    assert h.snapshot_calls == 2 and h.service.counters.snapshot_failures == 2
    warmup = FeaturePipeline().warmup_bars
    for i in range(series.first_live, series.first_live + warmup + 4):
        h.service.on_bar(series.bar(i))
    assert len(h.signals()) == 5  # signals start once the window is full


async def test_shard_ignores_other_symbols(model_root, bus, series) -> None:
    h = make_service(model_root, bus, series, symbols=("NVDA",))
    assert h.service.topics() == ["bar.NVDA", "model.updated"]
    h.service.on_bar(series.bar(series.first_live))
    assert h.service.counters.filtered_bars == 1 and "AAPL" not in h.service.states


async def warm(h: InferenceHarness) -> None:
    await h.service.warm("AAPL")


async def test_corrupted_model_is_refused_and_the_old_one_keeps_serving(
    model_root, bus, series
) -> None:
    h = make_service(model_root, bus, series)
    await warm(h)
    bad = make_artifact(model_root, "v-bad")
    corrupt(bad)
    result = h.service.swap("v-bad")
    assert not result["accepted"] and "sha256" in result["reason"]
    status = h.statuses()[-1]
    assert not status.accepted and status.requested_version == "v-bad"
    assert status.serving_version == BASELINE and "sha256" in status.reason
    h.service.on_bar(series.bar(series.first_live))
    assert h.signals()[-1].model_version == BASELINE
    assert h.service.counters.models_rejected == 1
    with pytest.raises(ArtifactError, match="sha256"):
        await h.service.cmd_push_model({"version": "v-bad"})
    assert h.service.model.version == BASELINE


async def test_mismatched_manifest_is_refused_naming_the_field(model_root, bus, series) -> None:
    # another feature config is served with its own pipeline (tests/unit/test_feature_swap.py);
    # a fingerprint that does not belong to the recorded config is refused
    h = make_service(model_root, bus, series)
    make_artifact(
        model_root,
        "v-rsi10",
        config=FeatureConfig(rsi_window=10),
        pipeline_fingerprint=FeaturePipeline().fingerprint,
    )
    result = h.service.swap("v-rsi10")
    assert not result["accepted"]
    assert "pipeline_fingerprint" in result["reason"] and "feature_config" in result["reason"]
    assert h.statuses()[-1].reason == result["reason"]
    assert h.service.model.version == BASELINE


async def test_push_swaps_and_rollback_restores(model_root, bus, series) -> None:
    h = make_service(model_root, bus, series)
    await warm(h)
    make_artifact(model_root, "v-short", onnx_bytes=constant_policy_onnx(SIZE, 0))
    reply = await h.service.cmd_push_model({"version": "v-short"})
    assert reply == {"accepted": True, "serving": "v-short", "previous": BASELINE}
    assert h.statuses()[-1].accepted and h.statuses()[-1].serving_version == "v-short"
    h.service.on_bar(series.bar(series.first_live))
    assert h.signals()[-1].model_version == "v-short" and h.signals()[-1].target_position == -1.0
    reply = await h.service.cmd_rollback({})
    assert reply["serving"] == BASELINE
    h.service.on_bar(series.bar(series.first_live + 1))
    assert h.signals()[-1].model_version == BASELINE
    status = await h.service.cmd_status({})
    assert status["model"]["version"] == BASELINE and status["previous_model"] == "v-short"
    assert status["symbols"]["AAPL"]["signals"] == 2


def _update(bus: BusConnection, version: str, sha: str, **kw: Any) -> ModelUpdated:
    msg = ModelUpdated(
        version=version, path=version, onnx_sha256=sha, ts_event=time.time_ns(), **kw
    )
    return sign(msg, bus.key)  # type: ignore[no-any-return]


async def test_model_updated_must_be_signed_fresh_and_unique(model_root, bus, series) -> None:
    h = make_service(model_root, bus, series)
    folder = make_artifact(model_root, "v2")
    sha = read_manifest(folder).onnx_sha256
    signed = _update(bus, "v2", sha)
    # the publisher stamps producer/seq/ts_publish after signing
    on_wire = msgspec.structs.replace(signed, producer="trainer@host:1", seq=7, ts_publish=1)
    assert h.service.on_model_updated(on_wire)["accepted"]
    assert h.service.model.version == "v2"
    assert h.service.on_model_updated(on_wire) is None  # replayed nonce
    forged = msgspec.structs.replace(_update(bus, BASELINE, sha), version="v2-forged")
    assert h.service.on_model_updated(forged) is None
    unsigned = ModelUpdated(version="v2", path="v2", onnx_sha256=sha, ts_event=time.time_ns())
    assert h.service.on_model_updated(unsigned) is None
    stale = sign(
        ModelUpdated(version="v2", path="v2", onnx_sha256=sha, ts_event=time.time_ns() - 10**12),
        bus.key,
    )
    assert h.service.on_model_updated(stale) is None
    assert h.service.counters.updates_refused == 4
    assert "unauthorised" in h.statuses()[-1].reason and h.service.model.version == "v2"
    # a signed push whose announced sha does not match the file is refused
    wrong_sha = _update(bus, BASELINE, "0" * 64)
    assert not h.service.on_model_updated(wrong_sha)["accepted"]


async def test_signed_rollback_message(model_root, bus, series) -> None:
    h = make_service(model_root, bus, series)
    make_artifact(model_root, "v2")
    h.service.swap("v2")
    msg = sign(
        ModelUpdated(
            version="", path="", onnx_sha256="", action="rollback", ts_event=time.time_ns()
        ),
        bus.key,
    )
    assert h.service.on_model_updated(msg)["serving"] == BASELINE


def test_paths_outside_the_model_root_are_refused(model_root, bus, series, tmp_path) -> None:
    h = make_service(model_root, bus, series)
    outside = make_artifact(tmp_path / "elsewhere", "v9")
    for target in (str(outside), "../elsewhere/v9"):
        result = h.service.swap(target)
        assert not result["accepted"] and "model root" in result["reason"]


def test_settings_from_env_name_the_bad_key() -> None:
    settings = from_env(InferenceSettings, "INFERENCE_", {"INFERENCE_SYMBOLS": "AAPL,NVDA"})
    assert settings.symbols == ("AAPL", "NVDA") and settings.model_dir == "models"
    with pytest.raises(ConfigError, match="INFERENCE_SNAPSHOT_BARS"):
        from_env(InferenceSettings, "INFERENCE_", {"INFERENCE_SNAPSHOT_BARS": "0"})
    with pytest.raises(ConfigError, match="INFERENCE_SNAPSHOT_TIMEOUT_S"):
        from_env(InferenceSettings, "INFERENCE_", {"INFERENCE_SNAPSHOT_TIMEOUT_S": "soon"})


def test_initial_model_that_fails_its_checks_stops_the_start(model_root, bus, series) -> None:
    corrupt(model_root / "baseline" / BASELINE)
    with pytest.raises(ArtifactError):
        make_service(model_root, bus, series)


def test_inference_imports_neither_ray_nor_torch() -> None:
    code = (
        "import sys\n"
        "import inference.__main__, inference.service, inference.config\n"
        "import shared.manifest, shared.loaded_model, shared.features, shared.observation\n"
        "import shared.data\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch'))\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


def test_observation_matches_the_batch_pipeline(series) -> None:
    """Serving builds the same vectors as training: online rows == batch rows, same layout."""
    pipe = FeaturePipeline()
    model = load_artifact(baseline_folder())
    bars = series.ohlcv[:400]
    import pandas as pd

    frame = pd.DataFrame(bars, columns=["open", "high", "low", "close", "volume"])
    batch = model.normalise(pipe.batch(frame))
    online = pipe.online()
    for i, row in enumerate(bars.tolist()):
        out = online.update(*row)
        if out is not None:
            np.testing.assert_allclose(model.normalise(out), batch[i], rtol=0, atol=1e-9)


def test_start_serves_the_last_pushed_version_so_restarts_and_replicas_agree(
    model_root: Path, bus: BusConnection, series: SymbolSeries
) -> None:
    import json

    from tests.model_artifacts import make_artifact

    make_artifact(model_root, "v-pushed")
    (model_root / "pushes.json").write_text(json.dumps([{"version": "v-pushed"}]))
    assert make_service(model_root, bus, series).service.model.version == "v-pushed"
    # an explicit version still wins
    explicit = make_service(model_root, bus, series, model_version="baseline")
    assert explicit.service.model.version == BASELINE


def test_start_falls_back_to_baseline_when_the_pushed_artifact_is_broken(
    model_root: Path, bus: BusConnection, series: SymbolSeries
) -> None:
    import json

    from tests.model_artifacts import corrupt, make_artifact

    corrupt(make_artifact(model_root, "v-broken"))
    (model_root / "pushes.json").write_text(json.dumps([{"version": "v-broken"}]))
    assert make_service(model_root, bus, series).service.model.version == BASELINE


async def test_a_handler_bug_is_logged_and_the_next_bar_is_served(
    model_root, bus, series, caplog
) -> None:
    """No exception from a message leaves the receive loop (a bug in on_bar, once)."""
    h = make_service(model_root, bus, series)
    real_on_bar = h.service.on_bar
    calls = {"n": 0}

    def flaky(bar: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected handler bug")
        real_on_bar(bar)

    class OneBatch:
        stats = None

        def __init__(self, batch: list[Message]) -> None:
            self.batches = [batch]

        async def serve(self, handle: Any) -> None:
            for batch in self.batches:
                handle(batch)
            raise asyncio.CancelledError

        def close(self) -> None:
            pass

    h.service.on_bar = flaky  # type: ignore[method-assign]
    first, second = (
        msgspec.structs.replace(series.bar(i), producer="marketdata@t", seq=i + 1)
        for i in (series.first_live, series.first_live + 1)
    )
    h.service.bus.subscriber = lambda topics: OneBatch([first, second])  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await h.service.consume()
    assert calls["n"] == 2  # the second bar was still handled after the first one raised
    assert h.service.status_detail()["handler_errors"] == 1
    assert any(r.getMessage() == "handler_failed" and r.exc_info for r in caplog.records)


async def test_the_policy_sees_the_position_it_decided_last(model_root, bus, series) -> None:
    """A policy whose decision depends only on its position input: served through inference it
    alternates long/flat, which it can only do if inference feeds back its previous target
    (every other served model ignores that input, so nothing else would notice)."""
    h = make_service(model_root, bus, series)
    await warm(h)
    make_artifact(model_root, "v-flip", onnx_bytes=position_flipping_onnx(SIZE))
    assert (await h.service.cmd_push_model({"version": "v-flip"}))["accepted"]
    held = h.service.states["AAPL"].position  # the last target of the warm-up, in {0, 1}
    assert held in (0.0, 1.0)
    for i in range(series.first_live, series.first_live + 6):
        h.service.on_bar(series.bar(i))
    expected = [1.0 - held if n % 2 == 0 else held for n in range(6)]
    assert [s.target_position for s in h.signals()] == expected


async def test_a_model_update_inside_a_receive_batch_splits_it(model_root, bus, series) -> None:
    """Bars queued for a batched decision are decided by the model they arrived under and
    published before the update's status; the bars after it get the new model."""
    h = make_service(model_root, bus, series)
    await warm(h)
    folder = make_artifact(model_root, "v-short", onnx_bytes=constant_policy_onnx(SIZE, 0))
    update = _update(bus, "v-short", read_manifest(folder).onnx_sha256)
    first, second = series.bar(series.first_live), series.bar(series.first_live + 1)
    h.service.handle_batch([first, update, second])
    kinds = [(type(m).__name__, getattr(m, "model_version", None)) for m in h.published[-3:]]
    assert kinds == [
        ("TargetPosition", BASELINE),
        ("ModelStatus", None),
        ("TargetPosition", "v-short"),
    ]
    want = expected_targets(series, series.first_live - 300, series.first_live + 1)[-1]
    assert h.signals()[0].target_position == want and h.signals()[1].target_position == -1.0
