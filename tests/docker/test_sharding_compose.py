"""``docker compose up --scale inference=2``: the replicas split the symbols (rendezvous hashing,
``inference.sharding``), every bar gets exactly one signal, and when one replica is killed the
other takes its share and every later bar again gets exactly one signal.

Its own compose project (``rltrader-shard-<random>``), only the services the signal path needs
(bus, ibsim, marketdata, inference x2), torn down with ``down -v`` whatever happens. The helpers
(engine set-up, ``Stack``, ``_wait``) are ``test_compose``'s.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from test_compose import LOCAL_BASE_IMAGE, Stack, _ensure_engine, _run, _wait

pytestmark = pytest.mark.docker

SERVICES = ["bus", "ibsim", "marketdata", "inference"]
STARTUP_LIMIT_S = 240
SPLIT_LIMIT_S = 60  # replicas agree on a split (join grace + a few heartbeats)
COLLECT_S = 20  # how long signals are collected per phase (a window, not a readiness wait)

# Collect signal.* for a fixed window; prints [[producer, symbol, bar_close_ts], ...].
COLLECT_PROBE = """
import json, sys, time
import zmq
from shared.bus import security_from_env
from shared.config import bus_settings
from shared.messages import TargetPosition, decode
window = float(sys.argv[1])
sock = zmq.Context.instance().socket(zmq.SUB)
sock.setsockopt(zmq.LINGER, 0)
security_from_env("monitor").client(sock, "bus")
sock.connect(bus_settings().sub_endpoint)
sock.setsockopt(zmq.SUBSCRIBE, b"signal.")
seen = []
deadline = time.monotonic() + window
while time.monotonic() < deadline:
    if sock.poll(200):
        m = decode(sock.recv_multipart()[-1])
        if isinstance(m, TargetPosition):
            seen.append([m.producer, m.symbol, m.bar_close_ts])
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    _ensure_engine()
    env = dict(os.environ)
    if "BASE_IMAGE" not in env:
        local = subprocess.run(
            ["docker", "image", "inspect", LOCAL_BASE_IMAGE], capture_output=True
        )
        env["BASE_IMAGE"] = LOCAL_BASE_IMAGE if local.returncode == 0 else "python:3.11-slim"
    env["RLTRADER_TAG"] = os.environ.get("RLTRADER_TAG", "test")
    env.pop("COMPOSE_PROJECT_NAME", None)
    s = Stack(f"rltrader-shard-{uuid.uuid4().hex[:8]}", env)
    try:
        s.compose("build", "keygen", timeout=1800)  # the one light image every service runs
        # no --wait: the simulator's own healthcheck is not what this test is about; the
        # replicas are healthy only once marketdata (hence ibsim) is
        s.compose("up", "-d", "--scale", "inference=2", *SERVICES, timeout=STARTUP_LIMIT_S)
        s.wait_healthy("inference", STARTUP_LIMIT_S, count=2)
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.compose("down", "-v", "--remove-orphans", "-t", "10", timeout=300, check=False)


def statuses(stack: Stack) -> dict[str, dict[str, Any]]:
    out = {}
    for cid in stack.container_ids("inference"):
        reply = stack.command("inference", "status", container=cid)
        assert reply["ok"], reply
        out[cid] = reply["result"]
    return out


def symbols(stack: Stack) -> set[str]:
    reply = stack.command("marketdata", "status", via="bus")
    assert reply["ok"], reply
    return set(reply["result"]["symbols"])


def agreed_split(stack: Stack, replicas: int, want: set[str]) -> dict[str, set[str]] | None:
    """Each replica's served set, once they partition ``want``, see each other's sets and none
    still counts a peer as joining (a hand-over to that peer would still be to come)."""
    st = statuses(stack)
    if len(st) != replicas or any(s.get("joining") or s.get("peers_joining") for s in st.values()):
        return None
    serves = {cid: set(s.get("serves", [])) for cid, s in st.items()}
    by_replica = {s["replica"]: cid for cid, s in st.items()}
    for cid, s in st.items():
        view = {by_replica.get(r): set(v) for r, v in s.get("peers", {}).items()}
        if view != {k: v for k, v in serves.items() if k != cid}:
            return None
    if set().union(*serves.values()) != want or sum(map(len, serves.values())) != len(want):
        return None
    return serves


def collect(stack: Stack) -> list[tuple[str, str, int]]:
    rows = stack.exec_py("marketdata", COLLECT_PROBE, str(COLLECT_S), timeout=COLLECT_S + 60)
    return [(p, s, int(t)) for p, s, t in rows]


def assert_exactly_once(signals: list[tuple[str, str, int]], want: set[str]) -> None:
    per_bar = Counter((s, t) for _, s, t in signals)
    doubled = {k: n for k, n in per_bar.items() if n > 1}
    assert not doubled, f"bars signalled more than once: {doubled}"
    assert {s for _, s, _ in signals} == want, "a symbol got no signal at all"
    owners: dict[str, set[str]] = {}
    for producer, symbol, _ in signals:
        owners.setdefault(symbol, set()).add(producer)
    assert all(len(p) == 1 for p in owners.values()), f"a symbol served by two: {owners}"


def test_scaled_replicas_split_the_symbols_and_survive_a_kill(stack: Stack) -> None:
    want = _wait("marketdata announces its symbols", SPLIT_LIMIT_S, lambda: symbols(stack))
    serves = _wait(
        "2 replicas agree on a split", SPLIT_LIMIT_S, lambda: agreed_split(stack, 2, want)
    )
    assert len(serves) == 2
    assert_exactly_once(collect(stack), want)
    victim = max(serves, key=lambda c: len(serves[c]))
    _run(["docker", "kill", victim])
    t0 = time.monotonic()
    # the survivor took the whole set (restart policy: the killed one may come back; either way
    # the set is covered exactly once again)
    _wait(
        "the symbols covered again after the kill",
        SPLIT_LIMIT_S,
        lambda: agreed_split(stack, len(stack.container_ids("inference")), want),
    )
    handover_s = time.monotonic() - t0
    signals = collect(stack)
    assert_exactly_once(signals, want)
    print(json.dumps({"handover_s": round(handover_s, 1), "signals_after_kill": len(signals)}))
