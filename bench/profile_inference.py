"""Where inference's per-bar time goes, stage by stage, on the real CURVE bus.

``python -m bench.profile_inference [--bars N] [--symbols K]`` starts a private forwarder (the
production CURVE one), an ``InferenceService`` in this process with its real ``Subscriber`` and
``Publisher``, and a publisher socket as ``marketdata``. Each step publishes one bar per symbol
(same close time), receives the frames, and hands them to ``handle_batch`` as the service's
receive loop does (without the event loop's await). Every stage is wrapped in a
``perf_counter_ns`` timer and reported in microseconds per bar; the timers themselves cost
~0.1-0.2 us each, so the sum of the stages is a little above the untimed path.

Not a benchmark row (the numbers are for the README's "Where the time goes" table): run it
before and after a change, on the same load, and compare.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]


class StageTimers:
    """Accumulated ns per stage name; ``wrap`` times every call of a function."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return func(*args, **kwargs)
            finally:
                self.ns[name] += time.perf_counter_ns() - t0
                self.calls[name] += 1

        return timed


@contextmanager
def patched(obj: Any, attr: str, timers: StageTimers, name: str) -> Iterator[None]:
    original = getattr(obj, attr)
    setattr(obj, attr, timers.wrap(name, original))
    try:
        yield
    finally:
        setattr(obj, attr, original)


def _bar_payloads(symbols: list[str], n: int) -> list[list[tuple[bytes, bytes]]]:
    """Encoded frames per step: one bar per symbol, same close time (the packaged BTC series)."""
    from shared.data import load_bars
    from shared.messages import Bar, encode

    btc = load_bars("crypto", "BTC")
    ohlcv = btc[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)[:n]
    ts = btc.index.as_unit("ns").asi8[:n]
    now = time.time_ns()
    steps = []
    for i, ((o, h, lo, c, v), t) in enumerate(zip(ohlcv.tolist(), ts.tolist(), strict=True)):
        frames = []
        for s in symbols:
            bar = Bar(
                symbol=s, timeframe="30m", bar_open_ts=int(t) - 1_800_000_000_000,
                open=o, high=h, low=lo, close=c, volume=v, ts_event=int(t), seq=i + 1,
                producer="marketdata-profile", ts_publish=now,
            )  # fmt: skip
            frames.append((f"bar.{s}".encode(), encode(bar)))
        steps.append(frames)
    return steps


def profile(
    env: dict[str, str], n_bars: int, n_symbols: int, warm: int = 150, cprofile: int = 0
) -> dict[str, float]:
    """Microseconds per bar per stage over the live (non-warming) bars; with ``cprofile`` > 0,
    also prints the functions with the most own time inside ``handle_batch`` (cProfile around
    those calls only, so its overhead inflates the stage timers of that run)."""
    import inference.batching as batching_module
    import inference.service as service_module
    from inference.config import InferenceSettings
    from inference.service import InferenceService, SymbolState

    import shared.bus as bus_module
    from shared.bus import Publisher, Subscriber, security_from_env
    from shared.features import OnlineFeatures
    from shared.normaliser import Normaliser
    from shared.runtime import connect_bus

    symbols = [f"P{i:03d}" for i in range(n_symbols)]
    steps = _bar_payloads(symbols, warm + n_bars)
    bus = connect_bus("inference", env)
    settings = msgspec.convert({"model_dir": str(ROOT / "models")}, InferenceSettings)
    svc = InferenceService(settings, bus)
    for s in symbols:  # warm (no snapshot to ask): the bars below warm the features
        svc.states[s] = SymbolState(s, svc.online_features(), warm=True)
    sub = bus.subscriber(svc.topics())
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    security = security_from_env("marketdata", env)
    if security is not None:
        security.client(pub, "bus")
    pub.connect(env["BUS_PUB_ENDPOINT"])
    probe = ctx.socket(zmq.SUB)  # the signals arrive: the path is complete
    if security_from_env("monitor", env) is not None:
        security_from_env("monitor", env).client(probe, "bus")  # type: ignore[union-attr]
    probe.connect(env["BUS_SUB_ENDPOINT"])
    probe.setsockopt(zmq.SUBSCRIBE, b"signal.")
    time.sleep(1.0)  # subscriptions reach the forwarder

    def step(frames: list[tuple[bytes, bytes]], timed: bool) -> None:
        for frame in frames:
            pub.send_multipart(frame)
        got: list[Any] = []
        t0 = time.perf_counter_ns()
        while len(got) < len(frames):
            if not sub._sync.poll(5000):
                raise TimeoutError("bars did not come back from the forwarder")
            got.extend(m for m in (sub._accept_frames(f) for f in _drain(sub)) if m is not None)
        t1 = time.perf_counter_ns()
        if timed and profiler is not None:
            profiler.runcall(svc.handle_batch, got)
        else:
            svc.handle_batch(got)
        t2 = time.perf_counter_ns()
        if timed:
            timers.ns["bus receive + accept"] += t1 - t0
            timers.ns["handle_batch (total)"] += t2 - t1

    timers = StageTimers()
    profiler = cProfile.Profile() if cprofile else None
    for frames in steps[:warm]:
        step(frames, False)
    with (
        patched(Subscriber, "accept", timers, "accept: decode + validate + seq"),
        patched(bus_module, "problem", timers, "  of which validate (problem)"),
        patched(OnlineFeatures, "update", timers, "features (OnlineFeatures.update)"),
        patched(batching_module, "update_features", timers, "features (bank, one pass a batch)"),
        patched(Normaliser, "transform", timers, "normalise"),
        patched(service_module, "build_observation", timers, "build_observation"),
        patched(InferenceService, "_decide", timers, "decide (one bar, ONNX)"),
        patched(InferenceService, "_decide_rows", timers, "decide (batch, ONNX)"),
        patched(Publisher, "publish", timers, "publish signal (stamp + encode + send)"),
    ):
        for frames in steps[warm:]:
            step(frames, True)
    while probe.poll(500):
        probe.recv_multipart()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(cprofile)
    bars = n_bars * n_symbols
    out = {name: ns / bars / 1e3 for name, ns in timers.ns.items()}
    pub.close()
    probe.close()
    ctx.term()
    sub.close()
    svc.close()
    bus.close()
    return out


def _drain(sub: Any) -> Iterator[list[bytes]]:
    while True:
        try:
            yield sub._sync.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return


def main() -> int:
    from bench.__main__ import private_bus

    parser = argparse.ArgumentParser(prog="python -m bench.profile_inference")
    parser.add_argument("--bars", type=int, default=3000)
    parser.add_argument("--symbols", type=int, default=1)
    parser.add_argument(
        "--cprofile", type=int, default=0, metavar="N", help="top N functions in handle_batch"
    )
    args = parser.parse_args()
    with private_bus(curve=True) as env:
        result = profile(env, args.bars, args.symbols, cprofile=args.cprofile)
    print(f"us per bar, {args.symbols} symbol(s) x {args.bars} bars, CURVE on:")
    for name, us in result.items():
        print(f"  {name:42s} {us:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
