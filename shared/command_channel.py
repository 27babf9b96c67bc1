"""The command channel: signed commands to one service's ROUTER socket, a ``Reply`` back.

A client (``CommandClient`` for a service's loop, ``call`` for CLIs, health checks and tests)
sends a ``Command`` signed with the bus key (``shared.auth``) on a DEALER socket; the service's
``CommandServer`` refuses an unsigned, stale or replayed one, and answers every command with a
``Reply``, never raising. With CURVE on, command servers know the sender by its key and refuse a
command outside its rights; arguments are typed before a handler sees them (both in
``shared.commands``). The streams (``Publisher``, ``Subscriber``) are in ``shared.bus``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import msgspec
import zmq
import zmq.asyncio

from shared.auth import AuthError, Verifier, sign
from shared.bus import DEFAULT_MAX_MESSAGE_BYTES, security_from_env
from shared.commands import may_send, typed_args
from shared.config import DEFAULT_COMMAND_PORTS, command_endpoint
from shared.curve import BusSecurity, ZapHandler, peer_identity
from shared.logs import event
from shared.messages import Command, Reply

log = logging.getLogger("bus")

# A reply (a snapshot of many bars) may be larger than any request; the client trusts its server.
MAX_REPLY_BYTES = 64 * 1024 * 1024

_command_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(Command)
_reply_decoder = msgspec.msgpack.Decoder(Reply)


Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class CommandError(Exception):
    """The service answered the command with an error."""


class CommandTimeout(CommandError):
    """No answer within the timeout: the service may be down or busy."""


class CommandServer:
    """Answers signed commands on a ROUTER socket; unsigned, stale or replayed ones are refused.

    With ``security`` the socket is a CURVE server: only known keys connect (the context's
    ``ZapHandler`` must already be bound), and each command is checked against the rights of the
    identity that sent it. Arguments are typed (``shared.commands``) before a handler sees them.
    """

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        bind: str,
        key: bytes,
        service: str,
        security: BusSecurity | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        zap: ZapHandler | None = None,
    ) -> None:
        if security is not None and zap is None:
            # Bind the authenticator before the socket: without one libzmq admits any CURVE key.
            zap = ZapHandler(ctx, security.ring)
        self._zap = zap
        self._socket = ctx.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self._authenticated = security is not None
        if security is not None:
            security.server(self._socket)
        self._socket.bind(bind)
        self._verifier = Verifier(key)
        self._handlers: dict[str, Handler] = {}
        self.service = service
        self.refused = 0

    def register(self, name: str, handler: Handler) -> None:
        self._handlers[name] = handler

    async def serve_forever(self) -> None:
        if self._zap is None:
            await self._serve_commands()
        else:
            await asyncio.gather(self._zap.serve(), self._serve_commands())

    async def _serve_commands(self) -> None:
        while True:
            frames = await self._socket.recv_multipart(copy=False)
            if len(frames) < 2:
                continue
            sender = peer_identity(frames[-1]) if self._authenticated else ""
            try:
                reply = await self._handle(frames[-1].bytes, sender)
            except Exception as exc:  # a bug of ours must not end the loop: log it, answer
                log.error("command_loop_error", exc_info=True, extra={"fields": {}})
                reply = Reply(request_id="", ok=False, error=f"internal error: {exc!r}"[:300])
            try:
                encoded = _command_encoder.encode(reply)
            except (TypeError, ValueError, OverflowError) as exc:  # an unencodable result
                encoded = _command_encoder.encode(
                    Reply(request_id=reply.request_id, ok=False, error=f"unencodable reply: {exc}")
                )
            await self._socket.send_multipart([frames[0].bytes, b"", encoded])

    def _refuse(self, request_id: str, name: str, sender: str, reason: str) -> Reply:
        self.refused += 1
        event(
            log,
            "command_refused",
            logging.WARNING,
            command=name[:64],
            sender=sender[:64],
            reason=reason[:200],
        )
        return Reply(request_id=request_id[:64], ok=False, error=f"unauthorised: {reason}")

    async def _handle(self, payload: bytes, identity: str = "") -> Reply:
        """Never raises: whatever arrives, the answer is a ``Reply``."""
        try:
            command = _command_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.refused += 1
            event(log, "command_malformed", logging.WARNING, error=str(exc)[:200])
            return Reply(request_id="", ok=False, error=f"malformed command: {str(exc)[:200]}")
        try:
            self._verifier.verify(command, command.ts)
        except AuthError as exc:
            return self._refuse(command.request_id, command.name, command.sender, str(exc))
        if self._authenticated and not may_send(self.service, command.name, identity):
            return self._refuse(
                command.request_id,
                command.name,
                identity,
                f"{identity!r} may not send {command.name!r} to {self.service}",
            )
        handler = self._handlers.get(command.name)
        if handler is None:
            return Reply(
                request_id=command.request_id,
                ok=False,
                error=f"unknown command {command.name[:64]!r}; known: {sorted(self._handlers)}",
            )
        try:
            args = typed_args(self.service, command.name, command.args)
        except msgspec.ValidationError as exc:
            self.refused += 1
            event(log, "command_bad_args", logging.WARNING, command=command.name, error=str(exc))
            return Reply(request_id=command.request_id, ok=False, error=f"bad arguments: {exc}")
        try:
            result = await handler(args)
        except Exception as exc:  # a failing handler must not take the service down
            log.error(
                "command_failed",
                exc_info=True,
                extra={"fields": {"command": command.name, "error": repr(exc)[:500]}},
            )
            return Reply(request_id=command.request_id, ok=False, error=str(exc) or repr(exc))
        # Health probes ask for status every few seconds: keep them out of the INFO feed.
        level = logging.DEBUG if command.name == "status" else logging.INFO
        sender = identity or command.sender
        event(log, "command", level, command=command.name, sender=sender)
        return Reply(request_id=command.request_id, ok=True, result=result)

    def close(self) -> None:
        self._socket.close()
        if self._zap is not None:
            self._zap.close()


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

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        key: bytes,
        sender: str,
        security: BusSecurity | None = None,
        server: str = "",
    ) -> None:
        self._ctx = ctx
        self._endpoint = endpoint
        self._key = key
        self._sender = sender
        self._security = security
        self._server = server
        self._socket = self._connect()
        self._lock = asyncio.Lock()

    def _connect(self) -> zmq.asyncio.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
        if self._security is not None:
            self._security.client(sock, self._server)
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
    security: BusSecurity | Literal["env"] | None = "env",
    server: str = "",
) -> Any:
    """Blocking one-shot command, for CLIs, health checks and tests.

    ``security="env"`` (the default) takes the bus settings from the environment: with CURVE on,
    it connects as the ``operator`` identity (``BUS_IDENTITY`` to choose another) to the service
    whose ``<SERVICE>_CMD_ENDPOINT`` (or default port) is ``endpoint``, or to ``server``.
    """
    if security == "env":
        security = security_from_env()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
    if security is not None:
        security.client(sock, server or service_for_endpoint(endpoint))
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


def service_for_endpoint(endpoint: str, env: Mapping[str, str] | None = None) -> str:
    """Which service's command endpoint this is (its CURVE server key is that service's)."""
    port = endpoint.rsplit(":", 1)[-1]
    for service in DEFAULT_COMMAND_PORTS:
        configured = command_endpoint(service, env)
        if configured == endpoint or configured.rsplit(":", 1)[-1] == port:
            return service
    raise CommandError(f"{endpoint} is no service's command endpoint; pass server=<service>")
