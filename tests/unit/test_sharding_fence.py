"""The self-fence of ``inference.sharding`` (rule 6): a replica whose own last heartbeat is older
than the peer timeout releases everything, publishes nothing for it, re-joins with a new grace
and announces the empty set before any other heartbeat; the bookkeeping (pure, the clock passed
in) and its wiring in the service (``inference.membership``), the clock moved by shifting the
recorded heartbeat time back, as the other sharding tests shift ``started``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from inference.sharding import Sharding, owner
from marketdata.replay import SymbolSeries

from shared.messages import Heartbeat, TargetPosition
from shared.runtime import BusConnection
from tests.inference_harness import InferenceHarness, baseline_root, inference_bus, packaged_series

pytestmark = pytest.mark.unit

SYMBOLS = {f"S{i:03d}" for i in range(200)}
TIMEOUT = 3.0


def sharding(me: str, now: float = 0.0) -> Sharding:
    return Sharding(
        me=me, started=now, join_grace_s=2.0, peer_timeout_s=TIMEOUT, symbols=set(SYMBOLS)
    )


def hb(s: Sharding, now: float) -> dict:
    """``s``'s heartbeat detail as published at ``now`` (its sending time recorded)."""
    s.heartbeat_sent(now)
    return {"serves": sorted(s.serves), "joining": s.joining(now)}


# ---------------------------------------------------------------- bookkeeping


def test_the_fence_condition_is_the_peer_timeout_since_the_last_heartbeat_sent() -> None:
    me = sharding("a")
    assert not me.stale(1000.0) and me.fence(1000.0) is None  # no heartbeat yet: nobody counted it
    me.heartbeat_sent(10.0)
    for now in (10.0, 12.9, 10.0 + TIMEOUT):  # late, but within the timeout: a slow replica
        assert not me.stale(now) and me.fence(now) is None
    assert me.stale(13.01)


def test_a_peer_can_expire_a_replica_only_when_the_replica_is_stale_too() -> None:
    """The peer stamps a heartbeat when it receives it (a delay d after it was sent), so it
    never counts the replica silent for longer than the replica counts itself."""
    for delay in (0.0, 0.05, 0.5, 2.9):
        a, b = sharding("a"), sharding("b")
        b.on_heartbeat("inference@a", hb(a, 10.0), 10.0 + delay)
        for k in range(0, 200):
            now = 10.0 + k * 0.05
            if now - b.peers["a"].last_seen > b.peer_timeout_s:  # b's expiry condition
                assert a.stale(now), (delay, now)


def test_the_fence_releases_everything_forgets_the_peers_and_starts_a_new_grace() -> None:
    a, b = sharding("a"), sharding("b")
    a.on_heartbeat("inference@b", {"serves": [], "joining": False}, 2.5)
    a.reconcile(2.5)
    share = sorted(a.serves)
    assert share and len(share) < len(SYMBOLS)
    a.heartbeat_sent(2.5)
    released = a.fence(2.5 + TIMEOUT + 0.01)
    assert released == share
    assert a.serves == set() and a.peers == {} and a.self_fences == 1
    now = 2.5 + TIMEOUT + 0.5
    assert a.joining(now) and not a.reconcile(now)  # a new replica: serves nothing in its grace
    view = a.describe(now)
    assert view["serves"] == [] and view["joining"] and view["self_fences"] == 1
    assert b.self_fences == 0


def test_after_a_pause_the_share_moves_once_and_comes_back_once() -> None:
    """Two replicas split the symbols; ``a`` is paused past the timeout, ``b`` takes its share
    and signals; ``a`` resumes, fences, hears what queued up, and takes its share back only
    after ``b`` released it, with ``b``'s last signal as its catch-up threshold. At no step do
    the two serve a symbol at the same time."""
    a, b = sharding("a"), sharding("b")

    def disjoint() -> None:
        assert not (a.serves & b.serves)

    a.on_heartbeat("inference@b", hb(b, 2.5), 2.5)
    b.on_heartbeat("inference@a", hb(a, 2.5), 2.5)
    a.reconcile(2.5), b.reconcile(2.5)
    disjoint()
    share_a = set(a.serves)
    assert share_a | b.serves == SYMBOLS and share_a == {
        s for s in SYMBOLS if owner(s, {"a", "b"}) == "a"
    }
    a.on_heartbeat("inference@b", hb(b, 3.0), 3.0)
    b.on_heartbeat("inference@a", hb(a, 3.0), 3.0)  # a's last heartbeat before the pause
    # a is paused; b keeps beating, expires a and takes its share (catch-up: signals)
    t = 3.0
    while not b.expire(t):
        b.heartbeat_sent(t)
        t += 0.05
    taken = b.reconcile(t)
    assert set(taken.acquired) == share_a and b.serves == SYMBOLS
    for symbol in SYMBOLS:
        b.note_signal(symbol, 100)
    b_beat = hb(b, t)
    # a resumes (later): the fence comes before anything it queued is handled
    t += 1.0
    assert a.stale(t)
    assert set(a.fence(t) or ()) == share_a
    disjoint()
    b.on_heartbeat("inference@a", hb(a, t), t)  # the empty set, joining
    assert not b.reconcile(t)  # a joining owns nothing: b keeps everything
    a.on_heartbeat("inference@b", b_beat, t)  # queued in a's socket: b's heartbeat and signals
    for symbol in SYMBOLS:
        a.note_signal(symbol, 100)
    assert not a.reconcile(t + 1.0)  # still in its new grace
    # a's grace ends: b still claims a's share, so a waits for b's release
    t += a.join_grace_s + 0.01
    a.on_heartbeat("inference@b", hb(b, t), t)
    assert not a.reconcile(t) and a.serves == set()
    b.on_heartbeat("inference@a", hb(a, t), t)  # a past its grace: a member again
    released = b.reconcile(t)
    assert set(released.released) == share_a and not released.acquired
    disjoint()
    a.on_heartbeat("inference@b", hb(b, t), t)
    back = a.reconcile(t)
    assert set(back.acquired) == share_a and a.serves == share_a
    disjoint()
    assert {a.last_signal_ts[s] for s in share_a} == {100}  # catch-up after b's last signal
    assert a.self_fences == 1 and b.self_fences == 0


# ---------------------------------------------------------------- wiring in the service

PAUSE = 600.0  # the test's peer timeout; the "pause" shifts the last heartbeat by more


@pytest.fixture(scope="module")
def aapl() -> SymbolSeries:
    return packaged_series("AAPL")


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    with inference_bus(tmp_path) as connection:
        yield connection


async def serving(tmp_path: Path, bus: BusConnection, aapl: SymbolSeries) -> InferenceHarness:
    """A rendezvous replica alone, past its grace, serving AAPL (warm), a heartbeat sent."""
    h = InferenceHarness(
        baseline_root(tmp_path), bus, aapl, snapshot_bars=120, shard_mode="rendezvous",
        join_grace_s=PAUSE, peer_timeout_s=PAUSE,
    )  # fmt: skip
    sharding = shard(h)
    sharding.symbols.add("AAPL")
    sharding.started -= 2 * PAUSE
    h.service.rebalance()
    await h.settle()
    assert sharding.serves == {"AAPL"} and h.of(Heartbeat)[-1].detail["serves"] == ["AAPL"]
    return h


def shard(h: InferenceHarness) -> Sharding:
    sharding = h.service.sharding
    assert sharding is not None
    return sharding


def pause(h: InferenceHarness, seconds: float) -> None:
    """As if the process had been stopped for ``seconds`` since its last heartbeat."""
    sharding = shard(h)
    assert sharding.last_heartbeat is not None
    sharding.last_heartbeat -= seconds


def beats(h: InferenceHarness, since: int) -> list[dict]:
    return [m.detail for m in h.published[since:] if isinstance(m, Heartbeat)]


async def test_a_slow_replica_within_the_timeout_keeps_deciding(tmp_path, bus, aapl) -> None:
    h = await serving(tmp_path, bus, aapl)
    pause(h, PAUSE - 60.0)  # late by most of the timeout
    h.service.handle_batch([aapl.bar(aapl.first_live)])
    assert len(h.signals()) == 1 and shard(h).self_fences == 0
    assert h.service.heartbeat_detail()["serves"] == ["AAPL"]


async def test_bars_queued_during_a_pause_are_not_decided(tmp_path, bus, aapl) -> None:
    h = await serving(tmp_path, bus, aapl)
    sharding = shard(h)
    h.service.handle_batch([aapl.bar(aapl.first_live)])
    assert len(h.signals()) == 1
    pause(h, PAUSE + 1.0)
    since = len(h.published)
    h.service.handle_batch([aapl.bar(aapl.first_live + 1)])  # alone: the single-bar path
    h.service.handle_batch([aapl.bar(aapl.first_live + 2), aapl.bar(aapl.first_live + 3)])
    assert len(h.signals()) == 1, "a bar queued during the pause was decided"
    assert isinstance(h.published[since], Heartbeat)  # announced at once, before anything else
    (detail,) = beats(h, since)
    assert detail["serves"] == [] and detail["joining"] and detail["self_fences"] == 1
    assert sharding.serves == set() and "AAPL" not in h.service.states
    assert h.service.counters.filtered_bars == 3


@pytest.mark.parametrize("first", ["heartbeat_loop", "publish_heartbeat", "membership_tick"])
async def test_no_heartbeat_after_a_pause_lists_the_serves_of_before(
    tmp_path, bus, aapl, first: str
) -> None:
    """Whichever task the event loop wakes first after the pause."""
    h = await serving(tmp_path, bus, aapl)
    pause(h, PAUSE + 1.0)
    since = len(h.published)
    if first == "heartbeat_loop":
        assert h.service.heartbeat_detail()["serves"] == []
    elif first == "publish_heartbeat":
        h.service.publish_heartbeat()
    else:
        task = asyncio.create_task(h.service.membership())
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
    got = beats(h, since)
    assert got and all(d["serves"] == [] and d["joining"] for d in got), got
    assert shard(h).self_fences == 1


async def test_a_warm_up_resumed_after_a_pause_publishes_nothing(tmp_path, bus, aapl) -> None:
    h = await serving(tmp_path, bus, aapl)
    sharding = shard(h)
    h.end["AAPL"] = aapl.first_live + 3  # the snapshot holds 3 bars after the last signal
    h.service._reset_symbol("AAPL", aapl.bar(aapl.first_live - 1).ts_event)  # a catch-up warm-up
    pause(h, PAUSE + 1.0)  # paused while its snapshot request was out
    await h.settle()
    assert h.signals() == [] and sharding.self_fences == 1 and sharding.serves == set()


async def test_re_joining_after_a_fence_catches_up_after_the_successors_last_signal(
    tmp_path, bus, aapl
) -> None:
    h = await serving(tmp_path, bus, aapl)
    sharding = shard(h)
    live = aapl.first_live
    h.service.handle_batch([aapl.bar(live)])
    pause(h, PAUSE + 1.0)
    # queued during the pause: bars, the successor's heartbeat and its signals for them
    successor = "inference@peer:1:x"
    beat = msgspec.structs.replace(
        Heartbeat(service="inference", ready=True, detail={"serves": ["AAPL"]}), producer=successor
    )
    signals = [
        TargetPosition(
            symbol="AAPL",
            target_position=0.0,
            model_version="v",
            bar_seq=aapl.bar(i).seq,
            bar_close_ts=aapl.bar(i).ts_event,
            bar_close=1.0,
            strategy="rl",
            ts_event=aapl.bar(i).ts_event,
        )
        for i in (live + 1, live + 2)
    ]
    h.service.handle_batch([aapl.bar(live + 1), beat, signals[0], aapl.bar(live + 2), signals[1]])
    assert len(h.signals()) == 1 and sharding.self_fences == 1
    sharding.started -= 2 * PAUSE  # the new grace is over: the successor still claims AAPL
    h.service.rebalance()
    assert sharding.serves == set()
    h.end["AAPL"] = live + 4  # marketdata stored bars live+3 (unsignalled) meanwhile
    leaving = msgspec.structs.replace(beat, detail={"serves": [], "leaving": True})
    h.service.handle_batch([leaving])  # the successor hands over: AAPL is ours again
    await h.settle()
    assert sharding.serves == {"AAPL"}
    got = [s.bar_close_ts for s in h.signals()]
    assert got == [aapl.bar(live).ts_event, aapl.bar(live + 3).ts_event]  # none twice, none lost
