"""One TWS API connection on the simulator's side: the handshake, framing and the per-connection
hardening (handshake and frame deadlines, frame size, slow readers), the ordered outbox, and what
the client subscribed to. Requests go to the ``IbServer`` (``ibsim.server``) once startApi named the
client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ibsim import encoders as enc
from ibsim.requests import In
from ibsim.wire import (
    Field,
    FieldReader,
    FrameReader,
    FrameTooLarge,
    ProtocolError,
    encode_frame,
    parse_version_range,
)
from shared.logs import event

if TYPE_CHECKING:
    from ibsim.server import IbServer

log = logging.getLogger("ibsim.server")  # the server's logger: one stream for the API side


class Outbox:
    """Writes frames in order; a frame may be held back (delayed acks) and later ones queue
    behind it, so a client never sees a fill before the ack of its order."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: deque[tuple[float, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def send(self, data: bytes, delay_s: float = 0.0) -> None:
        if delay_s <= 0 and not self._pending:
            self._transport.write(data)
            return
        due = self._loop.time() + delay_s
        if self._pending:
            due = max(due, self._pending[-1][0])
        self._pending.append((due, data))
        if self._timer is None:
            self._timer = self._loop.call_at(self._pending[0][0], self._drain)

    def _drain(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._pending and self._pending[0][0] <= now:
            self._transport.write(self._pending.popleft()[1])
        if self._pending:
            self._timer = self._loop.call_at(self._pending[0][0], self._drain)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._pending.clear()


@dataclass(slots=True)
class HistoricalSubscription:
    symbol: str
    bar_seconds: int
    format_date: int


@dataclass(slots=True)
class Subscriptions:
    positions: bool = False
    account_updates: bool = False
    account_multi: set[int] = field(default_factory=set)
    historical: dict[int, HistoricalSubscription] = field(default_factory=dict)
    real_time: dict[int, str] = field(default_factory=dict)  # reqId -> symbol
    account_values_sent: float = 0.0  # time.monotonic() of the last account values push
    market_data_type: int = 1  # reqMarketDataType: 1 live (default), 2 frozen, 3/4 delayed


class ClientSession(asyncio.Protocol):
    """One API connection."""

    def __init__(self, server: IbServer) -> None:
        self.server = server
        self.client_id: int | None = None
        self.subs = Subscriptions()
        self.peer = ""
        self._version_agreed = False
        self._transport: asyncio.Transport | None = None
        self._outbox: Outbox | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._frame_timer: asyncio.TimerHandle | None = None
        self._reader = FrameReader(
            expect_handshake=True, max_frame_bytes=server.settings.max_frame_bytes
        )

    # ------------------------------------------------------------ transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._outbox = Outbox(transport, asyncio.get_running_loop())
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if not self.server.accepting:
            transport.abort()  # outage: the gateway is down
            return
        settings = self.server.settings
        if len(self.server.sessions) >= settings.max_clients:
            self.server.refuse(self, "max_clients", f"{settings.max_clients} clients connected")
            return
        self.server.sessions.add(self)
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(
            settings.handshake_timeout_s, self._handshake_expired
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._outbox is not None:
            self._outbox.close()
        self._cancel_timers()
        self.server.session_closed(self)

    def _cancel_timers(self) -> None:
        for timer in (self._handshake_timer, self._frame_timer):
            if timer is not None:
                timer.cancel()
        self._handshake_timer = self._frame_timer = None

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if not self.ready:
            self.server.refuse(
                self,
                "handshake_timeout",
                f"no startApi in {self.server.settings.handshake_timeout_s}s",
            )

    def _frame_expired(self) -> None:
        self._frame_timer = None
        if self._reader.partial:
            self.server.refuse(
                self,
                "frame_timeout",
                f"frame unfinished after {self.server.settings.frame_timeout_s}s",
            )

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        try:
            completed = 0
            for fields in self._reader.feed(data):
                completed += 1
                self._on_message(fields)
        except FrameTooLarge as exc:
            self.server.refuse(self, "frame_too_large", str(exc))
            return
        except ProtocolError as exc:
            self.server.refuse(self, "protocol_error", str(exc))
            return
        self._watch_partial_frame(restart=completed > 0)

    def _watch_partial_frame(self, restart: bool) -> None:
        """A frame that has begun must end within ``frame_timeout_s`` of its first bytes."""
        if not self._reader.partial:
            if self._frame_timer is not None:
                self._frame_timer.cancel()
                self._frame_timer = None
            return
        if self._frame_timer is not None and not restart:
            return  # the same unfinished frame: its deadline stands
        if self._frame_timer is not None:
            self._frame_timer.cancel()
        loop = asyncio.get_running_loop()
        self._frame_timer = loop.call_later(
            self.server.settings.frame_timeout_s, self._frame_expired
        )

    def send(self, fields: list[Field], delay_s: float = 0.0) -> None:
        if (
            self._outbox is not None
            and self._transport is not None
            and not self._transport.is_closing()
        ):
            self._outbox.send(encode_frame(fields), delay_s)
            backlog = self._transport.get_write_buffer_size()
            if backlog > self.server.settings.max_write_buffer_bytes:
                self.server.refuse(self, "slow_reader", f"{backlog} bytes unread")

    def abort(self) -> None:
        """Drop the TCP connection without a goodbye (what a crash or network cut looks like)."""
        if self._transport is not None:
            self._transport.abort()

    def close_after_flush(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def ready(self) -> bool:
        return self.client_id is not None

    # ------------------------------------------------------------ handshake
    def _on_message(self, fields: list[str]) -> None:
        if not self._version_agreed:
            low, high = _version_range(fields)
            if not low <= enc.SERVER_VERSION <= high:
                event(log, "version_refused", logging.WARNING, peer=self.peer, low=low, high=high)
                self.abort()
                return
            self._version_agreed = True
            now = dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")
            self.send(enc.handshake(now))
            return
        if not fields or not fields[0].isdigit():
            raise ProtocolError(f"message without an id: {fields[:3]}")
        msg_id = int(fields[0])
        if self.client_id is None:
            if msg_id == In.START_API:
                self.server.start_api(self, FieldReader(fields, 2).integer())
            return  # TWS ignores requests before startApi
        self.server.dispatch(self, msg_id, fields)


def _version_range(fields: list[str]) -> tuple[int, int]:
    if len(fields) != 1:
        raise ProtocolError(f"expected a version range, got {fields[:3]}")
    return parse_version_range(fields[0])
