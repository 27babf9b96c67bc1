"""Bus throughput: msgpack bars through the real forwarder to a subscriber in another process.

Baseline in the same run: the same bars as JSON (stdlib ``json``) over the same sockets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import msgspec
import zmq

from bench.common import rate_row
from shared.messages import Bar, encode

_RECEIVER = r"""
import sys, time, zmq
endpoint, n = sys.argv[1], int(sys.argv[2])
ctx = zmq.Context(); sock = ctx.socket(zmq.SUB); sock.setsockopt(zmq.RCVHWM, 0)
sock.connect(endpoint); sock.setsockopt(zmq.SUBSCRIBE, b"bar.")
print("ready", flush=True)
first = None
decode = None
if sys.argv[3] == "msgpack":
    from shared.messages import decode
else:
    import json; decode = json.loads
got = 0
while got < n:
    topic, payload = sock.recv_multipart()
    if first is None:
        first = time.perf_counter()
    decode(payload)
    got += 1
print(n / (time.perf_counter() - first), flush=True)
"""


def _bars(n: int) -> list[Bar]:
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
            producer="bench",
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
    )
    assert receiver.stdout is not None
    receiver.stdout.readline()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(env["BUS_PUB_ENDPOINT"])
    time.sleep(0.5)  # subscription propagation through the forwarder
    if codec == "msgpack":
        for bar in bars:
            sock.send_multipart((b"bar.AAPL", encode(bar)))
    else:
        for bar in bars:
            sock.send_multipart((b"bar.AAPL", json.dumps(msgspec.to_builtins(bar)).encode()))
    rate = float(receiver.stdout.readline())
    receiver.wait(timeout=60)
    sock.close()
    ctx.term()
    return rate


def bench_bus_publish(env: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    n = 50_000 if quick else 300_000
    bars = _bars(n)
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
            note="publisher -> forwarder process -> subscriber process, decoded",
        )
    ]
