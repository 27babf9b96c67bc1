"""Batched inference: the bars of one receive batch go through their symbols' features in one
numpy pass (``shared.feature_bank``) and one ONNX call, and every target, signal and fed-back
position is exactly what deciding bar by bar gives. Five symbols, and the bank's adoption
threshold lowered to four (``ADOPT_MIN``: 32 by default, where the bank's pass starts to pay), so
the batched runs below decide on the bank's rows."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from inference.service import InferenceService
from marketdata.replay import SymbolSeries

import shared.feature_bank as bank_mod
from shared.feature_bank import BankedFeatures
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.manifest import MODEL_FILE
from shared.messages import Bar, Message, ShadowTarget, TargetPosition
from shared.observation import build_observation, observation_names
from shared.runtime import BusConnection
from tests.inference_harness import (
    BASELINE,
    InferenceHarness,
    baseline_root,
    inference_bus,
    packaged_series,
)
from tests.model_artifacts import make_artifact, position_flipping_onnx

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("bank_path")]

SIZE = len(observation_names(FeaturePipeline()))
SYMBOLS = ("AAPL", "NVDA", "GOOG", "META", "AMZN")
LIVE = 40  # live bars per symbol


@pytest.fixture(autouse=True)
def small_adoption_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bank_mod, "ADOPT_MIN", 4)


@pytest.fixture(scope="module")
def all_series() -> dict[str, SymbolSeries]:
    return {s: packaged_series(s) for s in SYMBOLS}


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = baseline_root(tmp_path)
    make_artifact(root, "v-flip", onnx_bytes=position_flipping_onnx(SIZE))
    return root


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    with inference_bus(tmp_path) as connection:
        yield connection


def fixed_batch_onnx(onnx_bytes: bytes, batch: int = 1) -> bytes:
    """The same graph with its input's batch dimension fixed (as some exporters write it)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    return bytes(model.SerializeToString(deterministic=True))


async def served(
    model_root: Path,
    bus: BusConnection,
    all_series: dict[str, SymbolSeries],
    version: str,
    batches: list[list[Bar]] | None,
    shadow: str | None = None,
    one_by_one: list[Bar] | None = None,
) -> tuple[InferenceService, list[Message]]:
    """A service warmed on each symbol's snapshot, then fed the live bars either in receive
    batches (``handle_batch``) or, when ``batches`` is None, bar by bar (``on_bar``: the live
    bars in close-time order, or ``one_by_one``)."""
    h = InferenceHarness(model_root, bus, all_series, model_version=version)
    service = h.service
    if shadow is not None:
        assert service.load_shadow(shadow)["accepted"]
    await h.warm(*SYMBOLS)
    if batches is None:
        if one_by_one is None:
            one_by_one = [b for group in by_close_time(all_series) for b in group]
        for bar in one_by_one:
            service.on_bar(bar)
    else:
        for batch in batches:
            service.handle_batch(list(batch))
    return service, h.published


def live_bars(all_series: dict[str, SymbolSeries]) -> list[Bar]:
    return [s.bar(i) for s in all_series.values() for i in range(s.first_live, s.first_live + LIVE)]


def by_close_time(all_series: dict[str, SymbolSeries]) -> list[list[Bar]]:
    """One receive batch per close time: every symbol's bar of that time, in symbol order."""
    groups: dict[int, list[Bar]] = {}
    for bar in sorted(live_bars(all_series), key=lambda b: (b.ts_event, SYMBOLS.index(b.symbol))):
        groups.setdefault(bar.ts_event, []).append(bar)
    return list(groups.values())


def signal_rows(published: list[Message]) -> list[tuple[Any, ...]]:
    return [
        (m.symbol, m.bar_seq, m.bar_close_ts, m.target_position, m.model_version)
        for m in published
        if isinstance(m, TargetPosition)
    ]


def test_packaged_series_share_close_times(all_series) -> None:
    groups = by_close_time(all_series)
    assert len(groups) == LIVE and all(len(g) == len(SYMBOLS) for g in groups)


@pytest.mark.parametrize("version", ["baseline", "v-flip"])
def test_decide_batch_equals_decide_per_row_bit_for_bit(model_root, all_series, version) -> None:
    """Real observations of several symbols (and every position) through one call."""
    path = model_root / "baseline" / BASELINE if version == "baseline" else model_root / version
    model = load_artifact(path)
    assert model.batchable
    rows = []
    for series in all_series.values():
        online = FeaturePipeline().online()
        for i in range(series.first_live + LIVE):
            row = online.update(*series.ohlcv[i].tolist())
            if row is not None and i >= series.first_live - 5:
                for position in (-1.0, 0.0, 1.0):
                    rows.append(build_observation(model.normalise(row), position))
    obs = np.stack(rows)
    batched = model.decide_batch(obs)
    single = np.array([model.decide(r) for r in obs])
    assert batched.dtype == np.float64 and batched.shape == (len(rows),)
    assert batched.tobytes() == single.tobytes()
    assert len(set(single.tolist())) > 1  # the policy does not decide one constant


@pytest.mark.parametrize("version", ["baseline", "v-flip"])
async def test_batched_service_equals_bar_by_bar(model_root, bus, all_series, version) -> None:
    """Same targets, same signals in the same order, same fed-back positions."""
    single, single_out = await served(model_root, bus, all_series, version, None)
    batched, batched_out = await served(
        model_root, bus, all_series, version, by_close_time(all_series)
    )
    want = signal_rows(single_out)
    assert len(want) == LIVE * len(SYMBOLS)
    assert signal_rows(batched_out) == want
    for symbol in SYMBOLS:
        assert batched.states[symbol].position == single.states[symbol].position
        assert batched.states[symbol].signals == LIVE
    assert batched.counters.batched_calls == LIVE  # one ONNX call per close time
    assert batched.counters.batched_bars == LIVE * len(SYMBOLS)
    assert single.counters.batched_calls == 0
    assert len(SYMBOLS) >= bank_mod.ADOPT_MIN  # the batched run decided on the bank's rows
    for symbol in SYMBOLS:
        banked, alone = batched.states[symbol].features, single.states[symbol].features
        assert isinstance(banked, BankedFeatures) and banked.online is None
        assert isinstance(alone, BankedFeatures) and alone.online is not None
    if version == "v-flip":  # the position-dependent policy really alternated
        aapl = [row[3] for row in want if row[0] == "AAPL"]
        assert all(a != b for a, b in itertools.pairwise(aapl))


async def test_one_receive_batch_of_everything_repeats_symbols_in_order(
    model_root, bus, all_series
) -> None:
    """Bars of the same symbol in one receive batch are applied in order: the batch is flushed
    when a symbol repeats, so each bar sees the position its predecessor decided."""
    bars = [b for group in by_close_time(all_series) for b in group]
    _, single_out = await served(model_root, bus, all_series, "v-flip", None)
    batched, batched_out = await served(model_root, bus, all_series, "v-flip", [bars])
    assert signal_rows(batched_out) == signal_rows(single_out)
    assert batched.counters.batched_calls == LIVE
    # the same symbol twice in a row: the second bar is decided on the first one's target
    aapl = all_series["AAPL"]
    pair = [aapl.bar(aapl.first_live + LIVE), aapl.bar(aapl.first_live + LIVE + 1)]
    held = batched.states["AAPL"].position
    before = len(batched_out)
    batched.handle_batch(pair)
    assert [m.target_position for m in batched_out[before:]] == [1.0 - held, held]  # type: ignore[attr-defined]


async def test_fixed_batch_model_falls_back_to_one_call_per_row(
    model_root, bus, all_series
) -> None:
    flip = (model_root / "v-flip" / MODEL_FILE).read_bytes()
    make_artifact(model_root, "v-fixed", onnx_bytes=fixed_batch_onnx(flip))
    model = load_artifact(model_root / "v-fixed")
    assert not model.batchable
    obs = np.zeros((4, SIZE), dtype=np.float32)
    obs[:, -1] = [0.0, 1.0, 1.0, 0.0]
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type
        model.outputs(obs)  # the graph really refuses a batch of 4
    assert model.decide_batch(obs).tolist() == [1.0, 0.0, 0.0, 1.0]
    _, single_out = await served(model_root, bus, all_series, "v-flip", None)
    batched, batched_out = await served(
        model_root, bus, all_series, "v-fixed", by_close_time(all_series)
    )
    assert [r[:4] for r in signal_rows(batched_out)] == [r[:4] for r in signal_rows(single_out)]
    assert batched.handler_errors == 0


def shadow_rows(published: list[Message]) -> list[tuple[Any, ...]]:
    return [
        (m.symbol, m.bar_seq, m.bar_close_ts, m.target_position, m.model_version)
        for m in published
        if isinstance(m, ShadowTarget)
    ]


async def test_batched_shadow_equals_bar_by_bar_and_the_shadow_served_live(
    model_root, bus, all_series
) -> None:
    """With a shadow loaded, batching changes nothing: the live signals are those without a
    shadow, and the shadow's targets (batched or not) are what it decides when served live."""
    _, plain_out = await served(model_root, bus, all_series, "baseline", None)
    _, single_out = await served(model_root, bus, all_series, "baseline", None, "v-flip")
    batched, batched_out = await served(
        model_root, bus, all_series, "baseline", by_close_time(all_series), "v-flip"
    )
    _, flip_live_out = await served(model_root, bus, all_series, "v-flip", None)
    assert signal_rows(single_out) == signal_rows(batched_out) == signal_rows(plain_out)
    want = [(*row[:4], "v-flip") for row in signal_rows(flip_live_out)]
    assert shadow_rows(single_out) == shadow_rows(batched_out) == want
    assert len(want) == LIVE * len(SYMBOLS)
    assert batched.counters.shadow_signals == LIVE * len(SYMBOLS)
    assert batched.counters.shadow_errors == 0


async def test_refused_zero_volume_and_stale_bars_inside_banked_batches_equal_bar_by_bar(
    model_root, bus, all_series
) -> None:
    """A bar the features refuse (NaN close) leaves its batch alone and is counted; a zero
    volume is an ordinary bar; a stale bar repeated in a later batch is dropped: all exactly as
    bar by bar, and the other symbols' signals unchanged."""
    groups = by_close_time(all_series)
    nvda = SYMBOLS.index("NVDA")
    groups[10][nvda] = msgspec.structs.replace(groups[10][nvda], close=math.nan)
    groups[20][0] = msgspec.structs.replace(groups[20][0], volume=0.0)
    groups[30].append(groups[29][2])  # GOOG's previous bar again: stale
    flat = [bar for group in groups for bar in group]
    single, single_out = await served(model_root, bus, all_series, "v-flip", None, None, flat)
    batched, batched_out = await served(model_root, bus, all_series, "v-flip", groups)
    want = signal_rows(single_out)
    assert signal_rows(batched_out) == want and len(want) == LIVE * len(SYMBOLS) - 1
    for counter in ("invalid_bars", "stale_bars", "signals"):
        assert getattr(batched.counters, counter) == getattr(single.counters, counter), counter
    assert (batched.counters.invalid_bars, batched.counters.stale_bars) == (1, 1)
    assert batched.handler_errors == single.handler_errors == 0
    for symbol in SYMBOLS:
        assert batched.states[symbol].position == single.states[symbol].position
        assert batched.states[symbol].features.bars_seen == single.states[symbol].features.bars_seen


async def epoch_run(
    model_root: Path, bus: BusConnection, all_series: dict[str, SymbolSeries], batched: bool
) -> InferenceHarness:
    """Ten close times in epoch 1; then marketdata restarts: AAPL's epoch-2 bar arrives in the
    same receive batch as every symbol's last epoch-1 bar, the others follow in epoch 2."""
    h = InferenceHarness(model_root, bus, all_series, model_version="v-flip", epoch=1)
    await h.warm(*SYMBOLS)
    first = {s: all_series[s].first_live for s in SYMBOLS}

    def feed(bars: list[Bar]) -> None:
        if batched:
            h.service.handle_batch(bars)
        else:
            for bar in bars:
                h.service.on_bar(bar)

    for k in range(10):
        feed([h.bar(s, first[s] + k) for s in SYMBOLS])
    old_epoch = [h.bar(s, first[s] + 10) for s in SYMBOLS]
    h.epoch = 2
    for s in SYMBOLS:
        h.end[s] = first[s] + 12  # the new epoch's snapshot holds bars up to k = 11
    feed([*old_epoch, h.bar("AAPL", first["AAPL"] + 11)])
    await h.settle()
    for k in range(11, 20):
        feed([h.bar(s, first[s] + k) for s in SYMBOLS])
        await h.settle()
    return h


async def test_an_epoch_change_inside_a_banked_batch_equals_bar_by_bar(
    model_root, bus, all_series
) -> None:
    """The symbol's queued old-epoch bar is decided first, its banked state is dropped for a
    fresh one re-warmed from the new snapshot (then banked again), and every symbol's signals
    are those of bar by bar: each close time once."""
    single = await epoch_run(model_root, bus, all_series, batched=False)
    batched = await epoch_run(model_root, bus, all_series, batched=True)
    want = signal_rows(single.published)
    assert signal_rows(batched.published) == want
    assert len(want) == 20 * len(SYMBOLS)  # every close time signalled exactly once
    assert len(set(want)) == len(want)
    assert batched.service.counters.epoch_changes == single.service.counters.epoch_changes == 5
    assert batched.snapshot_epochs == single.snapshot_epochs
    for symbol in SYMBOLS:
        features = batched.service.states[symbol].features
        assert isinstance(features, BankedFeatures) and features.online is None  # banked again
        assert batched.service.states[symbol].position == single.service.states[symbol].position
