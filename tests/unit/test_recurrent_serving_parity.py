"""Inference serves LSTM and attention ONNX policies with per-symbol state (issue 15 item 1).

Artifacts are exported by the trainer's own code (seeded random weights); the reference is the
trainer's stateful backtest decider over the same bars. Bars go through the service's handler
(``handle_batch``) after a warm-up from a fake marketdata snapshot, as in production.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from inference.sharding import Peer, Sharding

from shared.feature_config import warmup_bars
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.runtime import BusConnection, connect_bus
from shared.stateful_model import StatefulModel
from tests.conftest import free_port
from tests.recurrent_artifacts import (
    Harness,
    backtest_targets,
    frame,
    model_root,
    series,
    stateful_artifact,
)

pytestmark = pytest.mark.unit

LIVE = 40  # live bars after the warm-up
KINDS = ["lstm", "attention"]


def _connect(tmp_path: Path) -> BusConnection:
    env = {
        "BUS_PUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SECRET_FILE": str(tmp_path / "bus.key"),
    }
    return connect_bus("inference", env)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    connection = _connect(tmp_path)
    yield connection
    connection.close()


@pytest.fixture
def bus2(tmp_path: Path) -> Iterator[BusConnection]:
    connection = _connect(tmp_path)
    yield connection
    connection.close()


def _state_close(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.allclose(x, y, rtol=0, atol=1e-6) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kind", KINDS)
async def test_live_signals_equal_the_trainers_stateful_backtest(
    kind: str, tmp_path: Path, bus: BusConnection
) -> None:
    root = model_root(tmp_path)
    folder = stateful_artifact(root, kind, f"{kind}-v1")
    h = Harness(root, bus, f"{kind}-v1", {"AAPL": series()})
    svc = h.service
    assert isinstance(svc.model, StatefulModel) and svc.model.kind == kind
    await svc.warm("AAPL")
    start = h.end["AAPL"]
    states = []
    for i in range(start, start + LIVE):
        svc.handle_batch([h.bar("AAPL", i)])
        states.append(svc.states["AAPL"].policy_state)
    n = svc.settings.snapshot_bars
    want, want_states = backtest_targets(folder, frame().iloc[start - n : start + LIVE])
    got = [s.target_position for s in h.signals("AAPL")]
    assert got == want[n:]  # discrete targets: exact
    assert len(set(got)) > 1, "a constant policy would make this comparison vacuous"
    for mine, ref in zip(states, want_states[n:], strict=True):
        assert mine is not None and _state_close(mine, ref)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_gap_restarts_the_state_from_zeros(
    kind: str, tmp_path: Path, bus: BusConnection
) -> None:
    root = model_root(tmp_path)
    folder = stateful_artifact(root, kind, f"{kind}-gap")
    h = Harness(root, bus, f"{kind}-gap", {"AAPL": series()})
    svc = h.service
    await svc.warm("AAPL")
    start = h.end["AAPL"]
    skipped = start + 10  # a missing session: its bar never arrives, seq jumps over it
    live = [i for i in range(start, start + 25) if i != skipped]
    states = []
    for i in live:
        svc.handle_batch([h.bar("AAPL", i)])
        states.append(svc.states["AAPL"].policy_state)
    assert svc.counters.seq_gaps == 1 and svc.counters.state_resets == 1
    n = svc.settings.snapshot_bars
    bars = frame().iloc[[*range(start - n, start), *live]]
    at = n + live.index(skipped + 1)  # the first bar after the gap
    fresh, fresh_states = backtest_targets(folder, bars, resets=(at,))
    _, carried_states = backtest_targets(folder, bars)
    assert [s.target_position for s in h.signals("AAPL")] == fresh[n:]
    for mine, ref in zip(states, fresh_states[n:], strict=True):
        assert mine is not None and _state_close(mine, ref)
    # the reset mattered: without it the state after the gap is another one
    assert not _state_close(states[at - n], carried_states[at])


async def test_a_backfill_run_within_an_epoch_restarts_the_state_once(
    tmp_path: Path, bus: BusConnection
) -> None:
    root = model_root(tmp_path)
    folder = stateful_artifact(root, "lstm", "lstm-backfill")
    h = Harness(root, bus, "lstm-backfill", {"AAPL": series()})
    svc = h.service
    await svc.warm("AAPL")
    start = h.end["AAPL"]
    backfilled = {start + 8, start + 9, start + 10}  # one run of bars that closed while away
    after_reset = None
    for i in range(start, start + 20):
        svc.handle_batch([h.bar("AAPL", i, backfill=i in backfilled)])
        if i == start + 8:
            after_reset = svc.states["AAPL"].policy_state
    assert svc.counters.state_resets == 1 and svc.counters.epoch_changes == 0
    n = svc.settings.snapshot_bars
    bars = frame().iloc[start - n : start + 20]
    fresh, fresh_states = backtest_targets(folder, bars, resets=(n + 8,))
    assert [s.target_position for s in h.signals("AAPL")] == fresh[n:]
    assert _state_close(svc.states["AAPL"].policy_state or [], fresh_states[-1])
    _, carried_states = backtest_targets(folder, bars)
    assert after_reset is not None and _state_close(after_reset, fresh_states[n + 8])
    assert not _state_close(after_reset, carried_states[n + 8])


@pytest.mark.parametrize("kind", KINDS)
async def test_an_epoch_change_rebuilds_the_state_from_the_new_snapshot(
    kind: str, tmp_path: Path, bus: BusConnection
) -> None:
    root = model_root(tmp_path)
    folder = stateful_artifact(root, kind, f"{kind}-epoch")
    # a snapshot just longer than the features' warm-up: the rebuilt state has only a few bars
    # behind it when the caught-up bars are decided, so the reset shows in the state
    n = warmup_bars(FeaturePipeline().config) + 8
    h = Harness(root, bus, f"{kind}-epoch", {"AAPL": series()}, snapshot_bars=n)
    svc = h.service
    await svc.warm("AAPL")
    start = h.end["AAPL"]
    for i in range(start, start + 10):
        h.end["AAPL"] = i + 1
        svc.handle_batch([h.bar("AAPL", i)])
    # marketdata restarts (epoch 2) with bars start+10..+14 stored while away
    h.epoch, h.end["AAPL"] = 2, start + 15
    svc.handle_batch([h.bar("AAPL", start + 10, backfill=True)])
    await h.settle()
    assert svc.counters.epoch_changes == 1
    states = []
    for i in range(start + 15, start + 30):
        svc.handle_batch([h.bar("AAPL", i)])
        states.append(svc.states["AAPL"].policy_state)
    reset_from = start + 15 - n  # the new epoch's snapshot: the state's (and features') start
    fresh, fresh_states = backtest_targets(folder, frame().iloc[reset_from : start + 30])
    got = [(s.bar_seq, s.target_position) for s in h.signals("AAPL")]
    # every bar after the last signalled one is signalled once: the caught-up ones too
    assert [seq for seq, _ in got] == [i + 1 for i in range(start, start + 30)]
    assert [t for _, t in got[10:]] == fresh[n - 5 :]
    for mine, ref in zip(states, fresh_states[n:], strict=True):
        assert mine is not None and _state_close(mine, ref)
    _, unreset_states = backtest_targets(folder, frame().iloc[start - n : start + 30])
    assert not _state_close(states[0], unreset_states[n + 15])  # the bar start+15 in both


async def test_a_newly_owned_symbol_rebuilds_the_state_from_the_snapshot(
    tmp_path: Path, bus: BusConnection
) -> None:
    """Re-shard: a peer served AAPL up to bar start+4 and left; this replica acquires it, replays
    the snapshot through the LSTM and signals the bars after the peer's last signal once."""
    root = model_root(tmp_path)
    folder = stateful_artifact(root, "lstm", "lstm-shard")
    h = Harness(root, bus, "lstm-shard", {"AAPL": series()})
    svc = h.service
    now = time.monotonic()
    svc.sharding = Sharding(me="me", started=now - 100, join_grace_s=1, peer_timeout_s=1000)
    svc.sharding.symbols.add("AAPL")
    svc.sharding.peers["peer"] = Peer("peer", now, frozenset({"AAPL"}), False)
    svc.rebalance()
    assert "AAPL" not in svc.sharding.serves  # the peer claims it
    start = h.end["AAPL"]
    svc.sharding.note_signal("AAPL", h.bar("AAPL", start + 4).ts_event)
    h.end["AAPL"] = start + 8  # marketdata stored bars up to start+7 meanwhile
    svc.sharding.peers.clear()  # the peer is gone
    svc.rebalance()
    assert "AAPL" in svc.sharding.serves
    await h.settle()
    for i in range(start + 8, start + 20):
        svc.handle_batch([h.bar("AAPL", i)])
    n = svc.settings.snapshot_bars
    want, want_states = backtest_targets(folder, frame().iloc[start + 8 - n : start + 20])
    signals = h.signals("AAPL")
    assert [s.bar_seq for s in signals] == [i + 1 for i in range(start + 5, start + 20)]
    assert [s.target_position for s in signals] == want[n - 3 :]
    assert _state_close(svc.states["AAPL"].policy_state or [], want_states[-1])


@pytest.mark.parametrize("kind", KINDS)
async def test_a_batch_equals_per_symbol_calls(
    kind: str, tmp_path: Path, bus: BusConnection, bus2: BusConnection
) -> None:
    root = model_root(tmp_path)
    stateful_artifact(root, kind, f"{kind}-batch")
    symbols = {"AAPL": series("AAPL"), "AMZN": series("AMZN")}
    batched = Harness(root, bus, f"{kind}-batch", symbols)
    single = Harness(root, bus2, f"{kind}-batch", symbols)
    for h in (batched, single):
        for symbol in symbols:
            await h.service.warm(symbol)
    start = dict(batched.end)
    for k in range(20):
        bars = [batched.bar(s, start[s] + k) for s in symbols]
        batched.service.handle_batch(bars)
        for bar in bars:
            single.service.handle_batch([bar])
        for s in symbols:
            a = batched.service.states[s].policy_state
            b = single.service.states[s].policy_state
            assert a is not None and b is not None and _state_close(a, b)
    assert batched.service.counters.batched_calls == 20
    assert single.service.counters.batched_calls == 0
    for s in symbols:
        assert [m.target_position for m in batched.signals(s)] == [
            m.target_position for m in single.signals(s)
        ]


@pytest.mark.parametrize("kind", KINDS)
def test_the_loader_step_equals_the_trainers_onnx_stepper(kind: str, tmp_path: Path) -> None:
    """Probabilities within 1e-6 over a sequence, state carried, two streams in one batch."""
    from trainer.policies.onnx import OnnxStepper

    folder = stateful_artifact(tmp_path, kind, f"{kind}-step", seed=4)
    model = load_artifact(folder)
    assert isinstance(model, StatefulModel)
    stepper = OnnxStepper((folder / "model.onnx").read_bytes(), model.manifest.policy)  # type: ignore[arg-type]
    rng = np.random.default_rng(7)
    seq = rng.normal(0, 1.5, (60, 2, model.size)).astype(np.float32)
    mine = [model.initial_state(), model.initial_state()]
    ref = stepper.initial_state(2, model.size)
    for t in range(len(seq)):
        out, mine = model.step_outputs(seq[t], mine)
        want, ref = stepper.step(seq[t], ref)
        p = np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
        q = np.exp(want) / np.exp(want).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="decides with step"):
        model.decide(seq[0, 0])
