"""Inference benchmarks: a real ``python -m inference`` process behind the real forwarder.

Rows (each with a baseline measured in the same run):

* ``bar_to_signal_1``: one symbol, one bar at a time: publish -> ``signal.<SYM>`` received.
  Baseline: a bare ZeroMQ round trip of the same size through the same forwarder to an echo
  process (no decoding, no work); the note adds a second one, ``bench.async_echo`` (the
  services' own asyncio Subscriber/Publisher, no work). ``bench`` runs it twice, on a CURVE
  forwarder and on a plain one (``BUS_CURVE`` 1/0), and compares the two (``signal_1_only``).
* ``bar_to_signal_100``: 100 symbols, a burst of one bar per symbol (same close time): publish
  of the first -> the 100th signal received. Baseline: 100 bars through the bus alone.
* ``inference_throughput``: bars/s one inference process turns into signals from 100 warm
  symbols' bars published back to back, until the last signal is received. Baseline: the same
  bars through the bus alone (the echo process); the note has the same per-bar work in-process
  without the bus, one symbol.
* ``onnx_call``: ``LoadedModel.decide`` on one observation. Baseline: the raw onnxruntime
  ``session.run`` on the same input.
* ``inference_rss_mb``: resident memory of the inference process after the runs. Baseline: a
  Python process that imports numpy, pandas and onnxruntime only. With numba installed (the
  ``fast`` extra) the process also holds LLVM for the compiled feature bank, ~100 MiB.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bus_harness import (
    ECHO_IN_TOPIC,
    ECHO_SCRIPT,
    ECHO_TOPIC,
    BenchBus,
    EmptyMarketData,
    bar_frame,
    inference_command,
    make_bars,
    stream,
)
from bench.common import latency_row, rate_row
from shared.auth import load_or_create_key
from shared.bus import security_from_env
from shared.data import load_bars
from shared.messages import TargetPosition

ROOT = Path(__file__).resolve().parents[1]


def _command(env: dict[str, str], key: bytes, name: str, timeout_s: float = 5.0) -> Any:
    """A command to the benchmark's inference (its endpoint from ``env``)."""
    return inference_command(env["INFERENCE_CMD_ENDPOINT"], env, key, name, timeout_s)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _wait_signals(env: dict[str, str], key: bytes, want: int, timeout_s: float = 120.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _command(env, key, "status")
        if status["counters"]["signals"] + status["counters"]["warming_bars"] >= want:
            return time.perf_counter()
        time.sleep(0.02)
    raise TimeoutError(f"inference did not reach {want} processed bars")


def _torch_eager_p50_us(onnx_path: Path, x: np.ndarray, n: int = 10_000) -> float | None:
    """The same network (rebuilt from the ONNX initialisers, ``bench.onnx_rebuild``) run by torch
    eager, one observation per call: the baseline the ONNX call is compared with. None when torch
    or onnx is not installed."""
    try:
        import torch

        from bench.onnx_rebuild import read_graph, run_graph

        graph = read_graph(onnx_path)
    except ImportError:
        return None
    weights = {name: torch.from_numpy(w) for name, w in graph.weights.items()}
    torch.set_num_threads(1)
    obs = torch.from_numpy(x)
    samples = []
    with torch.no_grad():
        for _ in range(n):
            t0 = time.perf_counter()
            run_graph(graph, obs, weights, torch.tanh, torch.relu)
            samples.append(time.perf_counter() - t0)
    return round(float(np.percentile(samples, 50)) * 1e6, 2)


def bench_bar_to_signal_1(env: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    """Only ``bar_to_signal_1`` (and its echo baseline): the CURVE on/off comparison."""
    return bench_inference(env, quick, signal_1_only=True)


def bench_inference(
    env: dict[str, str], quick: bool, signal_1_only: bool = False
) -> list[dict[str, Any]]:
    from inference.service import decide_many

    from shared.features import FeaturePipeline
    from shared.loaded_model import load_artifact
    from shared.model_store import resolve_artifact
    from shared.observation import build_observation

    key = load_or_create_key(env["BUS_SECRET_FILE"])
    btc = load_bars("crypto", "BTC")
    ohlcv = btc[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)
    ts = btc.index.as_unit("ns").asi8
    n_throughput = 20_000 if quick else len(btc)
    n_latency = 1000 if quick else 10_000  # >= 10,000 samples for a meaningful p99
    warm = 150

    model = load_artifact(resolve_artifact(ROOT / "models", "baseline"))
    rows: list[dict[str, Any]] = []

    # onnx_call, and the in-process per-bar baseline
    if signal_1_only:
        in_process_rate = 0.0
        return _bus_rows(env, quick, key, ohlcv, ts, n_throughput, n_latency, warm,
                         in_process_rate, rows, signal_1_only=True)  # fmt: skip
    online = FeaturePipeline().online()
    for row in ohlcv[:warm].tolist():
        feats = online.update(*row)
    assert feats is not None
    obs = build_observation(model.normalise(feats), 0.0)
    session, x = model._session, obs.reshape(1, -1)
    raw, full = [], []
    for _ in range(10_000):
        t0 = time.perf_counter()
        session.run(["logits"], {"obs": x})
        t1 = time.perf_counter()
        model.decide(obs)
        full.append(time.perf_counter() - t1)
        raw.append(t1 - t0)
    torch_p50 = _torch_eager_p50_us(model.path / "model.onnx", x)
    rows.append(
        latency_row(
            "onnx_call", full, unit="us",
            baseline={"name": "torch eager, same network", "value": torch_p50},
            goal="p50 < 20 us",
            note=(f"LoadedModel.decide (run + argmax); raw session.run p50 "
                  f"{np.percentile(raw, 50) * 1e6:.2f} us"),
        )
    )  # fmt: skip
    t0 = time.perf_counter()
    decide_many(model, FeaturePipeline().online(), ohlcv[:n_throughput])
    in_process_rate = n_throughput / (time.perf_counter() - t0)
    return _bus_rows(env, quick, key, ohlcv, ts, n_throughput, n_latency, warm,
                     in_process_rate, rows)  # fmt: skip


def _bus_rows(
    env: dict[str, str], quick: bool, key: bytes, ohlcv: np.ndarray, ts: np.ndarray,
    n_throughput: int, n_latency: int, warm: int, in_process_rate: float,
    rows: list[dict[str, Any]], signal_1_only: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    curve = security_from_env("marketdata", env) is not None
    marketdata = EmptyMarketData(
        env["MARKETDATA_CMD_ENDPOINT"], security_from_env("marketdata", env)
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "inference"],
        cwd=ROOT,
        env={**os.environ, **env, "INFERENCE_MODEL_DIR": str(ROOT / "models"),
             "INFERENCE_SNAPSHOT_TIMEOUT_S": "0.3", "INFERENCE_SNAPSHOT_ATTEMPTS": "1"},
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    bus = BenchBus(env)
    echo: subprocess.Popen[str] | None = None
    async_echo: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _command(env, key, "status", timeout_s=1.0)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        time.sleep(1.0)  # subscription propagation

        # The baselines' far ends: a bare echo (raw sockets, answers each bar with a same-size
        # frame, no decoding, no work) and an asyncio echo with the services' own Subscriber and
        # Publisher (bench.async_echo, no work): the second splits inference's gap into the
        # services' bus machinery and inference's own per-bar work.
        echo = subprocess.Popen(
            [sys.executable, "-c", ECHO_SCRIPT, env["BUS_SUB_ENDPOINT"], env["BUS_PUB_ENDPOINT"]],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **env},
        )  # fmt: skip
        async_echo = subprocess.Popen(
            [sys.executable, "-m", "bench.async_echo"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **env},
        )  # fmt: skip
        for far_end in (echo, async_echo):
            assert far_end.stdout is not None
            far_end.stdout.readline()
        time.sleep(1.0)  # their subscriptions reach the forwarder

        one = make_bars("BTC", ohlcv[: warm + n_latency], ts[: warm + n_latency])
        for bar in one[:warm]:
            bus.send(bar)  # cold start: the service warms on the first bars (snapshot refused)
        _wait_signals(env, key, warm)
        while bus.sub.poll(200):
            bus.sub.recv_multipart()

        # The bare echo back to back, alone (inference idle): the row's baseline until
        # 2026-12-01, kept in the note. Back to back, the echo's two processes never sleep long
        # and its ratio was measured against inference's own block, taken at another time.
        hop_block = []
        for bar in make_bars("BTC", ohlcv[:n_latency], ts[:n_latency]):
            t0 = time.perf_counter()
            bus.send_echo(bar)
            bus.recv_echo(bar.seq)
            hop_block.append(time.perf_counter() - t0)

        # Paired samples: for each bar the bare echo, the asyncio echo, then inference, so the
        # three see the same load and the same idle time between their turns (a lone bar in
        # production finds every process asleep, too).
        hop, async_hop, latency = [], [], []
        for n, bar in enumerate(one[warm:], start=1):
            t0 = time.perf_counter()
            bus.send_echo(bar)
            bus.recv_echo(bar.seq)
            t1 = time.perf_counter()
            bus.send_async_echo(n, bar)
            bus.recv_async_echo(n)
            t2 = time.perf_counter()
            bus.send(bar)
            while (
                not isinstance(message := bus.recv(), TargetPosition) or message.bar_seq != bar.seq
            ):
                pass
            latency.append(time.perf_counter() - t2)
            hop.append(t1 - t0)
            async_hop.append(t2 - t1)
        hop_p50, hop_p99, block_p50, async_p50, async_p99 = (
            float(np.percentile(samples, q)) * 1e3
            for samples, q in (
                (hop, 50), (hop, 99), (hop_block, 50), (async_hop, 50), (async_hop, 99)
            )
        )  # fmt: skip
        p50, p99 = (float(np.percentile(latency, q)) * 1e3 for q in (50, 99))
        rows.append(
            latency_row(
                "bar_to_signal_1", latency,
                baseline={"name": "bare ZeroMQ round trip, same size", "value": round(hop_p50, 4)},
                goal="p50 <= 1.2x, p99 <= 2x the bare round trip",
                note="publish bar -> forwarder -> inference -> forwarder -> signal received"
                + (" (CURVE on)" if curve else " (CURVE off)")
                + f"; vs bare round trip (same forwarder, sockets, CURVE, payload; an echo "
                f"process doing no work; paired samples, echo then inference per bar): "
                f"p50 {p50 / hop_p50:.2f}x, p99 {p99:.3f} vs {hop_p99:.3f} ms = "
                f"{p99 / hop_p99:.2f}x; asyncio echo with the services' Subscriber/Publisher "
                f"and no work (bench.async_echo, paired): p50 {async_p50:.4f} ms, "
                f"p99 {async_p99:.3f} ms ({async_p50 / hop_p50:.2f}x the bare round trip; "
                f"inference {p50 / async_p50:.2f}x it); bare echo back to back, alone: "
                f"p50 {block_p50:.4f} ms (inference {p50 / block_p50:.2f}x it)",
            )
        )  # fmt: skip
        if signal_1_only:
            return rows

        # bar_to_signal_100
        symbols = [f"S{i:03d}" for i in range(100)]
        per_symbol = {s: make_bars(s, ohlcv[: warm + 60], ts[: warm + 60]) for s in symbols}
        for i in range(warm):
            for s in symbols:
                bus.send(per_symbol[s][i])
        already = warm + n_latency + 100 * warm
        _wait_signals(env, key, already)
        while bus.sub.poll(200):
            bus.sub.recv_multipart()
        burst, burst_base = [], []
        n_burst = 20 if quick else 60
        for i in range(warm, warm + n_burst):
            t0 = time.perf_counter()
            for s in symbols:
                bus.send(per_symbol[s][i])
            got = 0
            while got < 100:
                if isinstance(bus.recv(), TargetPosition):
                    got += 1
            burst.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for s in symbols:  # the same 100 payloads, echoed instead of decided
                bus.send_echo(per_symbol[s][i])
            got = 0
            while got < 100:
                topic, _ = bus.recv_frame()
                got += topic == ECHO_TOPIC
            burst_base.append(time.perf_counter() - t0)
        rows.append(
            latency_row(
                "bar_to_signal_100", burst,
                baseline={"name": "100 bars through the bus alone (echo, same topology)",
                          "value": round(float(np.percentile(burst_base, 50)) * 1e3, 4)},
                goal="<= 1.5x the bus alone",
                note="100 symbols, one bar each at the same close -> all 100 signals; "
                "baseline: the same 100 payloads to the echo process (inference idle)",
            )
        )  # fmt: skip

        # inference_throughput: the 100 warm symbols, their next bars back to back (each close
        # time's 100 bars in a row, so a receive batch holds many symbols: batched decisions),
        # counted when the last signal arrives; baseline: the same payloads through the echo
        first = warm + n_burst
        per_sym = max(1, min(n_throughput // len(symbols), len(ohlcv) - first))
        frames = [
            bar_frame(bar)
            for i in range(first, first + per_sym)
            for s in symbols
            for bar in make_bars(s, ohlcv[i : i + 1], ts[i : i + 1], first_seq=i + 1)
        ]
        before = _command(env, key, "status")["counters"]
        rate = len(frames) / stream(bus.pub, bus.sub, frames, b"signal.", None)
        after = _command(env, key, "status")["counters"]
        echo_rate = len(frames) / stream(bus.echo_pub, bus.sub, frames, ECHO_TOPIC, ECHO_IN_TOPIC)
        calls = after["batched_calls"] - before["batched_calls"]
        batched = after["batched_bars"] - before["batched_bars"]
        rows.append(
            rate_row(
                "inference_throughput", rate, "bars/s", len(frames),
                baseline={"name": "same bars through the bus alone (echo, same topology)",
                          "value": round(echo_rate, 1)},
                goal=">= 40,000 bars/s with batching",
                note=f"{len(symbols)} warm symbols x {per_sym} close times, published back to "
                f"back, until the last signal is received; {batched} bars in {calls} batched "
                f"ONNX calls; per-bar work in-process without the bus, one symbol (no batching): "
                f"{in_process_rate:,.0f} bars/s; {os.cpu_count()} cores shared by publisher, "
                "forwarder, inference and the receiving benchmark",
            )
        )  # fmt: skip
        rss = _rss_mb(proc.pid)
    finally:
        for echo_process in (echo, async_echo):  # also when a step above failed: no orphans
            if echo_process is not None:
                echo_process.terminate()
                echo_process.wait(timeout=10)
        bus.close()
        marketdata.close()
        proc.terminate()
        proc.wait(timeout=15)

    bare = subprocess.run(
        [sys.executable, "-c",
         "import numpy, pandas, onnxruntime, pathlib;"
         "print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
         " if l.startswith('VmRSS')][0].split()[1])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows.append(
        rate_row(
            "inference_rss_mb", rss, "MiB", 1,
            baseline={"name": "python + numpy/pandas/onnxruntime",
                      "value": round(int(bare.stdout.strip()) / 1024.0, 1)},
            goal="no ray/torch in the process",
            note="VmRSS after the benchmarks"
            + ("; numba loaded (the compiled feature bank: LLVM is ~100 MiB of it)"
               if importlib.util.find_spec("numba") else "; numba not installed (numpy pass)"),
        )
    )  # fmt: skip
    return rows
