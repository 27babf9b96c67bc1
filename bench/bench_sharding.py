"""Sharded inference: 1, 2 and 3 ``python -m inference`` replicas (``INFERENCE_SHARD_MODE=
rendezvous``) behind the real forwarder, splitting 24 symbols.

Rows per replica count N (``sharding_<N>_burst``, ``sharding_<N>_throughput``):

* burst: one bar for each of the 24 symbols at the same close time, published back to back ->
  the 24th signal received (latency, ms). Baseline: the 1-replica row of the same run.
* throughput: a queue of 24 x R bars (R rounds of every symbol) -> every signal counted by the
  replicas' own ``status``; bars/s. Baseline: the 1-replica row of the same run.

On this machine (2 cores, shared with the forwarder, the publisher and the other engineers'
work) more replicas cannot add CPU; the rows show the cost of the split (heartbeats, the
``signal.`` subscription each replica keeps for hand-overs), not a speed-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ibsim.process import free_ports

from bench.bus_harness import BenchBus, EmptyMarketData, inference_command, make_bars
from bench.common import latency_row, rate_row
from shared.auth import load_or_create_key
from shared.bus import security_from_env
from shared.data import load_bars
from shared.messages import TargetPosition

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = [f"H{i:02d}" for i in range(24)]
HEARTBEAT_S = "0.2"


def _wait(predicate: Any, what: str, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"sharding bench: {what}")


def _processed(endpoints: list[str], env: dict[str, str], key: bytes) -> int:
    total = 0
    for endpoint in endpoints:
        c = inference_command(endpoint, env, key, "status")["counters"]
        total += c["signals"] + c["warming_bars"]
    return total


def _run_replicas(
    env: dict[str, str], key: bytes, n: int, ohlcv: np.ndarray, ts: np.ndarray, quick: bool
) -> tuple[list[float], float]:
    warm = 150
    rounds = 20 if quick else 60
    through = 100 if quick else 400
    procs: list[subprocess.Popen[bytes]] = []
    endpoints: list[str] = []
    marketdata = EmptyMarketData(
        env["MARKETDATA_CMD_ENDPOINT"], security_from_env("marketdata", env)
    )
    bus = BenchBus(env)
    try:
        # all ports in one call: a replica may not have bound its port before the next pick
        for port in free_ports(n):
            endpoint = f"tcp://127.0.0.1:{port}"
            endpoints.append(endpoint)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "inference"],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    env={
                        **os.environ,
                        **env,
                        "INFERENCE_MODEL_DIR": str(ROOT / "models"),
                        "INFERENCE_CMD_ENDPOINT": endpoint,
                        "INFERENCE_SHARD_MODE": "rendezvous",
                        "BUS_HEARTBEAT_INTERVAL_S": HEARTBEAT_S,
                        "INFERENCE_SNAPSHOT_TIMEOUT_S": "0.3",
                        "INFERENCE_SNAPSHOT_ATTEMPTS": "1",
                    },
                )
            )

        def agreed() -> bool:
            try:
                st = [inference_command(e, env, key, "status") for e in endpoints]
            except Exception:
                return False
            return all(not s["joining"] and len(s["peers"]) == n - 1 for s in st)

        _wait(agreed, f"{n} replicas see each other")
        time.sleep(0.5)  # our publisher's connection reaches the forwarder (as bench_inference)
        per_symbol = {
            s: make_bars(s, ohlcv[: warm + rounds + through], ts[: warm + rounds + through])
            for s in SYMBOLS
        }
        for i in range(warm):
            for s in SYMBOLS:
                bus.send(per_symbol[s][i])
        sent = warm * len(SYMBOLS)
        _wait(lambda: _processed(endpoints, env, key) >= sent, "warm-up bars processed")
        while bus.sub.poll(200):
            bus.sub.recv_multipart()
        burst: list[float] = []
        for i in range(warm, warm + rounds):
            t0 = time.perf_counter()
            for s in SYMBOLS:
                bus.send(per_symbol[s][i])
            got = 0
            while got < len(SYMBOLS):
                if isinstance(bus.recv(), TargetPosition):
                    got += 1
            burst.append(time.perf_counter() - t0)
        sent += rounds * len(SYMBOLS)
        _wait(lambda: _processed(endpoints, env, key) >= sent, "burst bars processed")
        t0 = time.perf_counter()
        for i in range(warm + rounds, warm + rounds + through):
            for s in SYMBOLS:
                bus.send(per_symbol[s][i])
        sent += through * len(SYMBOLS)
        _wait(lambda: _processed(endpoints, env, key) >= sent, "throughput bars processed", 300)
        rate = through * len(SYMBOLS) / (time.perf_counter() - t0)
        return burst, rate
    finally:
        bus.close()
        marketdata.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)


def bench_sharding(env: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    key = load_or_create_key(env["BUS_SECRET_FILE"])
    btc = load_bars("crypto", "BTC")
    ohlcv = btc[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)
    ts = btc.index.as_unit("ns").asi8
    rows: list[dict[str, Any]] = []
    base_burst: float | None = None
    base_rate: float | None = None
    for n in (1, 2, 3):
        burst, rate = _run_replicas(env, key, n, ohlcv, ts, quick)
        p50 = float(np.percentile(burst, 50)) * 1e3
        if n == 1:
            base_burst, base_rate = p50, rate
        rows.append(
            latency_row(
                f"sharding_{n}_burst", burst,
                baseline={"name": "1 replica, same run", "value": round(base_burst or p50, 4)},
                goal="each symbol served by exactly one replica",
                note=f"{n} replica(s), 24 symbols, one bar each at the same close -> 24 signals",
            )
        )  # fmt: skip
        rows.append(
            rate_row(
                f"sharding_{n}_throughput", rate, "bars/s", len(SYMBOLS),
                baseline={"name": "1 replica, same run", "value": round(base_rate or rate, 1)},
                goal="throughput and latency rows with 1, 2 and 3 replicas",
                note=f"{n} replica(s) on {os.cpu_count()} shared cores",
            )
        )  # fmt: skip
    return rows
