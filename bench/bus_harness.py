"""The benchmarks' side of the bus: raw sockets as marketdata and monitor, the echo far ends that
give the latency rows their baselines, and a stub marketdata command endpoint.

Shared by ``bench.bench_inference``, ``bench.bench_sharding`` and the forwarder design probes
(``bench.forwarder_design_clients``): every row that compares inference with "the bus alone" sends
the same payloads through the same forwarder with these helpers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec
import numpy as np
import zmq

from shared.bus import security_from_env
from shared.command_channel import call
from shared.curve import BusSecurity
from shared.messages import Bar, Command, PnL, Reply, decode, encode


def make_bars(symbol: str, ohlcv: np.ndarray, ts: np.ndarray, first_seq: int = 1) -> list[Bar]:
    return [
        Bar(
            symbol=symbol,
            timeframe="30m",
            bar_open_ts=int(t) - 1_800_000_000_000,
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=v,
            ts_event=int(t),
            seq=first_seq + i,
        )
        for i, ((o, h, lo, c, v), t) in enumerate(zip(ohlcv.tolist(), ts.tolist(), strict=True))
    ]


class BenchBus:
    """Raw sockets: bars in as the ``marketdata`` identity, signals and echoes out (with CURVE
    the forwarder hands ``[topic, identity, payload]``; the payload is the last frame)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 0)
        publisher = security_from_env("marketdata", env)
        if publisher is not None:
            publisher.client(self.pub, "bus")
        self.pub.connect(env["BUS_PUB_ENDPOINT"])
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        subscriber = security_from_env("monitor", env)
        if subscriber is not None:
            subscriber.client(self.sub, "bus")
        self.sub.connect(env["BUS_SUB_ENDPOINT"])
        self.sub.setsockopt(zmq.SUBSCRIBE, b"signal.")
        self.sub.setsockopt(zmq.SUBSCRIBE, ECHO_TOPIC)
        self.sub.setsockopt(zmq.SUBSCRIBE, ASYNCECHO_TOPIC)
        # the baseline's frames go out on a topic inference does not subscribe to (as monitor),
        # so inference sits idle while the bare round trip is measured
        self.echo_pub = self.ctx.socket(zmq.PUB)
        self.echo_pub.setsockopt(zmq.SNDHWM, 0)
        if subscriber is not None:
            subscriber.client(self.echo_pub, "bus")
        self.echo_pub.connect(env["BUS_PUB_ENDPOINT"])

    def send(self, bar: Bar) -> None:
        # inference refuses a bar whose producer does not name the sender's identity
        payload = encode(
            msgspec.structs.replace(bar, producer="marketdata-bench", ts_publish=time.time_ns())
        )
        self.pub.send_multipart((f"bar.{bar.symbol}".encode(), payload))

    def send_echo(self, bar: Bar) -> None:
        """The same bar payload as ``send``, to the echo process only."""
        payload = encode(
            msgspec.structs.replace(bar, producer="marketdata-bench", ts_publish=time.time_ns())
        )
        self.echo_pub.send_multipart((ECHO_IN_TOPIC, payload))

    def send_async_echo(self, n: int, bar: Bar) -> None:
        """A ``PnL`` about the size of a bar (``n`` in ``realized``) to the asyncio echo."""
        message = PnL(
            account="AIN", realized=float(n), unrealized=bar.close, fees=bar.volume,
            equity=bar.open, positions={"BTC": bar.high, "ETH": bar.low, "SOL": 1.0},
            producer="monitor-bench", seq=n, ts_event=bar.ts_event, ts_publish=time.time_ns(),
        )  # fmt: skip
        self.echo_pub.send_multipart((ASYNCECHO_IN_TOPIC, encode(message)))

    def recv_async_echo(self, n: int) -> None:
        """Wait for the asyncio echo's answer to message ``n``."""
        while True:
            topic, message = self.recv_frame()
            if topic == ASYNCECHO_TOPIC and message.realized == float(n):
                return

    def recv(self, timeout_s: float = 10.0) -> Any:
        return self.recv_frame(timeout_s)[1]

    def recv_frame(self, timeout_s: float = 10.0) -> tuple[bytes, Any]:
        if not self.sub.poll(int(timeout_s * 1000)):
            raise TimeoutError("no message from the bus")
        frames = self.sub.recv_multipart()
        return frames[0], decode(frames[-1])

    def recv_echo(self, seq: int) -> None:
        """Wait for the echo of bar ``seq``."""
        while True:
            topic, message = self.recv_frame()
            if topic == ECHO_TOPIC and message.seq == seq:
                return

    def close(self) -> None:
        self.pub.close()
        self.echo_pub.close()
        self.sub.close()
        self.ctx.term()


# The round-trip baseline's far end: pnl.IN in (a bar's payload), the same payload back as
# pnl.ECHO, with the monitor's key when CURVE is on: the same forwarder, socket types, payload
# sizes and CURVE as a bar and its signal, on topics inference never subscribes to.
ECHO_IN_TOPIC = b"pnl.IN"
ECHO_TOPIC = b"pnl.ECHO"
# The second baseline's far end: ``bench.async_echo`` (the services' Subscriber and Publisher in
# an event loop, no work), as monitor, on topics nobody else subscribes to.
ASYNCECHO_IN_TOPIC = b"pnl.AIN"
ASYNCECHO_TOPIC = b"pnl.AECHO"
ECHO_SCRIPT = """
import os, sys, zmq
from shared.bus import security_from_env
security = security_from_env("monitor", os.environ)
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
pub = ctx.socket(zmq.PUB)
sub.setsockopt(zmq.RCVHWM, 100_000); pub.setsockopt(zmq.SNDHWM, 100_000)  # as inference's
if security is not None:
    security.client(sub, "bus"); security.client(pub, "bus")
sub.connect(sys.argv[1]); sub.setsockopt(zmq.SUBSCRIBE, b"pnl.IN")
pub.connect(sys.argv[2])
print("ready", flush=True)
while True:
    frames = sub.recv_multipart()
    pub.send_multipart((b"pnl.ECHO", frames[-1]))
"""


class EmptyMarketData:
    """Answers every command on marketdata's endpoint with no bars, so symbols start cold at
    once (the benchmark feeds the warm-up bars itself)."""

    def __init__(self, endpoint: str, security: BusSecurity | None) -> None:
        self._stop = threading.Event()
        self._sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
        if security is not None:  # inference connects with marketdata's server key
            security.server(self._sock)
        self._sock.bind(endpoint.replace("localhost", "127.0.0.1"))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        decoder, encoder = msgspec.msgpack.Decoder(Command), msgspec.msgpack.Encoder()
        while not self._stop.is_set():
            if not self._sock.poll(100):
                continue
            frames = self._sock.recv_multipart()
            command = decoder.decode(frames[-1])
            reply = Reply(
                request_id=command.request_id, ok=True, result={"bars": [], "symbols": []}
            )
            self._sock.send_multipart([frames[0], b"", encoder.encode(reply)])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


def bar_frame(bar: Bar) -> tuple[bytes, bytes]:
    """A bar as marketdata-bench puts it on the wire (encoded before the clock starts)."""
    stamped = msgspec.structs.replace(bar, producer="marketdata-bench", ts_publish=time.time_ns())
    return f"bar.{bar.symbol}".encode(), encode(stamped)


def stream(
    pub: zmq.Socket[bytes],
    sub: zmq.Socket[bytes],
    frames: list[tuple[bytes, bytes]],
    want_topic: bytes,
    send_topic: bytes | None,
) -> float:
    """Publish ``frames`` back to back (on ``send_topic`` when given) and wait until as many
    frames on ``want_topic`` came back; seconds from the first send to the last receipt."""
    t0 = time.perf_counter()
    for topic, payload in frames:
        pub.send(send_topic or topic, zmq.SNDMORE)
        pub.send(payload)
    got = 0
    while got < len(frames):
        if not sub.poll(30_000):
            raise TimeoutError(f"{got} of {len(frames)} {want_topic!r} frames came back")
        got += sub.recv_multipart()[0].startswith(want_topic)
    return time.perf_counter() - t0


def inference_command(
    endpoint: str, env: dict[str, str], key: bytes, name: str, timeout_s: float = 5.0
) -> Any:
    """A command to a benchmark's inference process, as the operator when CURVE is on."""
    return call(
        endpoint, name, {}, key, timeout_s=timeout_s,
        security=security_from_env("operator", env), server="inference",
    )  # fmt: skip
