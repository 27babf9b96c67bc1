"""The benchmark's side of ``bench_forwarder_designs.py``: where clients connect on a design
(``Topology``), the far-end process (throughput receiver and echo in one) and the benchmark's own
sockets (``Clients``), the same code in front of every design."""

from __future__ import annotations

import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec
import zmq

from bench.bus_harness import ECHO_IN_TOPIC, ECHO_TOPIC, stream
from shared.curve import BusSecurity
from shared.messages import Bar, decode, encode

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "bench_forwarder_designs.py"  # its --far-end mode runs serve_far_end
PROBE_TOPIC = b"bar.PROBE"
PROBE_PAYLOAD = b"probe"


@dataclass
class Topology:
    """Where a design's clients connect: one publisher endpoint per identity, one egress."""

    design: str
    egress: str
    ingress: dict[str, str]
    curve: bool

    def pub_endpoint(self, identity: str) -> str:
        return self.ingress.get(identity, self.ingress.get("*", ""))


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, str(SCRIPT), *args]


def readline(stream: IO[str], timeout_s: float, what: str) -> str:
    if not select.select([stream], [], [], timeout_s)[0]:
        raise TimeoutError(f"{what}: no answer in {timeout_s}s")
    line = stream.readline()
    if not line:
        raise RuntimeError(f"{what}: the process ended")
    return line.strip()


def serve_far_end(sub_endpoint: str, pub_endpoint: str, keys_dir: str) -> None:
    """``bar.*`` frames are counted (and decoded, as ``bus_publish``'s receiver does) after an
    ``arm N`` line on stdin; ``pnl.IN`` is echoed on ``pnl.ECHO`` (as ``bar_to_signal_1``'s echo
    process); ``bar.PROBE`` is answered with a probe echo (readiness of both directions)."""
    security = BusSecurity.load(keys_dir, "monitor") if keys_dir else None
    ctx: zmq.Context[Any] = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    if security is not None:
        security.client(sub, "bus")
        security.client(pub, "bus")
    sub.connect(sub_endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"bar.")
    sub.setsockopt(zmq.SUBSCRIBE, ECHO_IN_TOPIC)
    pub.connect(pub_endpoint)
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    armed, got, first, last = 0, 0, 0.0, 0.0
    print("ready", flush=True)
    while True:
        ready = dict(poller.poll(1000))
        if sys.stdin.fileno() in ready:
            line = sys.stdin.readline()
            if not line:
                return
            armed, got, first, last = int(line.split()[1]), 0, 0.0, 0.0
            print("armed", flush=True)
        while sub in ready:
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            topic = frames[0]
            if topic == ECHO_IN_TOPIC:
                pub.send(ECHO_TOPIC, zmq.SNDMORE)
                pub.send(frames[-1])
            elif topic == PROBE_TOPIC:
                pub.send_multipart((ECHO_TOPIC, PROBE_PAYLOAD))
            elif armed:
                last = time.perf_counter()
                first = first or last
                decode(frames[-1])
                got += 1
                if got == armed:
                    print(got / (last - first), got, flush=True)
                    armed = 0
        if armed and first and time.perf_counter() - last > 10:  # frames dropped: report
            print(got / max(last - first, 1e-9), got, flush=True)
            armed = 0


class Clients:
    """The benchmark's sockets on one design, and its far-end process."""

    def __init__(self, topology: Topology, keys_dir: str) -> None:
        self.topology = topology
        self.ctx: zmq.Context[Any] = zmq.Context()
        marketdata = BusSecurity.load(keys_dir, "marketdata") if topology.curve else None
        monitor = BusSecurity.load(keys_dir, "monitor") if topology.curve else None
        self.bar_pub = self._socket(zmq.PUB, marketdata)
        self.bar_pub.connect(topology.pub_endpoint("marketdata"))
        self.echo_pub = self._socket(zmq.PUB, monitor)
        self.echo_pub.connect(topology.pub_endpoint("monitor"))
        self.sub = self._socket(zmq.SUB, monitor)
        self.sub.connect(topology.egress)
        self.sub.setsockopt(zmq.SUBSCRIBE, ECHO_TOPIC)
        self.far = subprocess.Popen(
            python_cmd("--far-end", "--sub", topology.egress, "--pub",
                        topology.pub_endpoint("monitor"),
                        "--keys-dir", keys_dir if topology.curve else ""),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert self.far.stdout is not None
        readline(self.far.stdout, 60, f"{topology.design} far end")

    def _socket(self, kind: int, security: BusSecurity | None) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.SNDHWM if kind == zmq.PUB else zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        if security is not None:
            security.client(sock, "bus")
        return sock

    def _drain(self) -> None:
        while self.sub.poll(200):
            self.sub.recv_multipart()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Readiness by probes, both paths: a bar (marketdata -> far end) answered with a probe
        echo, and an echo of a pnl.IN frame (monitor -> far end -> monitor)."""
        deadline = time.monotonic() + timeout_s
        for send in (
            lambda: self.bar_pub.send_multipart((PROBE_TOPIC, PROBE_PAYLOAD)),
            lambda: self.echo_pub.send_multipart((ECHO_IN_TOPIC, PROBE_PAYLOAD)),
        ):
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.topology.design}: the bus never became ready")
                send()
                if self.sub.poll(200) and self.sub.recv_multipart()[-1] == PROBE_PAYLOAD:
                    break
        self._drain()

    def throughput(self, frames: list[tuple[bytes, bytes]]) -> tuple[float, int]:
        """One publisher -> forwarder -> the far end (decoding), as ``bus_publish``."""
        assert self.far.stdin is not None and self.far.stdout is not None
        self.far.stdin.write(f"arm {len(frames)}\n")
        self.far.stdin.flush()
        readline(self.far.stdout, 30, "far end arm")
        for topic, payload in frames:
            self.bar_pub.send(topic, zmq.SNDMORE)
            self.bar_pub.send(payload)
        rate, got = readline(self.far.stdout, 120, "far end count").split()
        return float(rate), int(got)

    def echo_stream(self, frames: list[tuple[bytes, bytes]]) -> float:
        """``inference_throughput``'s bus-alone baseline, with its own code."""
        rate = len(frames) / stream(self.echo_pub, self.sub, frames, ECHO_TOPIC, ECHO_IN_TOPIC)
        self._drain()
        return rate

    def round_trips(self, bars: list[Bar]) -> list[float]:
        """``bar_to_signal_1``'s bare round trip: encode and send one bar payload, wait for its
        echo (``bus_harness.BenchBus.send_echo``/``recv_echo``)."""
        samples = []
        for bar in bars:
            t0 = time.perf_counter()
            payload = encode(
                msgspec.structs.replace(bar, producer="marketdata-bench", ts_publish=time.time_ns())
            )
            self.echo_pub.send_multipart((ECHO_IN_TOPIC, payload))
            while True:
                if not self.sub.poll(10_000):
                    raise TimeoutError(f"{self.topology.design}: no echo of bar {bar.seq}")
                frames = self.sub.recv_multipart()
                if frames[0] == ECHO_TOPIC and decode(frames[-1]).seq == bar.seq:
                    break
            samples.append(time.perf_counter() - t0)
        return samples

    def close(self) -> None:
        assert self.far.stdin is not None
        self.far.stdin.close()
        try:
            self.far.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.far.kill()
            self.far.wait()
        for sock in (self.bar_pub, self.echo_pub, self.sub):
            sock.close()
        self.ctx.term()
