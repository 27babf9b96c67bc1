"""Three bus forwarder designs side by side, in one run, interleaved (issue 16, item 5).

    nice -n 15 .venv/bin/python bench/bench_forwarder_designs.py --rounds 5

Designs (each a forwarder process of its own, the same client code in front of all three):

* ``plain``: ``python -m shared.busproxy`` with ``BUS_CURVE=0``: libzmq's C ``zmq.proxy``,
  XSUB/XPUB, plaintext. The floor.
* ``python``: ``python -m shared.busproxy`` with ``BUS_CURVE=1``: today's production forwarder,
  CURVE, a Python loop that checks sender and topic per frame and adds an identity frame.
* ``prototype``: the candidate C-level design (``serve_prototype`` below, a prototype, not a
  service): per identity with publish rights a CURVE-server SUB bound on its own port with
  ``ZMQ_ZAP_DOMAIN`` = the identity (the ZAP handler admits only that identity's key there),
  subscribed only to the identity's ``PUBLISH_RIGHTS`` prefixes, ``ZMQ_MAXMSGSIZE`` set;
  ``zmq.proxy_steerable(SUB_i, PUSH_i)`` per identity in a thread into one inproc PULL, then
  ``zmq.proxy_steerable(PULL, PUB)`` to one CURVE-server egress PUB. Frames leave as
  ``[topic, payload]``: the sender's identity is implied by the topic.
* ``curve_proxy`` (a reference, not a candidate): libzmq's ``zmq.proxy`` XSUB/XPUB with CURVE
  and the production ZAP handler, no checks at all (any known key may publish any topic): the
  most any C design with CURVE can do here (``serve_curve_proxy``).

Rows per design, each round measuring A, B, C, D in turn (medians over rounds are reported):

* ``throughput``: a burst of N real encoded ``Bar`` frames (``bench.bench_bus._bars``, the
  ``bus_publish`` row's bars) from one publisher (marketdata key) to one subscriber process that
  decodes each one, bars/s from its first to its last receipt (as ``bus_publish``).
* ``echo_stream``: the ``inference_throughput`` row's baseline ("the same bars through the bus
  alone"): frames published back to back on ``pnl.IN`` to an echo process that answers each on
  ``pnl.ECHO`` (``bench.bench_inference._stream``), bars/s until the last echo is back.
* ``round_trip``: the ``bar_to_signal_1`` row's baseline: one bar payload out on ``pnl.IN``, its
  echo back on ``pnl.ECHO`` through the same forwarder, one at a time; p50 and p99 in ms.

After the rounds, ``--checks`` (on by default) probes the prototype's holes with real sockets and
prints what it saw (wrong topic, wrong port, a 3-frame message, exact topics as prefixes,
ordering seen by two subscribers, a slow subscriber, the proxy's statistics).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `bench` is not an installed package
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import numpy as np  # noqa: E402
import zmq  # noqa: E402

from bench.bench_bus import _bars as bus_bars  # noqa: E402
from bench.bench_inference import _ECHO_IN_TOPIC, _ECHO_TOPIC, _stream  # noqa: E402
from shared.curve import BusSecurity, ZapHandler  # noqa: E402
from shared.keys import PUBLISH_RIGHTS, ensure_keys  # noqa: E402
from shared.messages import Bar, Heartbeat, decode, encode  # noqa: E402

DESIGNS = ("plain", "python", "prototype", "curve_proxy")
HWM = 200_000  # the production forwarder's HWMs, on every prototype socket too
MAX_MESSAGE_BYTES = 256 * 1024  # BUS_MAX_MESSAGE_BYTES's default
INGRESS_INPROC = "inproc://ingress"
PROBE_TOPIC = b"bar.PROBE"
PROBE_PAYLOAD = b"probe"
# identities that may publish something get an ingress port; "bus" is the forwarder itself
INGRESS_IDENTITIES = tuple(i for i, rights in PUBLISH_RIGHTS.items() if rights and i != "bus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# The prototype forwarder (runs as its own process: --serve-prototype)


class DomainZapHandler(ZapHandler):
    """The production ZAP handler, plus: on an ingress port (ZAP domain = an identity) only that
    identity's key is admitted. The egress (any other domain) admits every known key."""

    def __init__(self, ctx: zmq.Context[Any], security: BusSecurity) -> None:
        super().__init__(ctx, security.ring)
        self.wrong_port = 0

    def reply(self, request: list[bytes]) -> list[bytes]:
        answer = super().reply(request)
        if answer[2] != b"200" or len(request) < 3:
            return answer
        domain = request[2].decode(errors="replace")
        if domain in INGRESS_IDENTITIES and answer[4].decode() != domain:
            self.admitted -= 1
            self.refused += 1
            self.wrong_port += 1
            return [answer[0], answer[1], b"400", b"key not allowed on this port", b"", b""]
        return answer


@dataclass
class _Steered:
    """One ``zmq.proxy_steerable`` in its own thread, and the REQ end of its control socket."""

    thread: threading.Thread
    control: zmq.Socket[bytes]

    def statistics(self) -> list[int]:
        """libzmq's 8 counters: frontend msgs/bytes in, msgs/bytes out, then the backend's."""
        self.control.send(b"STATISTICS")
        return [struct.unpack("Q", f)[0] for f in self.control.recv_multipart()]

    def terminate(self) -> None:
        self.control.send(b"TERMINATE")
        self.thread.join(timeout=5)


def _steer(
    ctx: zmq.Context[Any], name: str, front: zmq.Socket[bytes], back: zmq.Socket[bytes]
) -> _Steered:
    rep = ctx.socket(zmq.REP)
    rep.bind(f"inproc://control.{name}")
    req = ctx.socket(zmq.REQ)
    req.connect(f"inproc://control.{name}")
    # zmq.proxy releases the GIL: each thread forwards in C
    thread = threading.Thread(
        target=zmq.proxy_steerable, args=(front, back, None, rep), name=name, daemon=True
    )
    thread.start()
    return _Steered(thread, req)


def serve_prototype(
    keys_dir: str, host: str, egress_port: int, ingress_ports: dict[str, int], hb_s: float
) -> None:
    security = BusSecurity.load(keys_dir, "bus")
    ctx: zmq.Context[Any] = zmq.Context(io_threads=2)
    zap = DomainZapHandler(ctx, security)  # bound before any server socket
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, HWM)
    pull.bind(INGRESS_INPROC)
    egress = ctx.socket(zmq.PUB)
    egress.setsockopt(zmq.SNDHWM, HWM)
    egress.setsockopt(zmq.LINGER, 0)
    egress.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)  # subscription frames
    security.server(egress)
    egress.setsockopt(zmq.ZAP_DOMAIN, b"egress")
    egress.bind(f"tcp://{host}:{egress_port}")
    proxies = {"egress": _steer(ctx, "egress", pull, egress)}
    for identity, port in ingress_ports.items():
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, HWM)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        security.server(sub)
        sub.setsockopt(zmq.ZAP_DOMAIN, identity.encode())
        for prefix in PUBLISH_RIGHTS[identity]:  # topic rights, enforced by the SUB's filter
            sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        sub.bind(f"tcp://{host}:{port}")
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, HWM)
        push.connect(INGRESS_INPROC)
        proxies[identity] = _steer(ctx, f"ingress.{identity}", sub, push)
    hb = ctx.socket(zmq.PUSH)  # hb.bus joins the stream like any publisher's frame
    hb.connect(INGRESS_INPROC)
    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    print("ready", flush=True)
    seq = 0
    next_hb = time.monotonic() + hb_s
    while not stop:
        if zap.socket.poll(max(1, int((next_hb - time.monotonic()) * 1000))):
            zap.handle_pending()
        if time.monotonic() >= next_hb:
            seq += 1
            stats = {name: p.statistics() for name, p in proxies.items()}
            detail = {
                "ready": True,
                "forwarded": {name: s[0] for name, s in stats.items() if name != "egress"},
                "egress_out": stats["egress"][6],
                "keys_admitted": zap.admitted,
                "keys_refused": zap.refused,
                "wrong_port": zap.wrong_port,
            }
            now = time.time_ns()
            beat = Heartbeat(
                service="bus", ready=True, detail=detail, producer="bus@prototype", seq=seq,
                ts_event=now, ts_publish=now,
            )  # fmt: skip
            hb.send_multipart((b"hb.bus", encode(beat)))
            next_hb = time.monotonic() + hb_s
    for proxy in proxies.values():
        proxy.terminate()
    os._exit(0)  # the proxies' sockets belong to their (ended) threads: no orderly ctx.term()


def serve_curve_proxy(keys_dir: str, host: str, ingress_port: int, egress_port: int) -> None:
    security = BusSecurity.load(keys_dir, "bus")
    ctx: zmq.Context[Any] = zmq.Context(io_threads=2)
    zap = ZapHandler(ctx, security.ring)  # bound before any server socket
    front, back = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    for sock in (front, back):
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        security.server(sock)
    front.bind(f"tcp://{host}:{ingress_port}")
    back.bind(f"tcp://{host}:{egress_port}")
    proxy = _steer(ctx, "curve_proxy", front, back)
    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    print("ready", flush=True)
    while not stop:
        if zap.socket.poll(200):
            zap.handle_pending()
    proxy.terminate()
    os._exit(0)


# --------------------------------------------------------------------------------------------
# The far end: one subscriber process per design (throughput receiver and echo in one)


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
    sub.setsockopt(zmq.SUBSCRIBE, _ECHO_IN_TOPIC)
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
            if topic == _ECHO_IN_TOPIC:
                pub.send(_ECHO_TOPIC, zmq.SNDMORE)
                pub.send(frames[-1])
            elif topic == PROBE_TOPIC:
                pub.send_multipart((_ECHO_TOPIC, PROBE_PAYLOAD))
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


# --------------------------------------------------------------------------------------------
# The benchmark side


@dataclass
class Topology:
    """Where a design's clients connect: one publisher endpoint per identity, one egress."""

    design: str
    egress: str
    ingress: dict[str, str]
    curve: bool

    def pub_endpoint(self, identity: str) -> str:
        return self.ingress.get(identity, self.ingress.get("*", ""))


def _python_cmd(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _readline(stream: IO[str], timeout_s: float, what: str) -> str:
    if not select.select([stream], [], [], timeout_s)[0]:
        raise TimeoutError(f"{what}: no answer in {timeout_s}s")
    line = stream.readline()
    if not line:
        raise RuntimeError(f"{what}: the process ended")
    return line.strip()


@contextmanager
def forwarder(design: str, keys_dir: str) -> Iterator[Topology]:
    """One forwarder process of ``design`` on fresh ports."""
    egress = free_port()
    if design == "prototype":
        ports = {identity: free_port() for identity in INGRESS_IDENTITIES}
        spec = ",".join(f"{i}={p}" for i, p in ports.items())
        cmd = _python_cmd("--serve-prototype", "--keys-dir", keys_dir, "--egress", str(egress),
                          "--ingress", spec)  # fmt: skip
        topology = Topology(
            design,
            f"tcp://127.0.0.1:{egress}",
            {i: f"tcp://127.0.0.1:{p}" for i, p in ports.items()},
            curve=True,
        )
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    elif design == "curve_proxy":
        ingress = free_port()
        cmd = _python_cmd("--serve-curve-proxy", "--keys-dir", keys_dir, "--egress", str(egress),
                          "--ingress", str(ingress))  # fmt: skip
        topology = Topology(
            design, f"tcp://127.0.0.1:{egress}", {"*": f"tcp://127.0.0.1:{ingress}"}, curve=True
        )
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    else:
        ingress = free_port()
        env = {
            **os.environ,
            "BUS_PUB_ENDPOINT": f"tcp://127.0.0.1:{ingress}",
            "BUS_SUB_ENDPOINT": f"tcp://127.0.0.1:{egress}",
            "BUS_SECRET_FILE": str(Path(keys_dir).parent / "bus.key"),
            "BUS_KEYS_DIR": keys_dir,
            "BUS_CURVE": "0" if design == "plain" else "1",
        }
        topology = Topology(
            design,
            env["BUS_SUB_ENDPOINT"],
            {"*": env["BUS_PUB_ENDPOINT"]},
            curve=design != "plain",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.busproxy"],
            env=env,
            stdout=subprocess.DEVNULL,  # its log lines: nobody reads them here
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
    try:
        if design in ("prototype", "curve_proxy"):
            assert proc.stdout is not None
            _readline(proc.stdout, 60, f"{design} forwarder")
        yield topology
    finally:
        proc.terminate()
        proc.wait(timeout=15)


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
        self.sub.setsockopt(zmq.SUBSCRIBE, _ECHO_TOPIC)
        self.far = subprocess.Popen(
            _python_cmd("--far-end", "--sub", topology.egress, "--pub",
                        topology.pub_endpoint("monitor"),
                        "--keys-dir", keys_dir if topology.curve else ""),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert self.far.stdout is not None
        _readline(self.far.stdout, 60, f"{topology.design} far end")

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
            lambda: self.echo_pub.send_multipart((_ECHO_IN_TOPIC, PROBE_PAYLOAD)),
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
        _readline(self.far.stdout, 30, "far end arm")
        for topic, payload in frames:
            self.bar_pub.send(topic, zmq.SNDMORE)
            self.bar_pub.send(payload)
        rate, got = _readline(self.far.stdout, 120, "far end count").split()
        return float(rate), int(got)

    def echo_stream(self, frames: list[tuple[bytes, bytes]]) -> float:
        """``inference_throughput``'s bus-alone baseline, with its own code."""
        rate = len(frames) / _stream(self.echo_pub, self.sub, frames, _ECHO_TOPIC, _ECHO_IN_TOPIC)
        self._drain()
        return rate

    def round_trips(self, bars: list[Bar]) -> list[float]:
        """``bar_to_signal_1``'s bare round trip: encode and send one bar payload, wait for its
        echo (``bench_inference._Bus.send_echo``/``recv_echo``)."""
        samples = []
        for bar in bars:
            t0 = time.perf_counter()
            payload = encode(
                msgspec.structs.replace(bar, producer="marketdata-bench", ts_publish=time.time_ns())
            )
            self.echo_pub.send_multipart((_ECHO_IN_TOPIC, payload))
            while True:
                if not self.sub.poll(10_000):
                    raise TimeoutError(f"{self.topology.design}: no echo of bar {bar.seq}")
                frames = self.sub.recv_multipart()
                if frames[0] == _ECHO_TOPIC and decode(frames[-1]).seq == bar.seq:
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


@dataclass
class Measured:
    throughput: list[float] = field(default_factory=list)
    echo_stream: list[float] = field(default_factory=list)
    rtt_p50_ms: list[float] = field(default_factory=list)
    rtt_p99_ms: list[float] = field(default_factory=list)
    short_bursts: int = 0  # bursts where fewer frames arrived than were sent


def run_rounds(
    keys_dir: str, rounds: int, n_burst: int, n_echo: int, n_latency: int
) -> dict[str, Measured]:
    bars = bus_bars(max(n_burst, n_echo, n_latency))
    frames = [(f"bar.{b.symbol}".encode(), encode(b)) for b in bars[:n_burst]]
    echo_frames = frames[:n_echo]
    measured = {design: Measured() for design in DESIGNS}
    with ExitStack() as stack:
        topologies = [stack.enter_context(forwarder(d, keys_dir)) for d in DESIGNS]
        clients = {t.design: Clients(t, keys_dir) for t in topologies}
        try:
            for c in clients.values():
                c.wait_ready()
            for r in range(rounds):
                for design in DESIGNS:  # interleaved: A B C, A B C, ...
                    c, m = clients[design], measured[design]
                    rate, got = c.throughput(frames)
                    m.throughput.append(rate)
                    m.short_bursts += got < len(frames)
                    m.echo_stream.append(c.echo_stream(echo_frames))
                    rtt = np.asarray(c.round_trips(bars[:n_latency])) * 1e3
                    m.rtt_p50_ms.append(float(np.percentile(rtt, 50)))
                    m.rtt_p99_ms.append(float(np.percentile(rtt, 99)))
                    print(
                        f"round {r + 1} {design:11s}: {rate:9,.0f} bars/s"
                        + (f" ({got}/{len(frames)})" if got < len(frames) else "")
                        + f"  echo stream {m.echo_stream[-1]:9,.0f} bars/s"
                        + f"  rtt p50 {m.rtt_p50_ms[-1]:.3f} ms p99 {m.rtt_p99_ms[-1]:.3f} ms",
                        flush=True,
                    )
        finally:
            for c in clients.values():
                c.close()
    return measured


def summary(measured: dict[str, Measured]) -> list[dict[str, Any]]:
    """Median over rounds per design and row; ratios against plain and against python."""
    med = {
        d: {
            "throughput_bars_s": statistics.median(m.throughput),
            "echo_stream_bars_s": statistics.median(m.echo_stream),
            "rtt_p50_ms": statistics.median(m.rtt_p50_ms),
            "rtt_p99_ms": statistics.median(m.rtt_p99_ms),
        }
        for d, m in measured.items()
    }
    rows = []
    for name in ("throughput_bars_s", "echo_stream_bars_s", "rtt_p50_ms", "rtt_p99_ms"):
        row: dict[str, Any] = {"row": name}
        for d in DESIGNS:
            row[d] = round(med[d][name], 4 if "ms" in name else 0)
        row["prototype_vs_python"] = round(med["prototype"][name] / med["python"][name], 3)
        row["prototype_vs_plain"] = round(med["prototype"][name] / med["plain"][name], 3)
        row["python_vs_plain"] = round(med["python"][name] / med["plain"][name], 3)
        row["prototype_vs_curve_proxy"] = round(
            med["prototype"][name] / med["curve_proxy"][name], 3
        )
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    ratios = ("prototype_vs_python", "prototype_vs_plain", "python_vs_plain",
              "prototype_vs_curve_proxy")  # fmt: skip
    print("| row | A plain (C, no CURVE) | B python (CURVE) | C prototype (C, CURVE) "
          "| D curve_proxy (C, CURVE, no checks) | C/B | C/A | B/A | C/D |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[d]:,.0f}" if "bars" in r["row"] else f"{r[d]:.3f}" for d in DESIGNS]
        cells += [f"{r[k]:.2f}" for k in ratios]
        print(f"| {r['row']} | " + " | ".join(cells) + " |")


def machine() -> dict[str, Any]:
    from bench.__main__ import machine as bench_machine

    info = bench_machine()
    info["loadavg"] = os.getloadavg()
    return info


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=50_000, help="bars per throughput burst")
    parser.add_argument("--echo", type=int, default=20_000, help="bars per echo stream")
    parser.add_argument("--latency", type=int, default=2_000, help="round trips per round")
    parser.add_argument("--no-checks", action="store_true", help="skip the prototype's probes")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "forwarder-designs.json"))
    # internal modes: the processes this benchmark starts
    parser.add_argument("--serve-prototype", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-curve-proxy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--far-end", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keys-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--egress", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ingress", default="", help=argparse.SUPPRESS)
    parser.add_argument("--sub", default="", help=argparse.SUPPRESS)
    parser.add_argument("--pub", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_prototype:
        ports = {k: int(v) for k, v in (kv.split("=") for kv in args.ingress.split(","))}
        serve_prototype(args.keys_dir, "127.0.0.1", args.egress, ports, hb_s=0.5)
        return 0
    if args.serve_curve_proxy:
        serve_curve_proxy(args.keys_dir, "127.0.0.1", int(args.ingress), args.egress)
        return 0
    if args.far_end:
        serve_far_end(args.sub, args.pub, args.keys_dir)
        return 0

    state = ROOT / "var" / "bench-forwarder-designs"
    keys_dir = str(ensure_keys(state / "curve"))  # before any process starts: no race
    started = time.monotonic()
    load_before = os.getloadavg()
    measured = run_rounds(keys_dir, args.rounds, args.burst, args.echo, args.latency)
    rows = summary(measured)
    info = machine()
    print(f"\n{args.rounds} rounds, interleaved {'/'.join(DESIGNS)}; medians over rounds; "
          f"{time.monotonic() - started:.0f} s; load average before {load_before[0]:.1f}, after "
          f"{info['loadavg'][0]:.1f}; {info['cpu']}, {info['cores']} cores")  # fmt: skip
    print_table(rows)
    checks: dict[str, Any] = {}
    if not args.no_checks:
        from bench.forwarder_design_checks import run_checks

        checks = run_checks(keys_dir, forwarder)
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
        "machine": info,
        "settings": vars(args),
        "rows": rows,
        "per_round": {d: vars(m) for d, m in measured.items()},
        "checks": checks,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
