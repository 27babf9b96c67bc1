"""Bus throughput: msgpack bars through the real forwarder to a subscriber in another process.

Baseline in the same run: the same bars as JSON (stdlib ``json``) over the same sockets.
``bench`` runs it on a CURVE forwarder (``BUS_CURVE=1``: publisher with the marketdata key,
subscriber with the monitor key, frames ``[topic, identity, payload]``) and on a plain one
(``BUS_CURVE=0``), everything else equal, and reports the cost of CURVE as their ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import zmq

from bench.common import rate_row
from shared.bus import security_from_env
from shared.messages import Bar, encode

ROOT = Path(__file__).resolve().parents[1]

_RECEIVER = r"""
import os, sys, time, zmq
from shared.bus import security_from_env
endpoint, n = sys.argv[1], int(sys.argv[2])
ctx = zmq.Context(); sock = ctx.socket(zmq.SUB); sock.setsockopt(zmq.RCVHWM, 0)
security = security_from_env("monitor", os.environ)
if security is not None:
    security.client(sock, "bus")
sock.connect(endpoint); sock.setsockopt(zmq.SUBSCRIBE, b"bar.")
print("ready", flush=True)
first = None
decode = None
if sys.argv[3] == "msgpack":
    from shared.messages import decode
else:
    import json; decode = json.loads
got = 0
last = time.perf_counter()
while got < n:
    if not sock.poll(10_000):  # a frame dropped past a high-water mark: report what arrived
        break
    payload = sock.recv_multipart()[-1]
    last = time.perf_counter()
    if first is None:
        first = last
    decode(payload)
    got += 1
print(got / (last - first), got, flush=True)
"""


def synthetic_bars(n: int) -> list[Bar]:
    return [
        Bar(
            symbol="AAPL",
            timeframe="1d",
            bar_open_ts=i,
            open=100.0 + i * 1e-3,
            high=101.0,
            low=99.0,
            close=100.5,
            volume=1e6,
            ts_event=i + 1,
            seq=i + 1,
            producer="marketdata-bench",
            ts_publish=i,
        )
        for i in range(n)
    ]


def _run(env: dict[str, str], bars: list[Bar], codec: str) -> float:
    receiver = subprocess.Popen(
        [sys.executable, "-c", _RECEIVER, env["BUS_SUB_ENDPOINT"], str(len(bars)), codec],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
    )
    assert receiver.stdout is not None
    receiver.stdout.readline()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    security = security_from_env("marketdata", env)
    if security is not None:
        security.client(sock, "bus")
    sock.connect(env["BUS_PUB_ENDPOINT"])
    time.sleep(0.5)  # subscription propagation through the forwarder
    if codec == "msgpack":
        for bar in bars:
            sock.send_multipart((b"bar.AAPL", encode(bar)))
    else:
        for bar in bars:
            sock.send_multipart((b"bar.AAPL", json.dumps(msgspec.to_builtins(bar)).encode()))
    rate_text, got = receiver.stdout.readline().split()
    receiver.wait(timeout=60)
    sock.close()
    ctx.term()
    if int(got) < len(bars):
        raise RuntimeError(f"{codec}: {got} of {len(bars)} bars arrived (dropped past a HWM)")
    return float(rate_text)


def bench_bus_publish(env: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    n = 50_000 if quick else 300_000
    bars = synthetic_bars(n)
    json_rate = _run(env, bars, "json")
    msgpack_rate = _run(env, bars, "msgpack")
    return [
        rate_row(
            "bus_publish",
            msgpack_rate,
            "bars/s",
            n,
            baseline={"name": "same bars as JSON", "value": round(json_rate, 1)},
            goal=">= 100,000 bars/s",
            note="publisher -> forwarder process -> subscriber process, decoded"
            + (" (CURVE on)" if env.get("BUS_CURVE", "1") != "0" else " (CURVE off)"),
        )
    ]
