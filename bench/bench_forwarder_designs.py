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

* ``throughput``: a burst of N real encoded ``Bar`` frames (``bench.bench_bus.synthetic_bars``, the
  ``bus_publish`` row's bars) from one publisher (marketdata key) to one subscriber process that
  decodes each one, bars/s from its first to its last receipt (as ``bus_publish``).
* ``echo_stream``: the ``inference_throughput`` row's baseline ("the same bars through the bus
  alone"): frames published back to back on ``pnl.IN`` to an echo process that answers each on
  ``pnl.ECHO`` (``bench.bus_harness.stream``), bars/s until the last echo is back.
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
import signal
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `bench` is not an installed package
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import zmq  # noqa: E402
from ibsim.process import free_ports  # noqa: E402

from bench.bench_bus import synthetic_bars  # noqa: E402
from bench.forwarder_design_clients import (  # noqa: E402
    Clients,
    Topology,
    python_cmd,
    readline,
    serve_far_end,
)
from shared.curve import BusSecurity, ZapHandler  # noqa: E402
from shared.keys import PUBLISH_RIGHTS, ensure_keys  # noqa: E402
from shared.messages import Heartbeat, encode  # noqa: E402

DESIGNS = ("plain", "python", "prototype", "curve_proxy")
HWM = 200_000  # the production forwarder's HWMs, on every prototype socket too
MAX_MESSAGE_BYTES = 256 * 1024  # BUS_MAX_MESSAGE_BYTES's default
INGRESS_INPROC = "inproc://ingress"
# identities that may publish something get an ingress port; "bus" is the forwarder itself
INGRESS_IDENTITIES = tuple(i for i, rights in PUBLISH_RIGHTS.items() if rights and i != "bus")


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
# The benchmark side


@contextmanager
def forwarder(design: str, keys_dir: str) -> Iterator[Topology]:
    """One forwarder process of ``design`` on fresh ports."""
    # every port of the topology in one call (ibsim.process.free_ports: distinct, below the
    # ephemeral range); only the prototype uses more than one ingress
    egress, *ingress_ports = free_ports(1 + len(INGRESS_IDENTITIES))
    ingress = ingress_ports[0]
    if design == "prototype":
        ports = dict(zip(INGRESS_IDENTITIES, ingress_ports, strict=True))
        spec = ",".join(f"{i}={p}" for i, p in ports.items())
        cmd = python_cmd("--serve-prototype", "--keys-dir", keys_dir, "--egress", str(egress),
                          "--ingress", spec)  # fmt: skip
        topology = Topology(
            design,
            f"tcp://127.0.0.1:{egress}",
            {i: f"tcp://127.0.0.1:{p}" for i, p in ports.items()},
            curve=True,
        )
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    elif design == "curve_proxy":
        cmd = python_cmd("--serve-curve-proxy", "--keys-dir", keys_dir, "--egress", str(egress),
                          "--ingress", str(ingress))  # fmt: skip
        topology = Topology(
            design, f"tcp://127.0.0.1:{egress}", {"*": f"tcp://127.0.0.1:{ingress}"}, curve=True
        )
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    else:
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
            readline(proc.stdout, 60, f"{design} forwarder")
        yield topology
    finally:
        proc.terminate()
        proc.wait(timeout=15)


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
    bars = synthetic_bars(max(n_burst, n_echo, n_latency))
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
