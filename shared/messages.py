"""Every message that crosses the bus, as frozen ``msgspec.Struct``s encoded with msgpack.

Each message carries the same envelope: ``schema`` (bumped on any incompatible change),
``producer`` (which process published it), ``seq`` (per producer and topic, starting at 1; gaps
and duplicates are detected by subscribers), ``ts_event`` (when it happened in the market, ns since
the Unix epoch, UTC; a bar is stamped at its CLOSE so no consumer can act on it earlier) and
``ts_publish`` (when it was put on the wire). The publisher fills ``seq`` and ``ts_publish``.

Topics are ``<kind>.<key>``: ``bar.AAPL``, ``signal.AAPL``, ``fill.AAPL``, ``model.updated`` ...
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

SCHEMA_VERSION = 1


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Envelope shared by every bus message."""

    topic_kind: ClassVar[str] = ""
    producer: str = ""
    seq: int = 0
    ts_event: int = 0
    ts_publish: int = 0
    schema: int = SCHEMA_VERSION

    def topic(self) -> str:
        return self.topic_kind


class Bar(Message, frozen=True, kw_only=True, tag="bar"):
    """One OHLCV bar, known only at its close (``ts_event`` == ``bar_close_ts``)."""

    topic_kind: ClassVar[str] = "bar"
    symbol: str
    timeframe: str
    bar_open_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    # Marketdata's epoch: bumped on every marketdata start and every reconnect to the data source.
    # A subscriber that sees it change knows the stream restarted (seq may restart, bars may be
    # backfilled) and resets any state that assumed continuity (recurrent state, gap counters).
    epoch: int = 0
    # True for a bar published after a reconnect to fill the gap: it closed while the source was
    # away. Published once, in order, before the first live bar of the new epoch.
    backfill: bool = False

    def topic(self) -> str:
        return f"bar.{self.symbol}"


class TargetPosition(Message, frozen=True, kw_only=True, tag="signal"):
    """What the policy wants to hold, as a fraction of the allowed size in [-1, 1].

    A target, not a delta: re-sending it is harmless because execution compares it with the
    broker's actual position.
    """

    topic_kind: ClassVar[str] = "signal"
    symbol: str
    target_position: float
    model_version: str
    bar_seq: int
    bar_close_ts: int
    bar_close: float
    strategy: str = "rl"

    def topic(self) -> str:
        return f"signal.{self.symbol}"


OrderStatus = Literal["submitted", "acknowledged", "filled", "rejected", "cancelled", "skipped"]


class ShadowTarget(Message, frozen=True, kw_only=True, tag="shadow"):
    """What a candidate (shadow) model would hold on the same bar, on ``shadow.<SYM>``.

    The fields of a live ``TargetPosition``, but deliberately NOT a subclass of it: an
    ``isinstance(msg, TargetPosition)`` in a trading consumer can never take a shadow target
    for a live one, whatever topic it arrived on. The monitor records ``shadow.`` to compare the
    candidate with the live model.
    """

    topic_kind: ClassVar[str] = "shadow"
    symbol: str
    target_position: float
    model_version: str
    bar_seq: int
    bar_close_ts: int
    bar_close: float
    strategy: str = "rl"

    def topic(self) -> str:
        return f"shadow.{self.symbol}"


class OrderEvent(Message, frozen=True, kw_only=True, tag="order"):
    """Lifecycle of one order; ``order_ref`` is deterministic per (strategy, symbol, bar seq)."""

    topic_kind: ClassVar[str] = "order"
    symbol: str
    order_ref: str
    side: Literal["BUY", "SELL"]
    quantity: float
    order_type: str
    status: OrderStatus
    bar_seq: int
    broker_order_id: str = ""
    limit_price: float | None = None
    reason: str = ""

    def topic(self) -> str:
        return f"order.{self.symbol}"


class Fill(Message, frozen=True, kw_only=True, tag="fill"):
    """One execution. ``exec_id`` is the broker's id and the ledger's idempotency key."""

    topic_kind: ClassVar[str] = "fill"
    symbol: str
    exec_id: str
    order_ref: str
    side: Literal["BUY", "SELL"]
    quantity: float
    price: float
    commission: float
    account: str = ""

    def topic(self) -> str:
        return f"fill.{self.symbol}"


class Position(Message, frozen=True, kw_only=True, tag="position"):
    """The broker's position in one symbol after reconciliation."""

    topic_kind: ClassVar[str] = "position"
    symbol: str
    quantity: float
    avg_cost: float
    account: str = ""

    def topic(self) -> str:
        return f"position.{self.symbol}"


class PnL(Message, frozen=True, kw_only=True, tag="pnl"):
    """Account equity and PnL as the monitor computes it from the ledger."""

    topic_kind: ClassVar[str] = "pnl"
    account: str
    realized: float
    unrealized: float
    fees: float
    equity: float
    positions: dict[str, float] = {}

    def topic(self) -> str:
        return f"pnl.{self.account or 'default'}"


class Heartbeat(Message, frozen=True, kw_only=True, tag="hb"):
    """Liveness of a service; subscribers notice a silent producer by its absence."""

    topic_kind: ClassVar[str] = "hb"
    service: str
    ready: bool
    detail: dict[str, Any] = {}

    def topic(self) -> str:
        return f"hb.{self.service}"


class ModelUpdated(Message, frozen=True, kw_only=True, tag="model_updated"):
    """A new model version is available under the shared model root. Signed (``mac``)."""

    topic_kind: ClassVar[str] = "model.updated"
    version: str
    path: str
    onnx_sha256: str
    # shadow / drop_shadow: load or drop a candidate beside the live model (inference.shadow)
    action: Literal["push", "rollback", "shadow", "drop_shadow"] = "push"
    nonce: str = ""
    mac: str = ""


class ModelStatus(Message, frozen=True, kw_only=True, tag="model_status"):
    """An inference instance says which model it serves, or why it refused one."""

    topic_kind: ClassVar[str] = "model.status"
    instance: str
    serving_version: str
    requested_version: str
    accepted: bool
    reason: str = ""


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """A request on a service's command endpoint; ``mac`` is an HMAC over everything else."""

    name: str
    args: dict[str, Any] = {}
    request_id: str
    ts: int
    nonce: str
    sender: str = ""
    mac: str = ""


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    ok: bool
    result: Any = None
    error: str = ""


BusMessage = (
    Bar
    | TargetPosition
    | ShadowTarget
    | OrderEvent
    | Fill
    | Position
    | PnL
    | Heartbeat
    | ModelUpdated
    | ModelStatus
)

ALL_MESSAGE_TYPES: tuple[type[Message], ...] = (
    Bar,
    TargetPosition,
    ShadowTarget,
    OrderEvent,
    Fill,
    Position,
    PnL,
    Heartbeat,
    ModelUpdated,
    ModelStatus,
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[BusMessage] = msgspec.msgpack.Decoder(BusMessage)


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def decode(payload: bytes) -> Message:
    """Decode any bus message; raises ``msgspec.DecodeError``/``ValidationError`` on bad input."""
    return _decoder.decode(payload)
