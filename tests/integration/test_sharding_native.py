"""Sharded inference replicas as separate processes on a private bus (real forwarder, CURVE).

The test plays marketdata (``status``, ``snapshot`` and the bars, see ``test_inference_e2e``)
for eight symbols and starts 1, 2 or 3 ``python -m inference`` replicas with
``INFERENCE_SHARD_MODE=rendezvous`` (each its own command endpoint, one CURVE identity). It checks
that the replicas split the symbols (every symbol served by exactly one, by their heartbeats) and
that every bar of the stream gets exactly one signal; and, with three replicas, that after one is
SIGKILLed between bars the survivors take its share and every later bar again gets exactly one
signal, while bars keep coming every ``BAR_INTERVAL_S`` (the first right after the kill): no
symbol waits longer than one bar interval for its signal, by the messages' own timestamps.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from shared.auth import load_or_create_key
from shared.bus import Subscriber
from shared.command_channel import CommandError, call
from shared.messages import Bar, TargetPosition
from tests.conftest import bus_security, free_port
from tests.fake_marketdata import FakeMarketData
from tests.model_artifacts import baseline_folder

pytestmark = pytest.mark.integration

SYMBOLS = [f"S{i}" for i in range(8)]
BASELINE = baseline_folder().name
HB_S = 0.2  # heartbeat interval: join grace 0.4 s, peer timeout 0.6 s
BAR_INTERVAL_S = 3.0  # the bar clock while a replica is killed (bars of a minute in production)
HANDOVER_ROUNDS = 4


class Replicas:
    def __init__(self, env: dict[str, str], root: Path, logs: Path) -> None:
        self.env, self.root, self.logs = env, root, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.endpoints: dict[str, str] = {}

    def start(self, name: str) -> None:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        env = {
            **os.environ, **self.env, "PYTHONUNBUFFERED": "1",
            "INFERENCE_CMD_ENDPOINT": endpoint, "INFERENCE_MODEL_DIR": str(self.root),
            "INFERENCE_SHARD_MODE": "rendezvous", "INFERENCE_SNAPSHOT_BARS": "250",
            "BUS_HEARTBEAT_INTERVAL_S": str(HB_S),
            "INFERENCE_SHARD_BAR_INTERVAL_S": str(BAR_INTERVAL_S),  # checked at start
        }  # fmt: skip
        log = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "inference"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.endpoints[name] = endpoint

    def status(self, name: str, key: bytes) -> dict[str, Any]:
        return call(self.endpoints[name], "status", {}, key, timeout_s=5.0, server="inference")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        del self.endpoints[name]

    def stop(self) -> dict[str, int]:
        for proc in self.procs.values():
            proc.terminate()
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes


async def wait_until(predicate: Any, what: str, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def split_covers_all(replicas: Replicas, key: bytes) -> dict[str, set[str]] | None:
    """Each replica's served set, once they partition the symbols, every served symbol is warm
    and no replica still counts a peer as joining (the sets would change when it hears the
    peer's first heartbeat past its grace: seen in the stability loop as a symbol handed over
    after this returned); None before."""
    serves: dict[str, set[str]] = {}
    views: dict[str, dict[str, set[str]]] = {}
    statuses = {}
    for name in replicas.endpoints:
        try:
            statuses[name] = replicas.status(name, key)
        except CommandError:
            return None
    replica_of = {st["replica"]: name for name, st in statuses.items()}
    for name in replicas.endpoints:
        status = statuses[name]
        if status.get("joining") or len(status.get("peers", {})) != len(replicas.endpoints) - 1:
            return None
        if status.get("peers_joining"):  # a hand-over to a peer is still to come
            return None
        mine = set(status.get("serves", []))
        symbols = status["symbols"]
        if not all(symbols.get(s, {}).get("warm") and symbols[s]["features_ready"] for s in mine):
            return None
        serves[name] = mine
        views[name] = {replica_of[p]: set(v) for p, v in status["peers"].items() if p in replica_of}
    for name, view in views.items():  # converged: every replica sees the others' real sets
        if view != {k: v for k, v in serves.items() if k != name}:
            return None
    union = set().union(*serves.values())
    if union != set(SYMBOLS) or sum(len(s) for s in serves.values()) != len(SYMBOLS):
        return None
    return serves


def handled(replicas: Replicas, key: bytes) -> dict[str, tuple[int, int]]:
    """Per replica: bars taken off the bus (admitted, filtered, or dropped as duplicates), and
    signals published."""
    out = {}
    for name in replicas.endpoints:
        status = replicas.status(name, key)
        c = status["counters"]
        out[name] = (c["bars"] + c["filtered_bars"] + status["bus"]["duplicates"], c["signals"])
    return out


async def collect(sub: Subscriber, signals: list[TargetPosition], want: int) -> None:
    deadline = time.monotonic() + 60
    while len(signals) < want:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(signals)} of {want} signals"
        message = await asyncio.wait_for(sub.recv(), remaining)
        if isinstance(message, TargetPosition):
            signals.append(message)


async def stream(
    md: FakeMarketData, replicas: Replicas, key: bytes, sub: Subscriber, rounds: int
) -> list[tuple[list[Bar], list[TargetPosition]]]:
    """Publish ``rounds`` rounds; wait until every replica took every bar off the bus; return
    the bars and the signals received for them."""
    before = await asyncio.to_thread(handled, replicas, key)
    signals: list[TargetPosition] = []
    bars: list[Bar] = []
    for _ in range(rounds):
        bars += md.publish_round()
        await asyncio.sleep(0.02)
    await collect(sub, signals, len(bars))
    n = len(bars)
    after = await wait_until(
        lambda: (h := handled(replicas, key)) and all(h[k][0] >= before[k][0] + n for k in h) and h,
        "every replica handled the stream",
    )
    # what the replicas published, by their own counters: a doubled signal still in flight
    # would show here even if the subscriber has not received it yet
    assert sum(after[k][1] - before[k][1] for k in after) == n
    return [(bars, signals)]


async def paced_stream(
    md: FakeMarketData, sub: Subscriber, rounds: int
) -> tuple[list[Bar], list[TargetPosition]]:
    """``rounds`` rounds, the first at once and then one every BAR_INTERVAL_S (the bar clock,
    not a readiness wait); returns the bars and every signal for them."""
    bars: list[Bar] = []
    signals: list[TargetPosition] = []
    for i in range(rounds):
        if i:
            await asyncio.sleep(BAR_INTERVAL_S)
        bars += md.publish_round()
    await collect(sub, signals, len(bars))
    return bars, signals


def assert_exactly_once(bars: list[Bar], signals: list[TargetPosition]) -> None:
    want = Counter((b.symbol, b.ts_event) for b in bars)
    got = Counter((s.symbol, s.bar_close_ts) for s in signals)
    assert got == want, {
        "missing": sorted(set(want) - set(got))[:5],
        "doubled": sorted(k for k, v in got.items() if v > 1)[:5],
        "unexpected": sorted(set(got) - set(want))[:5],
    }
    assert {s.model_version for s in signals} == {BASELINE}


async def run_stack(busproxy: dict[str, str], tmp_path: Path, n: int, kill: bool) -> None:
    env = busproxy
    key = load_or_create_key(env["BUS_SECRET_FILE"])
    root = tmp_path / "models"
    shutil.copytree(baseline_folder(), root / "baseline" / BASELINE)
    ctx = zmq.asyncio.Context()
    md = FakeMarketData(ctx, env, key, SYMBOLS)
    serve = asyncio.create_task(md.server.serve_forever())
    sub = Subscriber(
        ctx, env["BUS_SUB_ENDPOINT"], ["signal."],
        security=bus_security(env, "monitor"),
    )  # fmt: skip
    replicas = Replicas(env, root, tmp_path)
    try:
        for i in range(n):
            replicas.start(f"r{i}")
        serves = await wait_until(lambda: split_covers_all(replicas, key), f"{n} replicas split")
        assert len(serves) == n
        # readiness of the bar path: an already-seen bar reaches every replica
        await wait_until(
            lambda: (md.republish_last(), all(v[0] > 0 for v in handled(replicas, key).values()))[
                1
            ],
            "bars reach every replica",
        )
        [(bars, signals)] = await stream(md, replicas, key, sub, 5)
        assert_exactly_once(bars, signals)
        if not kill:
            return
        victim = max(serves, key=lambda k: len(serves[k]))
        lost = serves[victim]
        last_signal = {s.symbol: s.ts_publish for s in signals if s.symbol in lost}
        replicas.kill(victim)  # between bars: every bar so far has its signal
        before = await asyncio.to_thread(handled, replicas, key)  # the survivors' counters
        # the bar clock goes on at once: the first round arrives right after the death (the
        # worst case for the hand-over), the next ones every BAR_INTERVAL_S
        bars, signals = await paced_stream(md, sub, HANDOVER_ROUNDS)
        n = len(bars)
        after_counts = await wait_until(
            lambda: (h := handled(replicas, key)) and all(h[k][0] >= before[k][0] + n for k in h)
            and h,
            "every survivor handled the paced stream",
        )  # fmt: skip
        # by the survivors' own counters: a doubled signal still in flight would show here
        assert sum(after_counts[k][1] - before[k][1] for k in after_counts) == n
        after = await wait_until(lambda: split_covers_all(replicas, key), "survivors took over")
        assert set().union(*after.values()) == set(SYMBOLS)
        for name, mine in after.items():
            assert serves[name] <= mine, "a survivor lost a symbol it served: more than its share"
        assert set().union(*(after[k] - serves[k] for k in after)) == lost
        assert_exactly_once(bars, signals)
        # No symbol unserved for more than one bar interval, from the messages' own stamps: each
        # bar's signal (the dead replica's symbols' first ones included) is published within one
        # bar interval of the bar's publication, before the next bar of that symbol arrives
        published = {(b.symbol, b.ts_event): b.ts_publish for b in bars}
        waited = [(s.symbol, (s.ts_publish - published[(s.symbol, s.bar_close_ts)]) / 1e9)
                  for s in signals]  # fmt: skip
        late = [w for w in waited if w[1] > BAR_INTERVAL_S]
        worst = max(w for _, w in waited)
        first_after = {}
        for s in signals:
            if s.symbol in lost:
                first_after[s.symbol] = min(first_after.get(s.symbol, s.ts_publish), s.ts_publish)
        gaps = {sym: (first_after[sym] - last_signal[sym]) / 1e9 for sym in lost}
        print(
            f"hand-over: bar interval {BAR_INTERVAL_S} s, heartbeat {HB_S} s; first signal"
            f" after its bar {worst:.3f} s (worst); dead replica's last -> survivor's first"
            f" signal {max(gaps.values()):.3f} s (worst; first bar right after the kill)"
        )
        assert not late, (late, BAR_INTERVAL_S)
        statuses = {name: replicas.status(name, key) for name in replicas.endpoints}
        assert sum(s["handovers"] for s in statuses.values()) == len(lost), {
            "lost": sorted(lost), "before": {k: sorted(v) for k, v in serves.items()},
            "survivors": {k: (s["serves"], s["handovers"]) for k, s in statuses.items()},
            "acquired": {k: [line for line in (tmp_path / f"{k}.log").read_text().splitlines()
                             if "symbol_acquired" in line or "symbol_released" in line]
                         for k in [*statuses, victim]},
        }  # fmt: skip
    finally:
        codes = replicas.stop()
        serve.cancel()
        md.close()
        sub.close()
        ctx.destroy(linger=0)
    assert set(codes.values()) <= {0}, codes


@pytest.mark.parametrize("n", [1, 2, 3])
async def test_sharding_covers_every_symbol_exactly_once(
    busproxy: dict[str, str], tmp_path: Path, n: int
) -> None:
    await run_stack(busproxy, tmp_path, n, kill=False)


async def test_sharding_replica_killed_between_bars_loses_and_doubles_nothing(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    await run_stack(busproxy, tmp_path, 3, kill=True)
