"""A sharded inference replica paused (SIGSTOP) past the peer timeout, then resumed (SIGCONT):
the self-fence (rule 6 of ``inference.sharding``) keeps every bar at exactly one signal.

Three ``python -m inference`` replicas on a private bus (real forwarder, CURVE) split eight
symbols (the helpers of ``test_sharding_native``). The replica with the most symbols is stopped
between bars; a round of bars is published at once (queued in its SUB socket, to be caught up
by the survivors), the survivors take its share (read from their status: the probe that the
pause outlasted the peer timeout), two more rounds are published and the replica is resumed
(after ``PAUSE_S``) with those bars, the survivors' heartbeats and their signals waiting in its
socket. One more round
comes right after the resume, the three replicas converge again (the resumed one re-joined and
took its share back) and two last rounds follow. Every (symbol, bar) must have exactly one
signal, by the subscriber and by the replicas' own counters, and the resumed replica must have
counted a fence. Without the fence it decides the queued bars (or re-takes every symbol) and
signals are doubled.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from shared.auth import load_or_create_key
from shared.bus import Subscriber
from shared.messages import Bar, TargetPosition
from tests.conftest import bus_security
from tests.fake_marketdata import FakeMarketData
from tests.integration.test_sharding_native import (
    SYMBOLS,
    Replicas,
    assert_exactly_once,
    collect,
    handled,
    split_covers_all,
    wait_until,
)
from tests.model_artifacts import baseline_folder

pytestmark = pytest.mark.integration

PAUSE_S = 2.0  # the replica's pause: over three peer timeouts (0.6 s: heartbeats every 0.2 s)


def survivors_cover_all(replicas: Replicas, key: bytes, survivors: list[str]) -> bool:
    """The survivors together serve every symbol, each symbol once (the paused replica's
    share has been taken over: its peers expired it)."""
    serves = [set(replicas.status(name, key)["serves"]) for name in survivors]
    return set().union(*serves) == set(SYMBOLS) and sum(map(len, serves)) == len(SYMBOLS)


async def test_a_replica_paused_past_the_peer_timeout_fences_and_doubles_nothing(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    env = busproxy
    key = load_or_create_key(env["BUS_SECRET_FILE"])
    root = tmp_path / "models"
    shutil.copytree(baseline_folder(), root / "baseline" / baseline_folder().name)
    ctx = zmq.asyncio.Context()
    md = FakeMarketData(ctx, env, key, SYMBOLS)
    serve = asyncio.create_task(md.server.serve_forever())
    sub = Subscriber(
        ctx, env["BUS_SUB_ENDPOINT"], ["signal."], security=bus_security(env, "monitor")
    )
    replicas = Replicas(env, root, tmp_path)
    paused: int | None = None
    try:
        for i in range(3):
            replicas.start(f"r{i}")
        serves = await wait_until(lambda: split_covers_all(replicas, key), "3 replicas split")
        await wait_until(
            lambda: (md.republish_last(), all(v[0] > 0 for v in handled(replicas, key).values()))[
                1
            ],
            "bars reach every replica",
        )
        before = await asyncio.to_thread(handled, replicas, key)
        bars: list[Bar] = []
        signals: list[TargetPosition] = []
        bars += md.publish_round()  # every symbol signalled once before the pause

        victim = max(serves, key=lambda k: len(serves[k]))
        survivors = [name for name in serves if name != victim]
        paused = replicas.procs[victim].pid
        await collect(sub, signals, len(bars))  # between bars: the round is decided
        os.kill(paused, signal.SIGSTOP)
        stopped_at = time.monotonic()
        bars += md.publish_round()  # queued in the victim's socket; its share waits for a peer
        await wait_until(
            lambda: survivors_cover_all(replicas, key, survivors), "survivors took the share"
        )
        takeover_s = time.monotonic() - stopped_at
        bars += md.publish_round()  # decided by the survivors, queued for the victim too
        # the survivors have signalled both rounds (and the signals are queued for the victim)
        await collect(sub, signals, len(bars))
        # the scenario's pause length (not a readiness wait): a few peer timeouts at least
        await asyncio.sleep(max(0.0, PAUSE_S - (time.monotonic() - stopped_at)))
        bars += md.publish_round()
        await collect(sub, signals, len(bars))
        os.kill(paused, signal.SIGCONT)
        paused_s = time.monotonic() - stopped_at
        paused = None
        resumed_at = time.monotonic()
        bars += md.publish_round()  # right after the resume: the victim is fencing or joining
        after = await wait_until(lambda: split_covers_all(replicas, key), "the victim re-joined")
        rejoin_s = time.monotonic() - resumed_at
        assert after == serves, "the same replicas: the rendezvous split is the same again"
        for _ in range(2):
            bars += md.publish_round()
            await asyncio.sleep(0.02)

        # end marker: every replica took every bar off the bus; then the counters are final
        n = len(bars)
        counts = await wait_until(
            lambda: (h := handled(replicas, key))
            and all(h[k][0] >= before[k][0] + n for k in h)
            and h,
            "every replica handled every bar",
        )  # fmt: skip
        await collect(sub, signals, n)
        statuses = {name: replicas.status(name, key) for name in replicas.endpoints}
    finally:
        if paused is not None:
            os.kill(paused, signal.SIGCONT)  # a stopped process would not see the SIGTERM
        codes = replicas.stop()
        serve.cancel()
        md.close()
        ctx.destroy(linger=0)
    assert set(codes.values()) <= {0}, codes
    published = sum(counts[k][1] - before[k][1] for k in counts)
    fenced = [
        entry
        for line in (tmp_path / f"{victim}.log").read_text().splitlines()
        if line.startswith("{") and (entry := json.loads(line)).get("event") == "self_fenced"
    ]
    timeout = statuses[victim]["peer_timeout_s"]
    # the pause's fence: the longest silence (a busy host may add short ones past the timeout)
    fence = max(fenced, key=lambda e: e["silent_s"], default={})
    print(
        f"pause {paused_s:.2f} s (peer timeout {timeout} s): share taken over {takeover_s:.2f} s"
        f" after SIGSTOP; fence after {fence.get('silent_s')} s of silence; re-joined and split"
        f" settled {rejoin_s:.2f} s after SIGCONT; {n} bars, {published} signals published;"
        f" fences of the victim {statuses[victim]['self_fences']} (at the"
        f" {fence.get('where')}), of the survivors"
        f" {[statuses[k]['self_fences'] for k in survivors]}"
    )
    assert published == n, f"{published} signals for {n} bars: doubled or lost"
    assert_exactly_once(bars, signals)
    assert statuses[victim]["self_fences"] >= 1 and fence, "the resumed replica never fenced"
    assert fence["silent_s"] > timeout
    assert fence["released"] == sorted(serves[victim])  # its whole share, nothing published
