"""CURVE on our sockets: client and server setup, and a ZAP handler that names the peer.

``BusSecurity`` is what one process needs: its identity's key pair and the key ring. A client
socket is given the server's public key (``client(sock, server="bus")``); a server socket gets its
own secret key (``server(sock)``), and a ``ZapHandler`` bound on the same context admits only known
public keys and answers each connection's ``User-Id`` with the key's identity name. A received
frame then says who sent it: ``frame.get("User-Id")``.

The handler runs on the caller's own loop (``handle_pending`` for a poll loop, ``serve`` as an
asyncio task): no hidden thread. It must be bound before a server socket accepts connections, or
libzmq lets every CURVE client in.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from shared.keys import KeyPair, KeyRing, ensure_keys
from shared.logs import event

log = logging.getLogger("bus.curve")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_ZAP_VERSION = b"1.0"


@dataclass(frozen=True)
class BusSecurity:
    identity: str
    pair: KeyPair
    ring: KeyRing

    @classmethod
    def load(cls, keys_dir: str | os.PathLike[str], identity: str) -> BusSecurity:
        """Make missing key pairs (first start), then load ``identity``'s pair."""
        ensure_keys(keys_dir)
        ring = KeyRing(keys_dir)
        return cls(identity=identity, pair=ring.pair(identity), ring=ring)

    @property
    def keys_dir(self) -> Path:
        return self.ring.keys_dir

    def client(self, sock: zmq.Socket[Any], server: str) -> None:
        sock.curve_secretkey = self.pair.secret
        sock.curve_publickey = self.pair.public
        sock.curve_serverkey = self.ring.public(server)

    def server(self, sock: zmq.Socket[Any]) -> None:
        sock.curve_secretkey = self.pair.secret
        sock.curve_publickey = self.pair.public
        sock.curve_server = True


def peer_identity(frame: zmq.Frame) -> str:
    """The authenticated identity of the peer that sent ``frame`` ("" without CURVE)."""
    try:
        return str(frame.get("User-Id"))
    except zmq.ZMQError:
        return ""


class ZapHandler:
    """Answers libzmq's authentication requests for every CURVE server socket of one context."""

    def __init__(self, ctx: zmq.Context[Any], ring: KeyRing) -> None:
        self.ring = ring
        self.admitted = 0
        self.refused = 0
        sock = ctx.socket(zmq.REP)
        sock.linger = 0
        sock.bind(ZAP_ENDPOINT)
        self._async: zmq.asyncio.Socket | None = None
        self._sync: zmq.Socket[bytes]
        if isinstance(sock, zmq.asyncio.Socket):
            self._async = sock
            self._sync = zmq.Socket.shadow(sock.underlying)
        else:
            self._sync = sock
        self._owner = sock

    def reply(self, request: list[bytes]) -> list[bytes]:
        """The ZAP answer to one request (RFC 27): 200 with the identity, or 400."""
        if len(request) < 6 or request[0] != _ZAP_VERSION:
            self.refused += 1
            request_id = request[1] if len(request) > 1 else b""
            return [_ZAP_VERSION, request_id, b"400", b"malformed request", b"", b""]
        request_id, address, mechanism = request[1], request[3], request[5]
        credentials = request[6:]
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            self.refused += 1
            return [_ZAP_VERSION, request_id, b"400", b"CURVE required", b"", b""]
        public = zmq.utils.z85.encode(credentials[0])
        identity = self.ring.identity_of(public)
        if identity is None:
            self.refused += 1
            event(
                log,
                "unknown_key_refused",
                logging.WARNING,
                address=address.decode(errors="replace"),
                key=public.decode(errors="replace"),
            )
            return [_ZAP_VERSION, request_id, b"400", b"unknown key", b"", b""]
        self.admitted += 1
        return [_ZAP_VERSION, request_id, b"200", b"OK", identity.encode(), b""]

    @property
    def socket(self) -> zmq.Socket[bytes]:
        return self._sync

    def handle_pending(self) -> None:
        """Answer every queued request without blocking (for a poll loop)."""
        while True:
            try:
                request = self._sync.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._sync.send_multipart(self.reply(request))

    async def serve(self) -> None:
        assert self._async is not None, "serve() needs an asyncio context"
        while True:
            request = await self._async.recv_multipart()
            await self._async.send_multipart(self.reply(request))

    def close(self) -> None:
        self._owner.close(linger=0)
