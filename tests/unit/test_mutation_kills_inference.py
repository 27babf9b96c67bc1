"""Inference's decision loop (``inference/service.py``) against expectations computed here from
first principles, never by the code under test: a policy whose decision depends only on its
position input (a 0 -> +1 -> -1 -> 0 cycle, so the fed-back position's value and sign both
matter), a policy that reads only the current bar's normalised 1-bar log return (computed here
from the raw closes and the manifest's normaliser), the per-symbol counters of dedupe, seq gaps,
backfill runs and refused bars, and shadow targets that are published but never traded.

Written for the mutation run of service.py (scripts/mutate.py, issue 17): each test pins a rule a
surviving mutant broke.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from marketdata.replay import SymbolSeries

from shared.features import FeaturePipeline
from shared.manifest import read_manifest
from shared.messages import Bar, Heartbeat, ShadowTarget, TargetPosition
from shared.observation import observation_names
from shared.runtime import BusConnection
from tests.inference_harness import (
    InferenceHarness,
    baseline_root,
    inference_bus,
    packaged_series,
)
from tests.model_artifacts import baseline_folder, linear_onnx, make_artifact

pytestmark = pytest.mark.unit

SIZE = len(observation_names(FeaturePipeline()))
SYMBOLS = ("AAPL", "NVDA", "GOOG")
SNAPSHOT = 120  # bars per warm-up: past the pipeline's warm-up, cheap to replay
CYCLE = {0.0: 1.0, 1.0: -1.0, -1.0: 0.0}  # the cycling policy: position -> next target


def cycle_onnx() -> bytes:
    """Reads only the position p (the last input): logits (2p, -2p, 0.5) over the actions
    (-1, 0, +1): p = 0 -> +1, p = +1 -> -1, p = -1 -> 0."""
    weights = np.zeros((SIZE, 3), dtype=np.float32)
    weights[-1] = [2.0, -2.0, 0.0]
    return linear_onnx(weights, np.array([0.0, 0.0, 0.5], dtype=np.float32))


def return_sign_onnx() -> bytes:
    """Reads only the first feature (normalised ``ret_1``) z: logits (-z, 0, z): long when
    z > 0, short when z < 0 (never flat on real data)."""
    weights = np.zeros((SIZE, 3), dtype=np.float32)
    weights[0] = [-10.0, 0.0, 10.0]
    return linear_onnx(weights, np.zeros(3, dtype=np.float32))


def hold_onnx() -> bytes:
    """Always flat (action index 1 = 0.0)."""
    return linear_onnx(np.zeros((SIZE, 3), dtype=np.float32), np.array([0, 1, 0], np.float32))


@pytest.fixture(scope="module")
def all_series() -> dict[str, SymbolSeries]:
    return {s: packaged_series(s) for s in SYMBOLS}


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = baseline_root(tmp_path)
    make_artifact(root, "v-cycle", onnx_bytes=cycle_onnx())
    make_artifact(root, "v-sign", onnx_bytes=return_sign_onnx())
    make_artifact(root, "v-hold", onnx_bytes=hold_onnx())
    return root


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    with inference_bus(tmp_path) as connection:
        yield connection


def ready_rows(series: SymbolSeries, start: int, stop: int) -> int:
    """How many of bars [start, stop) give a feature row when a fresh pipeline is fed them
    (the number of decisions a warm-up replay of those bars makes)."""
    online = FeaturePipeline().online()
    return sum(online.update(*series.ohlcv[i].tolist()) is not None for i in range(start, stop))


def cycled(decisions: int) -> float:
    """The cycling policy's position after ``decisions`` decisions from flat."""
    position = 0.0
    for _ in range(decisions):
        position = CYCLE[position]
    return position


def sign_targets(series: SymbolSeries, indices: range) -> list[float]:
    """The return-sign policy by hand: z = (log(c_t / c_t-1) - mean) / std of the manifest's
    normaliser (its clip keeps the sign); +1 when z > 0, -1 when z < 0."""
    norm = read_manifest(baseline_folder()).normaliser
    mean, std = float(norm["mean"][0]), float(norm["std"][0])
    closes = series.ohlcv[:, 3]
    out = []
    for i in indices:
        z = (math.log(closes[i] / closes[i - 1]) - mean) / std
        assert z != 0.0
        out.append(1.0 if z > 0 else -1.0)
    return out


def harness(
    model_root: Path, bus: BusConnection, series: dict[str, SymbolSeries], version: str, **kw
) -> InferenceHarness:
    return InferenceHarness(
        model_root, bus, series, model_version=version, snapshot_bars=SNAPSHOT, **kw
    )


def targets(h: InferenceHarness, symbol: str) -> list[float]:
    return [s.target_position for s in h.signals(symbol)]


# ---------------------------------------------------------------- the position the policy sees


async def test_the_position_fed_back_is_the_last_target_through_warm_up_and_live(
    model_root, bus, all_series
) -> None:
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-cycle")
    await h.warm()
    warm = ready_rows(aapl, aapl.first_live - SNAPSHOT, aapl.first_live)
    assert 0 < warm < SNAPSHOT
    assert h.service.states["AAPL"].position == cycled(warm)
    for i in range(aapl.first_live, aapl.first_live + 7):
        h.service.on_bar(aapl.bar(i))
    assert targets(h, "AAPL") == [cycled(warm + k) for k in range(1, 8)]
    assert h.service.states["AAPL"].position == cycled(warm + 7)
    assert h.service.states["AAPL"].last_target == cycled(warm + 7)


async def test_a_receive_batch_feeds_each_symbol_its_own_position(
    model_root, bus, all_series
) -> None:
    """Three symbols whose positions differ (a different number of bars decided each) share
    one batched call: each gets the target of its own position, the same symbol twice in one
    batch sees the position its first bar decided."""
    h = harness(model_root, bus, all_series, "v-cycle")
    await h.warm()
    decided = {
        s: ready_rows(ser, ser.first_live - SNAPSHOT, ser.first_live)
        for s, ser in all_series.items()
    }
    nxt = {s: ser.first_live for s, ser in all_series.items()}
    for symbol, extra in (("NVDA", 1), ("GOOG", 2)):  # put the symbols out of phase
        for _ in range(extra):
            h.service.handle_batch([all_series[symbol].bar(nxt[symbol])])
            nxt[symbol] += 1
            decided[symbol] += 1
    assert len({cycled(n) for n in decided.values()}) == 3  # three different positions
    before = len(h.signals())
    batch: list[Bar] = []
    for symbol in SYMBOLS:
        batch.append(all_series[symbol].bar(nxt[symbol]))
        nxt[symbol] += 1
    batch.append(all_series["AAPL"].bar(nxt["AAPL"]))  # AAPL again: after its first decision
    h.service.handle_batch(batch)
    got = [(s.symbol, s.target_position) for s in h.signals()[before:]]
    want = [(s, cycled(decided[s] + 1)) for s in SYMBOLS] + [("AAPL", cycled(decided["AAPL"] + 2))]
    assert got == want
    assert h.service.counters.batched_calls == 1 and h.service.counters.batched_bars == 3
    for symbol in SYMBOLS:
        extra = 2 if symbol == "AAPL" else 1
        assert h.service.states[symbol].position == cycled(decided[symbol] + extra)


async def test_targets_follow_the_current_bars_features_per_symbol(
    model_root, bus, all_series
) -> None:
    """The observation is built from the bar just received (its own symbol's row), alone or in
    a batch of symbols."""
    h = harness(model_root, bus, all_series, "v-sign")
    await h.warm()
    live = range(0, 6)
    for k in live[:3]:  # bar by bar
        for ser in all_series.values():
            h.service.handle_batch([ser.bar(ser.first_live + k)])
    for k in live[3:]:  # one receive batch per close time
        h.service.handle_batch([ser.bar(ser.first_live + k) for ser in all_series.values()])
    for symbol, ser in all_series.items():
        want = sign_targets(ser, range(ser.first_live, ser.first_live + len(live)))
        assert targets(h, symbol) == want
        assert len(set(want)) == 2  # the bars really move the decision both ways
    assert h.service.counters.batched_calls == 3


async def test_signal_fields_come_from_the_bar_and_the_serving_model(
    model_root, bus, all_series
) -> None:
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-sign", strategy="alpha")
    await h.warm()
    bar = aapl.bar(aapl.first_live)
    returned = h.service.on_bar(bar)
    (signal,) = h.signals()
    assert returned == signal and type(signal) is TargetPosition
    assert (signal.symbol, signal.bar_seq, signal.bar_close_ts, signal.ts_event) == (
        "AAPL",
        bar.seq,
        bar.ts_event,
        bar.ts_event,
    )
    assert signal.bar_close == bar.close and signal.strategy == "alpha"
    assert signal.model_version == "v-sign"
    assert (
        signal.target_position == sign_targets(aapl, range(aapl.first_live, aapl.first_live + 1))[0]
    )
    state = h.service.states["AAPL"]
    assert state.signals == 1 and state.last_signal_ts == bar.ts_event
    assert h.service.counters.signals == 1


# ---------------------------------------------------------------- per-symbol state and counters


async def test_duplicates_and_older_bars_are_dropped_per_symbol(
    model_root, bus, all_series
) -> None:
    h = harness(model_root, bus, all_series, "v-cycle")
    await h.warm()
    aapl, nvda = all_series["AAPL"], all_series["NVDA"]
    first = aapl.bar(aapl.first_live)
    h.service.on_bar(first)
    h.service.on_bar(first)  # the same bar again
    h.service.on_bar(aapl.bar(aapl.first_live - 1))  # an older one (in the snapshot)
    assert len(h.signals("AAPL")) == 1 and h.service.counters.stale_bars == 2
    # NVDA's bar of the same close time is not a duplicate of AAPL's
    h.service.on_bar(nvda.bar(nvda.first_live))
    assert len(h.signals("NVDA")) == 1 and h.service.counters.stale_bars == 2
    assert h.service.states["AAPL"].last_ts == first.ts_event


async def test_seq_gaps_are_counted_once_per_missing_bar(model_root, bus, all_series) -> None:
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-cycle")
    await h.warm()
    state = h.service.states["AAPL"]
    start = aapl.first_live
    seq0 = aapl.bar(start - 1).seq
    assert state.last_seq == seq0 and state.gaps == 0 and state.breaks == 0
    h.service.on_bar(aapl.bar(start))  # consecutive: no gap
    assert state.gaps == 0 and state.breaks == 0
    assert state.last_seq == seq0 + 1
    h.service.on_bar(msgspec.structs.replace(aapl.bar(start + 1), seq=seq0 + 5))  # 3 missing
    assert state.gaps == 3 and h.service.counters.seq_gaps == 3 and state.breaks == 1
    assert state.last_seq == seq0 + 5
    h.service.on_bar(msgspec.structs.replace(aapl.bar(start + 2), seq=seq0 + 6))
    assert state.gaps == 3 and state.breaks == 1
    h.service.on_bar(msgspec.structs.replace(aapl.bar(start + 3), seq=seq0 + 8))  # 1 missing
    assert state.gaps == 4 and h.service.counters.seq_gaps == 4 and state.breaks == 2
    assert (await h.service.cmd_status({}))["symbols"]["AAPL"]["seq_gaps"] == 4
    assert len(h.signals()) == 4  # a gap is counted, the bar is still decided


async def test_a_backfill_run_is_one_break_and_its_bars_are_decided(
    model_root, bus, all_series
) -> None:
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-cycle")
    await h.warm()
    state = h.service.states["AAPL"]
    start = aapl.first_live
    h.service.on_bar(aapl.bar(start))
    for i in range(start + 1, start + 4):  # one run of three backfilled bars
        h.service.on_bar(msgspec.structs.replace(aapl.bar(i), backfill=True))
    assert state.breaks == 1 and state.last_backfill
    h.service.on_bar(aapl.bar(start + 4))
    assert state.breaks == 1 and not state.last_backfill
    h.service.on_bar(msgspec.structs.replace(aapl.bar(start + 5), backfill=True))  # a 2nd run
    assert state.breaks == 2
    assert len(h.signals()) == 6 and state.gaps == 0


async def test_a_backfilled_first_bar_of_a_cold_symbol_is_no_break(model_root, bus, all_series):
    """Nothing was streamed before: a backfill there breaks no continuity."""
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-cycle")
    state = h.service._state("AAPL")
    state.warm = True  # as after a snapshot that never came: start cold on live bars
    h.service.on_bar(msgspec.structs.replace(aapl.bar(aapl.first_live), backfill=True))
    assert state.bars == 1 and state.breaks == 0 and state.last_backfill


async def test_counts_of_bars_per_symbol_and_of_warming_bars(model_root, bus, all_series) -> None:
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-cycle", snapshot_attempts=1)
    h.fail_snapshot = True
    await h.warm()  # marketdata absent: the symbol starts cold
    state = h.service.states["AAPL"]
    assert state.warm and state.bars == 0 and h.service.counters.snapshot_failures == 1
    start = aapl.first_live
    warmup = FeaturePipeline().warmup_bars
    for i in range(start, start + warmup + 2):
        h.service.on_bar(aapl.bar(i))
    assert h.service.counters.warming_bars == warmup - 1
    assert state.gaps == 0 and state.breaks == 0  # the first bar is no gap
    assert state.bars == warmup + 2 and h.service.counters.bars == warmup + 2
    assert targets(h, "AAPL") == [cycled(k) for k in range(1, 4)]  # from flat, once ready
    status = await h.service.cmd_status({})
    assert status["symbols"]["AAPL"]["bars"] == warmup + 2
    assert status["symbols"]["AAPL"]["signals"] == 3


async def test_a_refused_bar_is_counted_and_leaves_the_symbol_where_it_was(
    model_root, bus, all_series
) -> None:
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-cycle")
    await h.warm()
    state = h.service.states["AAPL"]
    warm = ready_rows(aapl, aapl.first_live - SNAPSHOT, aapl.first_live)
    bars_before, ts_before = state.bars, state.last_ts
    good = aapl.bar(aapl.first_live)
    h.service.on_bar(msgspec.structs.replace(good, close=-1.0, low=-1.0))  # non-positive price
    assert h.service.counters.invalid_bars == 1 and h.signals() == []
    assert state.bars == bars_before and state.last_ts == ts_before
    assert state.position == cycled(warm)
    h.service.on_bar(good)  # the corrected bar of the same close time is served
    assert targets(h, "AAPL") == [cycled(warm + 1)] and h.service.counters.invalid_bars == 1
    later = aapl.bar(aapl.first_live + 1)
    h.service.on_bar(msgspec.structs.replace(later, close=-1.0, low=-1.0))
    assert h.service.counters.invalid_bars == 2 and len(h.signals()) == 1


async def test_a_symbol_outside_the_static_shard_is_filtered_without_state(
    model_root, bus, all_series
) -> None:
    h = harness(model_root, bus, all_series, "v-cycle", symbols=("NVDA",))
    await h.warm("NVDA")
    aapl, nvda = all_series["AAPL"], all_series["NVDA"]
    h.service.handle_batch([aapl.bar(aapl.first_live), nvda.bar(nvda.first_live)])
    assert h.service.counters.filtered_bars == 1 and h.service.counters.bars == 1
    h.service.handle_batch([aapl.bar(aapl.first_live + 1)])
    assert h.service.counters.filtered_bars == 2 and h.service.counters.bars == 1
    assert "AAPL" not in h.service.states and [s.symbol for s in h.signals()] == ["NVDA"]


# ---------------------------------------------------------------- shadow: published, never traded


async def test_shadow_targets_use_their_own_positions_and_never_become_signals(
    model_root, bus, all_series
) -> None:
    """Live: always flat. Shadow: the cycle from flat (loaded after the warm-up), one target
    per live bar, alone or in a batch; its targets never feed the live position."""
    h = harness(model_root, bus, all_series, "v-hold", strategy="alpha")
    await h.warm()
    assert h.service.load_shadow("v-cycle")["accepted"]
    first = {s: ser.first_live for s, ser in all_series.items()}
    for k in range(2):  # bar by bar
        for symbol, ser in all_series.items():
            h.service.handle_batch([ser.bar(first[symbol] + k)])
    for k in range(2, 4):  # batched
        h.service.handle_batch([ser.bar(first[s] + k) for s, ser in all_series.items()])
    for symbol in SYMBOLS:
        shadows = h.shadows(symbol)
        assert [s.target_position for s in shadows] == [cycled(k) for k in range(1, 5)]
        assert all(type(s) is ShadowTarget and s.model_version == "v-cycle" for s in shadows)
        assert all(s.strategy == "alpha" for s in shadows)
        assert [s.bar_seq for s in shadows] == [s.bar_seq for s in h.signals(symbol)]
        assert targets(h, symbol) == [0.0] * 4
        assert h.service.states[symbol].position == 0.0
    assert all(s.model_version == "v-hold" for s in h.signals())
    assert h.service.counters.shadow_signals == 12 and h.service.counters.signals == 12


async def test_a_shadow_loaded_before_the_warm_up_replays_it_too(model_root, bus, all_series):
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-hold")
    assert h.service.load_shadow("v-cycle")["accepted"]
    await h.warm()
    warm = ready_rows(aapl, aapl.first_live - SNAPSHOT, aapl.first_live)
    assert h.shadows() == []  # the replay publishes nothing
    h.service.on_bar(aapl.bar(aapl.first_live))
    assert [s.target_position for s in h.shadows()] == [cycled(warm + 1)]
    assert targets(h, "AAPL") == [0.0]


async def test_an_epoch_change_restarts_the_shadow_position_with_the_symbol(
    model_root, bus, all_series
) -> None:
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-hold", epoch=1)
    await h.warm()
    assert h.service.load_shadow("v-cycle")["accepted"]
    start = aapl.first_live
    h.end["AAPL"] = start + 1
    h.service.handle_batch([h.bar("AAPL", start)])
    assert [s.target_position for s in h.shadows()] == [1.0]
    h.epoch, h.end["AAPL"] = 2, start + 2
    h.service.handle_batch([h.bar("AAPL", start + 1)])  # re-warm from the new snapshot
    await h.settle()
    warm = ready_rows(aapl, start + 2 - SNAPSHOT, start + 2)
    # the replay signals the bar after the last signalled one; the shadow replays from flat
    assert [s.bar_close_ts for s in h.signals()] == [
        aapl.bar(i).ts_event for i in (start, start + 1)
    ]
    assert h.service.counters.epoch_changes == 1 and h.service.counters.caught_up_bars == 1
    assert h.service.states["AAPL"].epoch == 2
    h.service.handle_batch([h.bar("AAPL", start + 2)])
    assert h.shadows()[-1].target_position == cycled(warm + 1)
    assert h.service.model.version == "v-hold"
    h.epoch, h.end["AAPL"] = 3, start + 4  # a second restart: counted again
    h.service.handle_batch([h.bar("AAPL", start + 3)])
    await h.settle()
    assert h.service.counters.epoch_changes == 2 and h.service.states["AAPL"].epoch == 3


async def test_an_epoch_change_inside_a_batch_decides_the_queued_bar_before_the_reset(
    model_root, bus, all_series
) -> None:
    """The symbol's bar queued in the receive batch is decided (live and shadow) with the old
    state before the state and the shadow's position are dropped: the shadow then replays the
    new snapshot from flat, so its next target is the cycle after that replay."""
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-hold", epoch=1)
    await h.warm()
    assert h.service.load_shadow("v-cycle")["accepted"]
    start = aapl.first_live
    old_epoch_bar = h.bar("AAPL", start)
    h.epoch, h.end["AAPL"] = 2, start + 2
    h.service.handle_batch([old_epoch_bar, h.bar("AAPL", start + 1)])
    assert [s.bar_close_ts for s in h.shadows()] == [old_epoch_bar.ts_event]
    await h.settle()
    replayed = ready_rows(aapl, start + 2 - SNAPSHOT, start + 2)
    h.service.handle_batch([h.bar("AAPL", start + 2)])
    assert h.shadows()[-1].target_position == cycled(replayed + 1)
    assert h.signals()[-1].bar_close_ts == aapl.bar(start + 2).ts_event


async def test_a_clean_batch_builds_its_observations_as_one_block(
    model_root, bus, all_series, monkeypatch
) -> None:
    """The batch's observations are built in one block (no row-by-row fallback) when every
    row is finite; the targets are the per-symbol ones either way."""
    import inference.batching as batching_module

    built: list[int] = []
    one_by_one = batching_module.build_observation

    def counting(features, position):  # type: ignore[no-untyped-def]
        built.append(1)
        return one_by_one(features, position)

    h = harness(model_root, bus, all_series, "v-cycle")
    await h.warm()
    warm = {
        s: ready_rows(ser, ser.first_live - SNAPSHOT, ser.first_live)
        for s, ser in all_series.items()
    }
    monkeypatch.setattr(batching_module, "build_observation", counting)
    h.service.handle_batch([ser.bar(ser.first_live) for ser in all_series.values()])
    assert built == [] and h.service.counters.batched_calls == 1
    assert [(s.symbol, s.target_position) for s in h.signals()] == [
        (s, cycled(warm[s] + 1)) for s in SYMBOLS
    ]


# ---------------------------------------------------------------- batches, failures, logs


async def test_a_batch_of_two_is_one_call_and_a_failing_batch_call_decides_row_by_row(
    model_root, bus, all_series
) -> None:
    h = harness(model_root, bus, all_series, "v-cycle")
    await h.warm()
    warm = {
        s: ready_rows(ser, ser.first_live - SNAPSHOT, ser.first_live)
        for s, ser in all_series.items()
    }
    nvda, goog = all_series["NVDA"], all_series["GOOG"]
    h.service.handle_batch([nvda.bar(nvda.first_live), goog.bar(goog.first_live)])
    assert h.service.counters.batched_calls == 1 and h.service.counters.batched_bars == 2
    model = h.service.model

    def refuse(obs: np.ndarray) -> np.ndarray:
        raise RuntimeError("batched call failed")

    model.decide_batch = refuse  # type: ignore[method-assign]
    h.service.handle_batch([nvda.bar(nvda.first_live + 1), goog.bar(goog.first_live + 1)])
    assert h.service.counters.batched_calls == 1 and h.service.handler_errors == 0
    for symbol in ("NVDA", "GOOG"):
        assert targets(h, symbol) == [cycled(warm[symbol] + 1), cycled(warm[symbol] + 2)]


async def test_a_failure_on_one_bar_of_a_batch_costs_that_bar_only(
    model_root, bus, all_series, caplog
) -> None:
    h = harness(model_root, bus, all_series, "v-cycle")
    await h.warm()
    publish = h.service.bus.publisher.publish

    def publish_but_nvda(message):  # type: ignore[no-untyped-def]
        if isinstance(message, TargetPosition) and message.symbol == "NVDA":
            raise RuntimeError("injected publish failure")
        return publish(message)

    h.service.bus.publisher.publish = publish_but_nvda  # type: ignore[method-assign]
    h.service.handle_batch([ser.bar(ser.first_live) for ser in all_series.values()])
    assert [s.symbol for s in h.signals()] == ["AAPL", "GOOG"]
    assert h.service.handler_errors == 1
    (record,) = [r for r in caplog.records if r.getMessage() == "handler_failed"]
    assert record.fields == {"topic": "bar.NVDA"} and record.exc_info  # type: ignore[attr-defined]


async def test_refused_bars_and_epoch_changes_are_logged_with_their_fields(
    model_root, bus, all_series, caplog
) -> None:
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-cycle", epoch=1)
    await h.warm()
    start = aapl.first_live
    bad = msgspec.structs.replace(h.bar("AAPL", start), close=-1.0, low=-1.0)
    with pytest.raises(ValueError) as refused:
        FeaturePipeline().online().update(bad.open, bad.high, bad.low, bad.close, bad.volume)
    h.service.handle_batch([bad])
    (record,) = [r for r in caplog.records if r.getMessage() == "bar_refused"]
    assert record.levelno == logging.WARNING and record.name == "inference"
    fields = {"symbol": "AAPL", "seq": bad.seq, "error": str(refused.value)}
    assert record.fields == fields  # type: ignore[attr-defined]
    h.service.handle_batch([h.bar("AAPL", start)])
    last_ts = h.bar("AAPL", start).ts_event
    h.service.handle_batch([msgspec.structs.replace(h.bar("AAPL", start + 1), seq=10**6)])
    state_gaps = 10**6 - h.bar("AAPL", start).seq - 1
    h.epoch = 2
    h.service.handle_batch([h.bar("AAPL", start + 2)])
    (record,) = [r for r in caplog.records if r.getMessage() == "epoch_changed"]
    assert record.levelno == logging.WARNING
    assert record.fields == {  # type: ignore[attr-defined]
        "symbol": "AAPL",
        "old_epoch": 1,
        "new_epoch": 2,
        "last_ts": h.bar("AAPL", start + 1).ts_event,
        "gaps_reset": state_gaps,
    }
    assert last_ts < record.fields["last_ts"]  # type: ignore[attr-defined]
    await h.settle()


# ---------------------------------------------------------------- the shadow's own bookkeeping


async def test_the_shadow_is_told_each_symbols_continuity_breaks(
    model_root, bus, all_series
) -> None:
    """A stateful shadow restarts its state on a break: the service hands it the symbol's
    ``breaks`` count with every row (bar by bar, in a batch, in the warm-up replay)."""
    h = harness(model_root, bus, all_series, "v-hold")
    assert h.service.load_shadow("v-cycle")["accepted"]
    shadow = h.service.shadow
    assert shadow is not None
    calls: list[list[tuple[str, int]]] = []  # one list per call: (symbol, breaks) per row
    decide_batch = shadow.decide_batch
    refuse_batches = False

    def spy(symbols, rows, breaks=None):  # type: ignore[no-untyped-def]
        assert all(np.shape(r) == (SIZE - 1,) for r in rows)  # the feature rows
        calls.append(list(zip(symbols, breaks, strict=True)))
        if refuse_batches and len(symbols) > 1:
            raise RuntimeError("batched shadow call failed")
        return decide_batch(symbols, rows, breaks)

    shadow.decide_batch = spy  # type: ignore[method-assign]
    aapl, nvda = all_series["AAPL"], all_series["NVDA"]
    plain_bar = h.bar

    def bar_after_a_missing_session(symbol: str, i: int, **kw):  # type: ignore[no-untyped-def]
        bar = plain_bar(symbol, i, **kw)  # AAPL's stored bars skip one seq 10 bars back
        gap = symbol == "AAPL" and i >= aapl.first_live - 10
        return msgspec.structs.replace(bar, seq=bar.seq + 1) if gap else bar

    h.bar = bar_after_a_missing_session  # type: ignore[method-assign]
    await h.warm("AAPL")  # the replay crosses the gap: the rows after it carry breaks 1
    replayed = [row for call in calls for row in call]
    assert replayed[-10:] == [("AAPL", 1)] * 10 and set(replayed[:-10]) == {("AAPL", 0)}
    h.bar = plain_bar  # type: ignore[method-assign]
    await h.warm("NVDA")
    calls.clear()
    seq = aapl.bar(aapl.first_live - 1).seq + 1  # AAPL's last stored seq (after the gap)
    h.service.handle_batch([msgspec.structs.replace(aapl.bar(aapl.first_live), seq=seq + 3)])
    assert calls == [[("AAPL", 2)]]
    calls.clear()
    h.service.handle_batch(
        [
            msgspec.structs.replace(aapl.bar(aapl.first_live + 1), seq=seq + 6),
            nvda.bar(nvda.first_live),
        ]
    )
    assert calls == [[("AAPL", 3), ("NVDA", 0)]]  # one call for the batch
    calls.clear()
    refuse_batches = True  # the batched call fails: row by row, each with its breaks
    h.service.handle_batch(
        [
            msgspec.structs.replace(aapl.bar(aapl.first_live + 2), seq=seq + 7),
            nvda.bar(nvda.first_live + 1),
        ]
    )
    assert calls == [[("AAPL", 3), ("NVDA", 0)], [("AAPL", 3)], [("NVDA", 0)]]
    assert [s.symbol for s in h.shadows()] == ["AAPL", "AAPL", "NVDA", "AAPL", "NVDA"]


async def test_symbols_whose_shadow_is_warming_stay_silent_and_a_failed_batch_falls_back(
    model_root, bus, all_series, caplog
) -> None:
    h = harness(model_root, bus, all_series, "v-hold")
    await h.warm()
    assert h.service.load_shadow("v-cycle")["accepted"]
    shadow = h.service.shadow
    assert shadow is not None
    shadow.warming.add("NVDA")  # as while a stateful shadow replays NVDA's snapshot
    first = {s: ser.first_live for s, ser in all_series.items()}
    h.service.handle_batch([all_series["NVDA"].bar(first["NVDA"])])
    h.service.handle_batch([ser.bar(first[s] + 1) for s, ser in all_series.items()])
    assert [s.symbol for s in h.shadows()] == ["AAPL", "GOOG"]
    assert len(h.signals()) == 4
    shadow.warming.clear()

    def refuse(obs: np.ndarray) -> np.ndarray:
        raise RuntimeError("batched shadow call failed")

    shadow.model.decide_batch = refuse  # type: ignore[method-assign]
    h.service.handle_batch([ser.bar(first[s] + 2) for s, ser in all_series.items()])
    got = [(s.symbol, s.target_position) for s in h.shadows()[2:]]
    assert got == [("AAPL", -1.0), ("NVDA", 1.0), ("GOOG", -1.0)]  # each from its own position
    assert h.service.counters.shadow_errors == 0 and h.service.counters.shadow_signals == 5

    def broken(obs: np.ndarray) -> float:
        raise RuntimeError("candidate blew up")

    shadow.model.decide = broken  # type: ignore[method-assign]
    h.service.handle_batch([all_series["GOOG"].bar(first["GOOG"] + 3)])
    assert h.service.counters.shadow_errors == 1 and len(h.shadows()) == 5
    (record,) = [r for r in caplog.records if r.getMessage() == "shadow_failed"]
    assert record.fields == {"symbol": "GOOG"} and record.exc_info  # type: ignore[attr-defined]
    assert len(h.signals("GOOG")) == 3  # bars 1..3: the live decision never missed one


# ---------------------------------------------------------------- rendezvous sharding


async def test_a_rendezvous_replica_serves_only_after_its_grace_and_tracks_signals(
    model_root, bus, all_series
) -> None:
    h = harness(
        model_root, bus, all_series, "v-cycle", shard_mode="rendezvous",
        join_grace_s=600.0, peer_timeout_s=600.0,
    )  # fmt: skip
    sharding = h.service.sharding
    assert sharding is not None
    aapl, nvda, goog = (all_series[s] for s in SYMBOLS)
    h.service.handle_batch([aapl.bar(aapl.first_live)])  # joining: serves nothing yet
    assert sharding.symbols == {"AAPL"} and sharding.serves == set()
    assert h.service.counters.filtered_bars == 1 and h.service.counters.bars == 0
    sharding.started -= 1200.0  # the join grace is over (no clock in the test)
    h.service.handle_batch([aapl.bar(aapl.first_live + 1)])  # known, not served: no rebalance
    assert sharding.serves == set() and h.service.counters.filtered_bars == 2
    h.service.handle_batch([nvda.bar(nvda.first_live)])  # a new symbol: rebalance, both ours
    assert sharding.serves == {"AAPL", "NVDA"} and h.service.counters.bars == 1
    await h.settle()
    (signal,) = h.signals()
    assert signal.symbol == "NVDA" and sharding.last_signal_ts["NVDA"] == signal.bar_close_ts
    # a peer's signal and heartbeat inside a receive batch are recorded
    peer_signal = TargetPosition(
        symbol="GOOG", target_position=1.0, model_version="v", bar_seq=1,
        bar_close_ts=goog.bar(goog.first_live).ts_event, bar_close=1.0, strategy="rl",
        ts_event=goog.bar(goog.first_live).ts_event,
    )  # fmt: skip
    beat = msgspec.structs.replace(
        Heartbeat(service="inference", ready=True, detail={"serves": ["GOOG"], "joining": True}),
        producer="inference@peer:1:x",
    )
    h.service.handle_batch([peer_signal, nvda.bar(nvda.first_live + 1), beat])
    assert sharding.last_signal_ts["GOOG"] == peer_signal.bar_close_ts
    assert set(sharding.peers) == {"peer:1:x"} and "GOOG" in sharding.symbols
    alone = msgspec.structs.replace(beat, producer="inference@peer:2:y")
    h.service.handle_batch([alone])  # a heartbeat alone in its receive batch
    assert set(sharding.peers) == {"peer:1:x", "peer:2:y"} and h.service.handler_errors == 0
    assert [s.symbol for s in h.signals()] == ["NVDA", "NVDA"]


# ------------------------------------- a bug found by a mutant (fixed in _epoch_changed)


@pytest.mark.parametrize("signalled_before", [False, True])
async def test_an_epoch_change_inside_a_receive_batch_signals_each_bar_once(
    model_root, bus, all_series, signalled_before: bool
) -> None:
    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-cycle", epoch=1)
    await h.warm()
    start = aapl.first_live
    if signalled_before:
        h.service.handle_batch([h.bar("AAPL", start)])
        start += 1
    old_epoch_bar = h.bar("AAPL", start)
    h.epoch, h.end["AAPL"] = 2, start + 2  # marketdata restarted; it stored up to start + 1
    h.service.handle_batch([old_epoch_bar, h.bar("AAPL", start + 1)])
    await h.settle()
    got = [s.bar_close_ts for s in h.signals()]
    assert got == [aapl.bar(i).ts_event for i in range(aapl.first_live, start + 2)]


async def test_a_stateful_batch_carries_each_symbols_state_also_when_the_batched_call_fails(
    tmp_path: Path, bus: BusConnection, all_series
) -> None:
    """An LSTM policy (the trainer's export): bars decided in receive batches equal the same
    bars decided one by one, with each symbol's own state, also when the batched ONNX call
    fails and the batch is decided row by row."""
    from tests.recurrent_artifacts import stateful_artifact

    root = baseline_root(tmp_path)
    stateful_artifact(root, "lstm", "lstm-batch")
    symbols = {s: all_series[s] for s in ("AAPL", "NVDA")}
    (tmp_path / "single").mkdir()
    with inference_bus(tmp_path / "single") as bus2:
        batched = harness(root, bus, symbols, "lstm-batch")
        single = harness(root, bus2, symbols, "lstm-batch")
        await batched.warm()
        await single.warm()
        model = batched.service.model
        step = model.step

        def step_refusing_batches(obs, states):  # type: ignore[no-untyped-def]
            if len(obs) > 1 and refuse:
                raise RuntimeError("batched call failed")
            return step(obs, states)

        model.step = step_refusing_batches  # type: ignore[method-assign]
        for k in range(6):
            refuse = k >= 3
            bars = [ser.bar(ser.first_live + k) for ser in symbols.values()]
            batched.service.handle_batch(bars)
            for bar in bars:
                single.service.handle_batch([bar])
        assert batched.service.counters.batched_calls == 3 and batched.service.handler_errors == 0
        for s in symbols:
            assert targets(batched, s) == targets(single, s) and len(targets(single, s)) == 6
            a, b = batched.service.states[s].policy_state, single.service.states[s].policy_state
            assert a is not None and b is not None
            assert all(np.allclose(x, y, rtol=0, atol=1e-6) for x, y in zip(a, b, strict=True))


async def test_a_model_update_alone_in_its_receive_batch_is_applied(
    model_root, bus, all_series
) -> None:
    from shared.auth import sign
    from shared.messages import ModelUpdated

    aapl = all_series["AAPL"]
    h = harness(model_root, bus, {"AAPL": aapl}, "v-hold")
    await h.warm()
    sha = read_manifest(model_root / "v-cycle").onnx_sha256
    update = ModelUpdated(
        version="v-cycle", path="v-cycle", onnx_sha256=sha, ts_event=time.time_ns()
    )
    h.service.handle_batch([sign(update, bus.key)])
    assert h.service.model.version == "v-cycle" and h.service.handler_errors == 0


@pytest.mark.parametrize("batched", [False, True])
async def test_a_handler_failure_is_logged_with_the_bars_topic(
    model_root, bus, all_series, caplog, batched: bool
) -> None:
    aapl, nvda = all_series["AAPL"], all_series["NVDA"]
    h = harness(model_root, bus, {"AAPL": aapl, "NVDA": nvda}, "v-cycle")
    await h.warm()
    admit = h.service._admit

    def admit_failing_for_aapl(bar: Bar):  # type: ignore[no-untyped-def]
        if bar.symbol == "AAPL":
            raise RuntimeError("injected handler bug")
        return admit(bar)

    h.service._admit = admit_failing_for_aapl  # type: ignore[method-assign]
    if batched:
        h.service.handle_batch([aapl.bar(aapl.first_live), nvda.bar(nvda.first_live)])
    else:
        h.service.handle_batch([aapl.bar(aapl.first_live)])
        h.service.handle_batch([nvda.bar(nvda.first_live)])
    assert [s.symbol for s in h.signals()] == ["NVDA"] and h.service.handler_errors == 1
    (record,) = [r for r in caplog.records if r.getMessage() == "handler_failed"]
    assert record.fields == {"topic": "bar.AAPL"}  # type: ignore[attr-defined]


async def test_a_batch_whose_every_row_is_refused_fails_bar_by_bar_and_the_next_is_served(
    model_root, bus, all_series, caplog
) -> None:
    h = harness(model_root, bus, all_series, "v-cycle")
    await h.warm()
    for symbol in SYMBOLS:  # every symbol's next row holds a NaN (refused by the observation)
        features = h.service.states[symbol].features
        real_update = features.update
        poisoned = {"left": 1}

        def update(*bar: float, real=real_update, poisoned=poisoned):  # type: ignore[no-untyped-def]
            row = real(*bar)
            if poisoned["left"] and row is not None:
                poisoned["left"] -= 1
                row = row.copy()
                row[0] = math.nan
            return row

        features.update = update  # type: ignore[method-assign]
    h.service.handle_batch([ser.bar(ser.first_live) for ser in all_series.values()])
    assert h.signals() == [] and h.service.handler_errors == 3
    topics = [r.fields["topic"] for r in caplog.records if r.getMessage() == "handler_failed"]  # type: ignore[attr-defined]
    assert topics == [f"bar.{s}" for s in SYMBOLS]
    h.service.handle_batch([ser.bar(ser.first_live + 1) for ser in all_series.values()])
    assert [s.symbol for s in h.signals()] == list(SYMBOLS)
