"""The bus forwarder: XSUB (publishers connect) <-> XPUB (subscribers connect).

With CURVE on (``BUS_CURVE=1``, the default) both sides are CURVE servers behind one ZAP handler
that admits only the keys in the key folder. Each published frame is checked before it is
forwarded: exactly ``[topic, payload]``, a topic its sender's identity may publish
(``shared.keys.PUBLISH_RIGHTS``), at most ``BUS_MAX_MESSAGE_BYTES`` (``ZMQ_MAXMSGSIZE`` drops a
larger one at the socket). It goes out as ``[topic, sender identity, payload]``, so subscribers know
who sent it from the key, not from the payload. Refusals are counted per reason and logged once per
reason per minute; the forwarder publishes its counters as ``hb.bus`` every heartbeat interval.
The forwarder decodes nothing and holds no state: if it restarts, ZeroMQ reconnects both sides and
re-sends subscriptions by itself.

With ``BUS_CURVE=0`` it is the plain C ``zmq.proxy`` (the baseline the benchmarks compare with).

    python -m shared.busproxy
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from typing import Any

import zmq

from shared.config import BusSettings, ConfigError, bus_settings
from shared.curve import BusSecurity, ZapHandler, peer_identity
from shared.heap import settle_heap
from shared.keys import KeyFileError, may_publish
from shared.logs import configure, event
from shared.messages import Heartbeat, encode
from shared.validate import RefusalCounter

log = logging.getLogger("busproxy")


class Forwarder:
    """One poll loop: ZAP requests, published frames (checked), subscriptions upstream."""

    def __init__(self, settings: BusSettings, security: BusSecurity) -> None:
        self.settings = settings
        self.ctx: zmq.Context[Any] = zmq.Context(io_threads=2)
        self.zap = ZapHandler(self.ctx, security.ring)  # bound before any server socket
        self.frontend = self.ctx.socket(zmq.XSUB)
        self.backend = self.ctx.socket(zmq.XPUB)
        for sock in (self.frontend, self.backend):
            sock.setsockopt(zmq.SNDHWM, 200_000)
            sock.setsockopt(zmq.RCVHWM, 200_000)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, settings.max_message_bytes)
            security.server(sock)
        self.forwarded = 0
        self.refused = RefusalCounter()
        self._hb_seq = 0
        self._producer = f"bus@{id(self):x}"
        self._verdicts: dict[tuple[str, bytes], str] = {}  # (identity, topic) -> "" or reason

    def bind(self, host: str, pub_port: str, sub_port: str) -> None:
        self.frontend.bind(f"tcp://{host}:{pub_port}")
        self.backend.bind(f"tcp://{host}:{sub_port}")

    def _refuse(self, reason: str, identity: str, topic: bytes) -> None:
        if self.refused.add(reason):
            event(
                log,
                "frame_refused",
                logging.WARNING,
                reason=reason,
                sender=identity,
                topic=topic[:80].decode(errors="replace"),
                refused_total=self.refused.counts[reason],
            )

    def forward_pending(self, limit: int = 10_000) -> None:
        """Check and forward up to ``limit`` queued frames without blocking.

        The hot loop of the whole bus, so it is written for speed: only the first frame is
        received as a ``zmq.Frame`` (its ``User-Id`` property names the sender's key), the rest
        as bytes (copying a bar-sized frame is cheaper than a zero-copy Frame object), and the
        verdict per (identity, topic) is cached: the set of both is small and fixed."""
        frontend, backend = self.frontend, self.backend
        verdicts = self._verdicts
        more = zmq.SNDMORE
        for _ in range(limit):
            try:
                first = frontend.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity = peer_identity(first)
            topic = first.bytes
            rest = frontend.recv_multipart() if first.more else []  # a message is atomic
            if len(rest) != 1:
                self._refuse("frame_count", identity, topic)
                continue
            key = (identity, topic)
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = self._verdict(identity, topic)
                if len(verdicts) >= 4096:  # hostile senders inventing topics: stay bounded
                    verdicts.clear()
                verdicts[key] = verdict
            if verdict:
                self._refuse(verdict, identity, topic)
                continue
            backend.send(topic, more)
            backend.send(identity.encode(), more)
            backend.send(rest[0])
            self.forwarded += 1

    @staticmethod
    def _verdict(identity: str, topic: bytes) -> str:
        """ "" when ``identity`` may publish ``topic``, else the refusal reason."""
        try:
            topic_text = topic.decode("ascii")
        except UnicodeDecodeError:
            return "topic_not_ascii"
        return "" if may_publish(identity, topic_text) else "topic_not_allowed"

    def subscriptions_upstream(self) -> None:
        while True:
            try:
                frames = self.backend.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.frontend.send_multipart(frames)

    def heartbeat(self) -> None:
        self._hb_seq += 1
        detail = {
            "ready": True,
            "forwarded": self.forwarded,
            "refused": self.refused.snapshot(),
            "keys_admitted": self.zap.admitted,
            "keys_refused": self.zap.refused,
        }
        now = time.time_ns()
        message = Heartbeat(
            service="bus",
            ready=True,
            detail=detail,
            producer=self._producer,
            seq=self._hb_seq,
            ts_event=now,
            ts_publish=now,
        )
        self.backend.send_multipart((b"hb.bus", b"bus", encode(message)))

    def run(self, stop: list[bool]) -> None:
        poller = zmq.Poller()
        poller.register(self.zap.socket, zmq.POLLIN)
        poller.register(self.frontend, zmq.POLLIN)
        poller.register(self.backend, zmq.POLLIN)
        interval = self.settings.heartbeat_interval_s
        next_hb = time.monotonic() + interval
        while not stop:
            ready = dict(poller.poll(timeout=max(1, int((next_hb - time.monotonic()) * 1000))))
            if self.zap.socket in ready:
                self.zap.handle_pending()
            if self.backend in ready:
                self.subscriptions_upstream()
            if self.frontend in ready:
                self.forward_pending()
            if time.monotonic() >= next_hb:
                self.heartbeat()
                next_hb = time.monotonic() + interval

    def close(self) -> None:
        for sock in (self.frontend, self.backend):
            sock.close(linger=0)
        self.zap.close()
        self.ctx.term()


def _plain_proxy(settings: BusSettings, pub_port: str, sub_port: str) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    frontend = ctx.socket(zmq.XSUB)
    backend = ctx.socket(zmq.XPUB)
    for sock in (frontend, backend):
        sock.setsockopt(zmq.SNDHWM, 200_000)
        sock.setsockopt(zmq.RCVHWM, 200_000)
        sock.setsockopt(zmq.MAXMSGSIZE, settings.max_message_bytes)
    frontend.bind(f"tcp://{settings.bind_host}:{pub_port}")
    backend.bind(f"tcp://{settings.bind_host}:{sub_port}")
    with contextlib.suppress(KeyboardInterrupt, SystemExit, zmq.ContextTerminated):
        zmq.proxy(frontend, backend)


def main() -> int:
    configure("busproxy")
    try:
        settings = bus_settings()
        security = BusSecurity.load(settings.resolved_keys_dir, "bus") if settings.curve else None
    except (ConfigError, KeyFileError, OSError) as exc:
        event(log, "config_error", logging.ERROR, error=str(exc))
        return 2
    pub_port = settings.pub_endpoint.rsplit(":", 1)[-1]
    sub_port = settings.sub_endpoint.rsplit(":", 1)[-1]
    if security is None:
        event(log, "started", xsub=pub_port, xpub=sub_port, bind_host=settings.bind_host, curve=0)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        _plain_proxy(settings, pub_port, sub_port)
        event(log, "stopped")
        return 0
    forwarder = Forwarder(settings, security)
    try:
        forwarder.bind(settings.bind_host, pub_port, sub_port)
    except zmq.ZMQError as exc:
        event(log, "config_error", logging.ERROR, error=f"BUS_BIND_HOST/ports: {exc}")
        return 2
    stop: list[bool] = []
    settle_heap()  # the forwarder's loop allocates per frame only; start-up is done
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    event(
        log,
        "started",
        xsub=pub_port,
        xpub=sub_port,
        bind_host=settings.bind_host,
        curve=1,
        keys_dir=str(security.keys_dir),
    )
    forwarder.run(stop)
    forwarder.close()
    event(log, "stopped", forwarded=forwarder.forwarded, refused=forwarder.refused.snapshot())
    return 0


if __name__ == "__main__":
    sys.exit(main())
