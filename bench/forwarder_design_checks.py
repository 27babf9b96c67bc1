"""The prototype forwarder's holes, probed with real sockets (``bench_forwarder_designs.py``).

Each check prints what it saw and returns it as data. Where the answer differs from today's
forwarder, the same probe runs on ``python`` (``shared.busproxy`` with CURVE) too. Readiness is
by marker frames (sent until one arrives), and each probe ends with an end marker sent after
it on the same connection, so "did not arrive" means "did not arrive before a later frame".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from itertools import combinations
from typing import Any

import zmq

from bench.bench_forwarder_designs import INGRESS_IDENTITIES
from bench.forwarder_design_clients import Topology
from shared.curve import BusSecurity
from shared.keys import PUBLISH_RIGHTS
from shared.messages import Heartbeat, decode

ForwarderFactory = Callable[[str, str], AbstractContextManager[Topology]]


def rights_overlaps() -> dict[str, Any]:
    """Can the topic name its sender? Two rights overlap when one entry, read as a SUB prefix,
    is a prefix of the other's (then one topic would match two identities)."""
    entries = [(i, e) for i, rights in PUBLISH_RIGHTS.items() for e in rights]
    overlaps = [
        f"{a}:{ea} / {b}:{eb}"
        for (a, ea), (b, eb) in combinations(entries, 2)
        if a != b and (ea.startswith(eb) or eb.startswith(ea))
    ]
    exact = [f"{i}:{e}" for i, e in entries if not e.endswith(".")]
    print(f"check rights: cross-identity prefix overlaps: {overlaps or 'none'}")
    print(f"check rights: exact topics a SUB filter widens to prefixes: {exact}")
    return {"overlaps": overlaps, "exact_entries_become_prefixes": exact}


class _Probe:
    """Sockets on one running design: publishers per identity, listeners on the egress."""

    def __init__(self, topology: Topology, keys_dir: str) -> None:
        self.topology = topology
        self.keys_dir = keys_dir
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sockets: list[zmq.Socket[bytes]] = []

    def _secure(self, sock: zmq.Socket[bytes], identity: str) -> None:
        if self.topology.curve:
            BusSecurity.load(self.keys_dir, identity).client(sock, "bus")

    def publisher(self, identity: str, port_of: str = "", kind: int = zmq.PUB) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        self._secure(sock, identity)
        sock.connect(self.topology.pub_endpoint(port_of or identity))
        self.sockets.append(sock)
        return sock

    def listener(self, prefixes: tuple[bytes, ...] = (b"",), hwm: int = 0) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.LINGER, 0)
        self._secure(sock, "monitor")
        sock.connect(self.topology.egress)
        for prefix in prefixes:
            sock.setsockopt(zmq.SUBSCRIBE, prefix)
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        self.ctx.term()


def _until(
    sock: zmq.Socket[bytes], send: Callable[[], None], marker: bytes, timeout_s: float = 30.0
) -> list[list[bytes]]:
    """Send (again) until a frame with topic ``marker`` arrives; every frame seen before it."""
    seen: list[list[bytes]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        send()
        while sock.poll(200):
            frames = sock.recv_multipart()
            seen.append(frames)
            if frames[0] == marker:
                return seen
    raise TimeoutError(f"no {marker!r} within {timeout_s}s")


def _mark(pub: zmq.Socket[bytes], topic: bytes) -> Callable[[], None]:
    def send() -> None:
        pub.send_multipart((topic, b"marker"))

    return send


def _frames_with(seen: list[list[bytes]], topic: bytes) -> list[list[bytes]]:
    return [f for f in seen if f[0] == topic]


def topic_and_frame_checks(topology: Topology, keys_dir: str) -> dict[str, Any]:
    """Wrong topic, a sender ignoring subscriptions, wrong port, 1 and 3 frames, exact topics."""
    p = _Probe(topology, keys_dir)
    try:
        listen = p.listener()
        md = p.publisher("marketdata")
        _until(listen, _mark(md, b"bar.READY"), b"bar.READY")
        out: dict[str, Any] = {}
        # a topic outside the sender's rights
        for _ in range(20):
            md.send_multipart((b"fill.FORGED", b"x"))
        seen = _until(listen, _mark(md, b"bar.END1"), b"bar.END1")
        out["wrong_topic_arrived"] = bool(_frames_with(seen, b"fill.FORGED"))
        # a 3-frame and a 1-frame message on an allowed topic; an exact topic widened
        md.send_multipart((b"bar.THREE", b"execution", b"payload"))
        md.send(b"bar.ONE")
        md.send_multipart((b"hb.marketdataX", b"x"))
        md.send_multipart((b"bar.\xff", b"x"))  # not ASCII after an allowed prefix
        seen = _until(listen, _mark(md, b"bar.END2"), b"bar.END2")
        three = _frames_with(seen, b"bar.THREE")
        out["three_frames_arrive_as"] = [len(f) for f in three]
        out["three_frames_middle"] = [f[1].decode(errors="replace") for f in three]
        out["one_frame_arrives_as"] = [len(f) for f in _frames_with(seen, b"bar.ONE")]
        out["hb.marketdataX_arrived"] = bool(_frames_with(seen, b"hb.marketdataX"))
        out["non_ascii_topic_arrived"] = bool(_frames_with(seen, b"bar.\xff"))
        if topology.design == "prototype":
            out.update(_hostile_checks(p, listen))
        print(f"check frames ({topology.design}): {out}")
        return out
    finally:
        p.close()


def _hostile_checks(p: _Probe, listen: zmq.Socket[bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    md = p.publisher("marketdata")
    # a sender that ignores the SUB's subscriptions (XPUB_MANUAL, subscribed to everything
    # itself): does the SUB also filter on receipt?
    rogue = p.publisher("marketdata", kind=zmq.XPUB)
    rogue.setsockopt(zmq.XPUB_MANUAL, 1)
    deadline = time.monotonic() + 30
    while not rogue.poll(200):  # the SUB's subscription messages arrive once connected
        assert time.monotonic() < deadline, "the ingress SUB never sent its subscriptions"
    while rogue.poll(100):
        rogue.recv()
    rogue.setsockopt(zmq.SUBSCRIBE, b"")  # this pipe now gets every topic
    _until(listen, _mark(rogue, b"bar.ROGUE_READY"), b"bar.ROGUE_READY")
    for _ in range(20):
        rogue.send_multipart((b"fill.ROGUE", b"x"))
    seen = _until(listen, _mark(rogue, b"bar.END3"), b"bar.END3")
    out["unsubscribed_topic_from_rogue_sender_arrived"] = bool(_frames_with(seen, b"fill.ROGUE"))
    # the execution key on marketdata's port, sending a marketdata topic
    wrong = p.publisher("execution", port_of="marketdata")
    for _ in range(50):
        wrong.send_multipart((b"bar.WRONGPORT", b"x"))
        time.sleep(0.01)  # paced: the connection attempts span the 0.5 s it takes
    seen = _until(listen, _mark(md, b"bar.END4"), b"bar.END4")
    out["wrong_port_arrived"] = bool(_frames_with(seen, b"bar.WRONGPORT"))
    hb = _until(listen, lambda: None, b"hb.bus")[-1]
    beat = decode(hb[-1])
    assert isinstance(beat, Heartbeat)
    out["hb_bus_detail"] = beat.detail
    return out


def ordering_check(topology: Topology, keys_dir: str, n: int = 20_000) -> dict[str, Any]:
    """Two publishers (marketdata, inference: two connections, two ingress ports) interleave
    numbered frames; two subscribers record what arrives. Per-publisher order and one total
    order (both subscribers see the same interleaving)?"""
    p = _Probe(topology, keys_dir)
    try:
        subs = [p.listener((b"bar.ORD", b"signal.ORD")) for _ in range(2)]
        md, inf = p.publisher("marketdata"), p.publisher("inference")
        for sub in subs:
            _until(sub, _mark(md, b"bar.ORD_READY"), b"bar.ORD_READY")
            _until(sub, _mark(inf, b"signal.ORD_READY"), b"signal.ORD_READY")
        for i in range(n):
            md.send_multipart((b"bar.ORD", str(i).encode()))
            inf.send_multipart((b"signal.ORD", str(i).encode()))
        orders: list[list[tuple[bytes, int]]] = []
        for sub in subs:
            got: list[tuple[bytes, int]] = []
            while len(got) < 2 * n and sub.poll(10_000):
                frames = sub.recv_multipart()
                if frames[-1] != b"marker":
                    got.append((frames[0], int(frames[-1])))
            orders.append(got)
        per_publisher = all(
            [i for t, i in got if t == topic] == list(range(n))
            for got in orders
            for topic in (b"bar.ORD", b"signal.ORD")
        )
        switches = sum(a[0] != b[0] for a, b in zip(orders[0], orders[0][1:], strict=False))
        out = {
            "received": [len(o) for o in orders],
            "per_publisher_order_kept": per_publisher,
            "both_subscribers_same_total_order": orders[0] == orders[1],
            "publisher_switches_in_stream": switches,
        }
        print(f"check ordering ({topology.design}): {out}")
        return out
    finally:
        p.close()


def slow_subscriber_check(topology: Topology, keys_dir: str, n: int = 260_000) -> dict[str, Any]:
    """One subscriber that does not read (RCVHWM 100) beside one that does: does the fast one
    get every frame of a burst, and what does the slow one lose? The burst is larger than the
    forwarder's 200,000-frame SNDHWM per subscriber, so the slow one's queue overflows."""
    p = _Probe(topology, keys_dir)
    try:
        slow = p.listener((b"bar.",), hwm=100)
        fast = p.listener((b"bar.",))
        md = p.publisher("marketdata")
        for sub in (slow, fast):
            _until(sub, _mark(md, b"bar.SLOW_READY"), b"bar.SLOW_READY")
        payload = b"x" * 160
        for _ in range(n):
            md.send_multipart((b"bar.BURST", payload))
        md.send_multipart((b"bar.SLOW_END", b"marker"))
        fast_got = 0
        while fast.poll(30_000):  # the end marker was sent after the burst, on one connection
            topic = fast.recv_multipart()[0]
            if topic == b"bar.SLOW_END":
                break
            fast_got += topic == b"bar.BURST"
        slow_got = 0
        while slow.poll(1000):
            slow_got += slow.recv_multipart()[0] == b"bar.BURST"
        out = {"sent": n, "fast_got": fast_got, "slow_got": slow_got}
        print(f"check slow subscriber ({topology.design}): {out}")
        return out
    finally:
        p.close()


def run_checks(keys_dir: str, forwarder: ForwarderFactory) -> dict[str, Any]:
    print("\nchecks (facts for docs/forwarder-design.md):")
    results: dict[str, Any] = {"rights": rights_overlaps(), "ingress_ports": INGRESS_IDENTITIES}
    for design in ("python", "prototype"):
        with forwarder(design, keys_dir) as topology:
            results[design] = {
                "frames": topology_and_frame_checks_safe(topology, keys_dir),
                "ordering": ordering_check(topology, keys_dir),
                "slow_subscriber": slow_subscriber_check(topology, keys_dir),
            }
    return results


def topology_and_frame_checks_safe(topology: Topology, keys_dir: str) -> dict[str, Any]:
    try:
        return topic_and_frame_checks(topology, keys_dir)
    except (TimeoutError, AssertionError) as exc:  # a probe that never got ready: say so
        print(f"check frames ({topology.design}) could not run: {exc}")
        return {"error": str(exc)}
