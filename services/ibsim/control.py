"""Control interface for tests and docker tests: JSON lines over TCP (``IBSIM_CONTROL_PORT``).

One JSON object per line in, one per line out; every reply has ``"ok"`` and, on failure,
``"error"`` as ``"<field>: <why>"`` (e.g. ``"high: must be >= max(open, close)"``). Try it with
``echo '{"cmd": "ping"}' | nc 127.0.0.1 4003``. The port is for tests and operators on the same
host: it is never published, and anyone who reaches it can move prices and drop clients.

Every field of every command is validated before anything changes (typed ``msgspec`` structs plus
meaning checks): numbers must be JSON numbers (not strings or booleans) and finite, ints bounded,
prices positive with high >= max(open, close) and low <= min(open, close), symbols non-empty and
matching ``shared.validate.SYMBOL_PATTERN``, strings bounded; an unknown field is refused too. A
refused command changes nothing and the connection stays open for the next one; a line longer than
1 MiB is answered with an error and the connection is closed.

Commands (``cmd``):
- ``ping`` -> server version, ports, account, connected client ids, ``refused`` (TWS-port
  connections closed by the hardening rules, per reason).
- ``faults`` with optional ``set`` {delay_acks_ms (0..600000), reject_next_n (0..1000000),
  reject_reason (<= 256 chars), reject_code (1..99999), partial_fill_fraction (0..1),
  delay_commission_ms (0..600000), drop_commission_next_n (0..1000000),
  pacing_error_next_n (0..1000000; error 162 on historical requests),
  realtime_pacing_next_n (0..1000000; error 420 on reqRealTimeBars),
  market_data_error (0 | 354 | 10167; no market data subscription, see ``ibsim.faults``),
  drop_connection_now: true | <clientId>, outage_seconds (0 < s <= 86400)} and optional
  ``clear: true`` -> the fault switches after the change.
- ``executions`` (optional ``order_ref``, ``symbol``) -> the simulator's execution record.
- ``orders`` (optional ``order_ref``) -> every order received, with status and reject reason.
- ``push_bar`` {symbol, open, high, low, close, volume (>= 0, default 0), ts (bar close, ns UTC;
  default now), bar_open_ts (optional, before ts)} -> number of fills the bar caused.
- ``positions`` / ``account`` -> positions, cash and the account figures.
- ``bars`` {symbol, start_ns (default 0), end_ns (default: the latest)} -> the simulator's own
  book: every bar it has seen for ``symbol`` closing in (start_ns, end_ns], oldest first (what
  its fills and historical answers come from; tests compare marketdata and fills with it).
- ``replay`` {action: "start" | "pause" | "status" (default)} -> the replay price source's clock
  and cursor (``IBSIM_PRICE_SOURCE=replay`` only).
- ``reset`` -> forget orders, executions (the journal too), positions, bars, faults and pacing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import msgspec

from ibsim.encoders import SERVER_VERSION
from shared.logs import event
from shared.validate import MAX_ID_LEN, MAX_PRICE, SYMBOL_PATTERN, RefusalCounter

if TYPE_CHECKING:
    from ibsim.app import Simulator

log = logging.getLogger("ibsim.control")
MAX_LINE_BYTES = 1 << 20
MAX_ERROR_CHARS = 300
MAX_TS_NS = 4_102_444_800 * 1_000_000_000  # 2100-01-01: later is a unit mistake, not a bar
MAX_CLIENT_ID = 2**31 - 1

MAX_DEPTH = 8
# msgspec searches with the pattern: anchor it (\Z, not $, which also matches before a newline)
Symbol = Annotated[str, msgspec.Meta(pattern=rf"^(?:{SYMBOL_PATTERN.pattern})\Z")]
Ref = Annotated[str, msgspec.Meta(max_length=MAX_ID_LEN)]
Price = Annotated[float, msgspec.Meta(gt=0, le=MAX_PRICE)]
TimestampNs = Annotated[int, msgspec.Meta(gt=0, le=MAX_TS_NS)]


class CommandError(ValueError):
    """A refused field: the reply's error is ``"<field>: <why>"``."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")


class _Args(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    cmd: str


ArgsT = TypeVar("ArgsT", bound=_Args)


class NoArgs(_Args):
    pass


class ExecutionsArgs(_Args):
    order_ref: Ref | None = None
    symbol: Symbol | None = None


class OrdersArgs(_Args):
    order_ref: Ref | None = None


class PushBarArgs(_Args):
    symbol: Symbol
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Annotated[float, msgspec.Meta(ge=0, le=1e15)] = 0.0
    ts: TimestampNs | None = None
    bar_open_ts: TimestampNs | None = None

    def check(self) -> None:
        if self.high < max(self.open, self.close):
            raise CommandError("high", "must be >= max(open, close)")
        if self.low > min(self.open, self.close):
            raise CommandError("low", "must be <= min(open, close)")
        if self.ts is not None and self.bar_open_ts is not None and self.bar_open_ts >= self.ts:
            raise CommandError("bar_open_ts", "must be before ts")


class FaultChanges(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    delay_acks_ms: Annotated[float, msgspec.Meta(ge=0, le=600_000)] | None = None
    reject_next_n: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    reject_reason: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    reject_code: Annotated[int, msgspec.Meta(ge=1, le=99_999)] | None = None
    partial_fill_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    delay_commission_ms: Annotated[float, msgspec.Meta(ge=0, le=600_000)] | None = None
    drop_commission_next_n: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    pacing_error_next_n: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    realtime_pacing_next_n: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    market_data_error: Literal[0, 354, 10167] | None = None
    drop_connection_now: bool | Annotated[int, msgspec.Meta(ge=0, le=MAX_CLIENT_ID)] | None = None
    outage_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] | None = None

    def switches(self) -> dict[str, Any]:
        names = (
            "delay_acks_ms",
            "reject_next_n",
            "reject_reason",
            "reject_code",
            "partial_fill_fraction",
            "delay_commission_ms",
            "drop_commission_next_n",
            "pacing_error_next_n",
            "realtime_pacing_next_n",
            "market_data_error",
        )
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class BarsArgs(_Args):
    symbol: Symbol
    start_ns: Annotated[int, msgspec.Meta(ge=0, le=MAX_TS_NS)] = 0
    end_ns: TimestampNs = MAX_TS_NS


class ReplayArgs(_Args):
    action: Literal["start", "pause", "status"] = "status"


class FaultsArgs(_Args):
    set: FaultChanges | None = None
    clear: bool = False


def _finite_tree(value: Any, path: str, depth: int) -> None:
    """JSON parses 1e400 as inf and accepts NaN: refuse both wherever they sit."""
    if depth > MAX_DEPTH:
        raise CommandError(path, "nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise CommandError(path, f"must be a finite number, got {value}")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite_tree(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _finite_tree(item, f"{path}[{index}]", depth + 1)


_MSGSPEC_PATH = re.compile(r"^(?P<why>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MSGSPEC_FIELD = re.compile(r"(?:unknown|required) field `(?P<name>[^`]*)`")


def _field_error(exc: msgspec.ValidationError) -> CommandError:
    """msgspec's "Expected `float`, got `str` - at `$.open`" as "open: expected float, got str"."""
    text = str(exc)
    match = _MSGSPEC_PATH.match(text)
    why = match.group("why") if match else text
    path = (match.group("path") or "").lstrip(".") if match else ""
    named = _MSGSPEC_FIELD.search(why)
    if named is not None:
        path = f"{path}.{named.group('name')}" if path else named.group("name")
        why = "unknown field" if "unknown" in why else "missing"
    why = why.replace("`", "")
    if "matching regex" in why:
        why = f"must be a symbol matching {SYMBOL_PATTERN.pattern}"
    return CommandError(path or "request", why[:1].lower() + why[1:])


def parse_args(request: dict[str, Any], kind: type[ArgsT]) -> ArgsT:
    """Typed arguments of one command, or ``CommandError`` naming the first bad field."""
    _finite_tree(request, "", 0)
    try:
        args = msgspec.convert(request, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise _field_error(exc) from None
    check = getattr(args, "check", None)
    if check is not None:
        check()
    return args


_KNOWN_FIELDS = frozenset(
    {"line", "cmd", "request"}
    | {
        f"{prefix}{name}"
        for kind, prefix in (
            (ExecutionsArgs, ""),
            (OrdersArgs, ""),
            (PushBarArgs, ""),
            (FaultsArgs, ""),
            (ReplayArgs, ""),
            (FaultChanges, "set."),
        )
        for name in kind.__struct_fields__
    }
)


class ControlServer:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.port = sim.settings.control_port
        self._server: asyncio.Server | None = None
        self.refused = RefusalCounter()  # refused commands per field
        self._handlers: dict[str, tuple[type[_Args], Callable[[Any], dict[str, Any]]]] = {
            "ping": (NoArgs, self._ping),
            "faults": (FaultsArgs, self._faults),
            "executions": (ExecutionsArgs, self._executions),
            "orders": (OrdersArgs, self._orders),
            "push_bar": (PushBarArgs, self._push_bar),
            "positions": (NoArgs, self._positions),
            "bars": (BarsArgs, self._bars),
            "account": (NoArgs, self._account),
            "reset": (NoArgs, self._reset),
            "replay": (ReplayArgs, self._replay),
        }

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.sim.settings.control_host, self.port, limit=MAX_LINE_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]
        event(log, "control_listening", host=self.sim.settings.control_host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    too_long = {"ok": False, "error": f"line: longer than {MAX_LINE_BYTES} bytes"}
                    writer.write(json.dumps(too_long).encode() + b"\n")
                    await writer.drain()
                    break  # the rest of that line cannot be told from the next command
                if not line:
                    break
                if not line.strip():
                    continue
                writer.write(self._encode(self.handle_line(line)))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _encode(self, reply: dict[str, Any]) -> bytes:
        try:
            return json.dumps(reply, allow_nan=False).encode() + b"\n"
        except (TypeError, ValueError) as exc:  # a reply that is not strict JSON is our bug
            log.exception("control_reply_unencodable")
            failed = {"ok": False, "error": f"reply: not encodable ({type(exc).__name__})"}
            return json.dumps(failed).encode() + b"\n"

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """One command line -> one reply; never raises, whatever the bytes."""
        try:
            try:
                request = json.loads(line)
            except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
                raise CommandError("line", f"not a JSON object ({type(exc).__name__})") from None
            if not isinstance(request, dict):
                raise CommandError("line", "a command is a JSON object")
            return self.handle(request)
        except CommandError as exc:
            field = str(exc).split(":", 1)[0]
            if self.refused.add(field if field in _KNOWN_FIELDS else "other"):
                event(log, "control_refused", logging.WARNING, error=str(exc)[:MAX_ERROR_CHARS])
            return {"ok": False, "error": str(exc)[:MAX_ERROR_CHARS]}
        except Exception as exc:  # a simulator bug must not cost the caller its connection
            log.exception("control_failed")
            return {"ok": False, "error": f"internal: {type(exc).__name__}"[:MAX_ERROR_CHARS]}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("cmd")
        if not isinstance(name, str):
            raise CommandError("cmd", "missing or not a string")
        entry = self._handlers.get(name)
        if entry is None:
            raise CommandError("cmd", f"unknown cmd {name[:40]!r}")
        kind, handler = entry
        reply = handler(parse_args(request, kind))
        if name not in ("ping", "executions", "orders", "positions", "account", "bars"):
            event(log, "control", cmd=name)
        return {"ok": True, **reply}

    def _ping(self, args: NoArgs) -> dict[str, Any]:
        ib = self.sim.ib_server
        return {
            "server_version": SERVER_VERSION,
            "port": ib.port,
            "control_port": self.port,
            "account": ib.account,
            "clients": sorted(ib.by_client_id),
            "accepting": ib.accepting,
            "refused": ib.refused.snapshot(),
        }

    def _faults(self, args: FaultsArgs) -> dict[str, Any]:
        faults = self.sim.faults
        ib = self.sim.ib_server
        reply: dict[str, Any] = {}
        changes = args.set or FaultChanges()
        if args.clear:
            faults.clear()
        faults.update(changes.switches())  # already validated: cannot fail half-way
        drop = changes.drop_connection_now
        if changes.outage_seconds is not None:
            ib.outage(changes.outage_seconds)
            reply["outage_seconds"] = changes.outage_seconds
        elif drop is not None and drop is not False:
            client_id = None if drop is True else int(drop)
            reply["dropped"] = ib.drop_connections(client_id)
        reply["faults"] = faults.to_json()
        return reply

    def _executions(self, args: ExecutionsArgs) -> dict[str, Any]:
        symbol = args.symbol.upper() if args.symbol is not None else None
        records = [
            r.to_json()
            for r in self.sim.exchange.executions
            if (args.order_ref is None or r.order_ref == args.order_ref)
            and (symbol is None or r.symbol == symbol)
        ]
        return {"executions": records}

    def _orders(self, args: OrdersArgs) -> dict[str, Any]:
        orders = [
            o.to_json()
            for o in self.sim.exchange.orders.values()
            if args.order_ref is None or o.order_ref == args.order_ref
        ]
        return {"orders": orders}

    def _push_bar(self, args: PushBarArgs) -> dict[str, Any]:
        ts = args.ts if args.ts is not None else time.time_ns()
        if args.bar_open_ts is not None and args.bar_open_ts >= ts:
            raise CommandError("bar_open_ts", "must be before ts")
        fills = self.sim.exchange.on_bar(
            args.symbol,
            ts,
            args.open,
            args.high,
            args.low,
            args.close,
            args.volume,
            bar_open_ts=args.bar_open_ts,
        )
        return {"fills": fills}

    def _positions(self, args: NoArgs) -> dict[str, Any]:
        exchange = self.sim.exchange
        positions = {
            symbol: {"quantity": p.quantity, "avg_cost": p.avg_cost, "realized_pnl": p.realized_pnl}
            for symbol, p in exchange.positions.items()
            if p.quantity != 0
        }
        return {"positions": positions, "cash": exchange.cash}

    def _bars(self, args: BarsArgs) -> dict[str, Any]:
        window = self.sim.exchange.bars.window(args.symbol.upper(), args.start_ns, args.end_ns)
        return {"bars": [asdict(b) for b in window]}

    def _account(self, args: NoArgs) -> dict[str, Any]:
        return {
            "account": self.sim.exchange.account,
            **asdict(self.sim.exchange.account_snapshot()),
        }

    def _replay(self, args: ReplayArgs) -> dict[str, Any]:
        replay = self.sim.replay
        if replay is None:
            raise CommandError("cmd", "replay needs IBSIM_PRICE_SOURCE=replay")
        if args.action == "start":
            replay.start()
        elif args.action == "pause":
            replay.pause()
        return {"replay": replay.status()}

    def _reset(self, args: NoArgs) -> dict[str, Any]:
        self.sim.exchange.reset()
        self.sim.faults.clear()
        self.sim.ib_server.pacing.clear()
        return {}


def control_request(
    port: int, payload: dict[str, Any], host: str = "127.0.0.1", timeout_s: float = 10.0
) -> dict[str, Any]:
    """Blocking one-shot control command (tests, scripts, docker tests)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(json.dumps(payload).encode() + b"\n")
        buffer = b""
        while not buffer.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("control port closed before replying")
            buffer += chunk
    reply: dict[str, Any] = json.loads(buffer)
    return reply


async def control_request_async(
    port: int, payload: dict[str, Any], host: str = "127.0.0.1", timeout_s: float = 10.0
) -> dict[str, Any]:
    """The same from inside an event loop, without blocking it."""

    async def roundtrip() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE_BYTES * 64)
        try:
            writer.write(json.dumps(payload).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        if not line:
            raise ConnectionError("control port closed before replying")
        reply: dict[str, Any] = json.loads(line)
        return reply

    return await asyncio.wait_for(roundtrip(), timeout_s)
