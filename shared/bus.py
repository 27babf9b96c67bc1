"""The ZeroMQ bus: PUB/SUB streams through the forwarder, ROUTER/DEALER commands.

Streams are multipart frames ``[topic, msgpack payload]``. Publishers connect to the forwarder's
XSUB side, subscribers to its XPUB side (see ``shared.busproxy``), so any number of instances can
produce or consume a topic. A subscriber tracks ``seq`` per (producer, topic): it drops duplicates,
counts gaps, and counts and drops malformed frames (logged once per topic) without ever raising.

Commands go to one service's ROUTER socket as a signed ``Command``; the reply is a ``Reply``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from shared.auth import AuthError, Verifier, sign
from shared.logs import event
from shared.messages import Command, Heartbeat, Message, Reply, decode, encode

log = logging.getLogger("bus")

_command_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(Command)
_reply_decoder = msgspec.msgpack.Decoder(Reply)


def producer_id(service: str) -> str:
    """Unique per process start, so a restarted producer opens a new sequence stream."""
    return f"{service}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Publisher:
    """Stamps ``producer``, ``seq`` (per topic) and ``ts_publish``, then sends without blocking.

    A producer whose sequence has a meaning of its own (marketdata numbers each bar by its place
    in the series, stable across restarts) sets ``seq`` itself; it must increase per topic.

    PUB never blocks: past the high-water mark ZeroMQ drops, which the subscriber sees as a gap.
    """

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, producer: str, hwm: int = 100_000):
        self.producer = producer
        self._socket = ctx.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.LINGER, 500)
        self._socket.connect(endpoint)
        self._seq: dict[str, int] = {}

    def publish(self, message: Message) -> Message:
        topic = message.topic()
        seq = message.seq or self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        stamped = msgspec.structs.replace(
            message, producer=self.producer, seq=seq, ts_publish=time.time_ns()
        )
        self._socket.send_multipart((topic.encode(), encode(stamped)), copy=False)
        return stamped

    def close(self) -> None:
        self._socket.close()


@dataclass
class StreamStats:
    received: int = 0
    malformed: int = 0
    duplicates: int = 0
    gaps: int = 0  # number of missing messages, summed
    malformed_topics: set[str] = field(default_factory=set)


class Subscriber:
    """Receives decoded messages for topic prefixes, with gap/duplicate/malformed accounting."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        topics: Iterable[str],
        hwm: int = 100_000,
    ) -> None:
        self._socket = ctx.socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, hwm)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(endpoint)
        for topic in topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._sync: zmq.Socket[bytes] = zmq.Socket.shadow(self._socket.underlying)
        self._last_seq: dict[tuple[str, str], int] = {}
        self.last_seen_ns: dict[str, int] = {}  # producer -> time of its last message
        self.stats = StreamStats()

    def accept(self, topic_bytes: bytes, payload: bytes) -> Message | None:
        """Decode and sequence-check one frame; None when it was dropped."""
        topic = topic_bytes.decode(errors="replace")
        try:
            message = decode(payload)
            if message.topic() != topic:
                raise ValueError(f"payload topic {message.topic()!r} != frame topic")
        except (
            msgspec.DecodeError,
            msgspec.ValidationError,
            ValueError,
            UnicodeDecodeError,
        ) as exc:
            self.stats.malformed += 1
            if topic not in self.stats.malformed_topics:
                self.stats.malformed_topics.add(topic)
                event(log, "malformed_frame", logging.WARNING, topic=topic, error=str(exc)[:200])
            return None
        self.stats.received += 1
        self.last_seen_ns[message.producer] = time.time_ns()
        key = (message.producer, topic)
        last = self._last_seq.get(key)
        if last is not None:
            if message.seq <= last:
                self.stats.duplicates += 1
                return None
            if message.seq > last + 1:
                missing = message.seq - last - 1
                self.stats.gaps += missing
                event(
                    log,
                    "sequence_gap",
                    logging.WARNING,
                    topic=topic,
                    producer=message.producer,
                    missing=missing,
                )
        self._last_seq[key] = message.seq
        return message

    def _accept_frames(self, frames: list[bytes]) -> Message | None:
        if len(frames) != 2:
            self.stats.malformed += 1
            event(log, "malformed_frame", logging.WARNING, frames=len(frames))
            return None
        return self.accept(frames[0], frames[1])

    async def recv(self) -> Message:
        while True:
            message = self._accept_frames(await self._socket.recv_multipart())
            if message is not None:
                return message

    async def recv_batch(self, max_messages: int = 256) -> list[Message]:
        """Wait for one message, then drain what is already queued without a trip through the
        event loop per message (about 5x cheaper per message under load)."""
        batch = [await self.recv()]
        while len(batch) < max_messages:
            try:
                frames = self._sync.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            message = self._accept_frames(frames)
            if message is not None:
                batch.append(message)
        return batch

    def close(self) -> None:
        self._socket.close()


Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class CommandError(Exception):
    """The service answered the command with an error."""


class CommandTimeout(CommandError):
    """No answer within the timeout: the service may be down or busy."""


class CommandServer:
    """Answers signed commands on a ROUTER socket; unsigned, stale or replayed ones are refused."""

    def __init__(self, ctx: zmq.asyncio.Context, bind: str, key: bytes, service: str) -> None:
        self._socket = ctx.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(bind)
        self._verifier = Verifier(key)
        self._handlers: dict[str, Handler] = {}
        self.service = service
        self.refused = 0

    def register(self, name: str, handler: Handler) -> None:
        self._handlers[name] = handler

    async def serve_forever(self) -> None:
        while True:
            frames = await self._socket.recv_multipart()
            identity, payload = frames[0], frames[-1]
            reply = await self._handle(payload)
            await self._socket.send_multipart([identity, b"", _command_encoder.encode(reply)])

    async def _handle(self, payload: bytes) -> Reply:
        try:
            command = _command_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.refused += 1
            event(log, "command_malformed", logging.WARNING, error=str(exc)[:200])
            return Reply(request_id="", ok=False, error=f"malformed command: {exc}")
        try:
            self._verifier.verify(command, command.ts)
        except AuthError as exc:
            self.refused += 1
            event(
                log,
                "command_refused",
                logging.WARNING,
                command=command.name,
                sender=command.sender,
                reason=str(exc),
            )
            return Reply(request_id=command.request_id, ok=False, error=f"unauthorised: {exc}")
        handler = self._handlers.get(command.name)
        if handler is None:
            return Reply(
                request_id=command.request_id,
                ok=False,
                error=f"unknown command {command.name!r}; known: {sorted(self._handlers)}",
            )
        try:
            result = await handler(dict(command.args))
        except Exception as exc:  # a failing handler must not take the service down
            event(log, "command_failed", logging.ERROR, command=command.name, error=repr(exc))
            return Reply(request_id=command.request_id, ok=False, error=str(exc) or repr(exc))
        # Health probes ask for status every few seconds: keep them out of the INFO feed.
        level = logging.DEBUG if command.name == "status" else logging.INFO
        event(log, "command", level, command=command.name, sender=command.sender)
        return Reply(request_id=command.request_id, ok=True, result=result)

    def close(self) -> None:
        self._socket.close()


def _signed_command(name: str, args: dict[str, Any], key: bytes, sender: str) -> Command:
    command = Command(
        name=name,
        args=args,
        request_id=secrets.token_hex(8),
        ts=time.time_ns(),
        nonce="",
        sender=sender,
    )
    return sign(command, key)


class CommandClient:
    """Async DEALER client; replies are matched by request id so a late answer is ignored."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, key: bytes, sender: str) -> None:
        self._ctx = ctx
        self._endpoint = endpoint
        self._key = key
        self._sender = sender
        self._socket = self._connect()
        self._lock = asyncio.Lock()

    def _connect(self) -> zmq.asyncio.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self._endpoint)
        return sock

    async def request(
        self, name: str, args: dict[str, Any] | None = None, timeout_s: float = 5.0
    ) -> Any:
        command = _signed_command(name, args or {}, self._key, self._sender)
        async with self._lock:
            await self._socket.send_multipart([b"", _command_encoder.encode(command)])
            deadline = time.monotonic() + timeout_s
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not await self._socket.poll(int(remaining * 1000)):
                    # A DEALER with a pending request would deliver the stale reply later: reset it.
                    self._socket.close()
                    self._socket = self._connect()
                    raise CommandTimeout(f"{name} to {self._endpoint}: no reply in {timeout_s}s")
                reply = _reply_decoder.decode((await self._socket.recv_multipart())[-1])
                if reply.request_id == command.request_id:
                    break
        if not reply.ok:
            raise CommandError(f"{name}: {reply.error}")
        return reply.result

    def close(self) -> None:
        self._socket.close()


def call(
    endpoint: str,
    name: str,
    args: dict[str, Any] | None,
    key: bytes,
    timeout_s: float = 5.0,
    sender: str = "cli",
) -> Any:
    """Blocking one-shot command, for CLIs, health checks and tests."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        command = _signed_command(name, args or {}, key, sender)
        sock.send_multipart([b"", _command_encoder.encode(command)])
        if not sock.poll(int(timeout_s * 1000)):
            raise CommandTimeout(f"{name} to {endpoint}: no reply in {timeout_s}s")
        reply = _reply_decoder.decode(sock.recv_multipart()[-1])
    finally:
        sock.close()
    if not reply.ok:
        raise CommandError(f"{name}: {reply.error}")
    return reply.result


async def heartbeat_loop(
    publisher: Publisher, service: str, interval_s: float, status: Callable[[], dict[str, Any]]
) -> None:
    """Publish ``hb.<service>`` every interval with the service's readiness and counters."""
    while True:
        detail = status()
        publisher.publish(
            Heartbeat(
                service=service,
                ready=bool(detail.get("ready")),
                detail=detail,
                ts_event=time.time_ns(),
            )
        )
        await asyncio.sleep(interval_s)
