"""The authenticated bus, one test per attack class, against the real forwarder process.

Each test sends what an attacker on the network (or a compromised service) would, through real
ZeroMQ sockets, and checks that it never reaches a subscriber while honest traffic still flows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
import zmq
import zmq.asyncio

from shared.auth import load_or_create_key, sign
from shared.bus import Publisher, Subscriber, producer_id
from shared.command_channel import CommandError, CommandServer, call
from shared.curve import BusSecurity
from shared.keys import IDENTITIES, PUBLISH_RIGHTS, KeyRing, ensure_keys, may_publish
from shared.messages import Bar, Command, Fill, Heartbeat, Message, Reply, encode
from tests.conftest import bus_security, free_port

NOW = time.time_ns()


def bar(price: float = 100.0, **changes: object) -> Bar:
    base = Bar(
        symbol="AAPL",
        timeframe="1d",
        bar_open_ts=NOW - 86_400_000_000_000,
        open=price,
        high=price * 1.01,
        low=price * 0.99,
        close=price,
        volume=1000.0,
        ts_event=NOW,
    )
    return msgspec.structs.replace(base, **changes) if changes else base


def fill(**changes: object) -> Fill:
    base = Fill(
        symbol="AAPL",
        exec_id="forged-1",
        order_ref="rl-AAPL-1",
        side="BUY",
        quantity=10.0,
        price=100.0,
        commission=1.0,
        ts_event=NOW,
    )
    return msgspec.structs.replace(base, **changes) if changes else base


class Listener:
    """A subscriber (as the monitor identity) that records everything it accepts."""

    def __init__(self, ctx: Bus, env: dict[str, str], topics: list[str]) -> None:
        self.sub = Subscriber(
            ctx.ctx, env["BUS_SUB_ENDPOINT"], topics, security=bus_security(env, "monitor")
        )
        self.got: list[Message] = []

    async def until(self, predicate: Callable[[Message], bool], timeout_s: float = 10.0) -> Message:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"nothing matching arrived; got {self.got[-5:]}"
            message = await asyncio.wait_for(self.sub.recv(), remaining)
            self.got.append(message)
            if predicate(message):
                return message


class Bus:
    """A test's sockets on the real forwarder; closing it closes every socket it made."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.ctx = zmq.asyncio.Context()
        self.pub_ctx: zmq.Context = zmq.Context()

    def __iter__(self):  # ``ctx, env = bus`` in the tests
        return iter((self, self.env))

    def close(self) -> None:
        self.pub_ctx.destroy(linger=0)
        self.ctx.destroy(linger=0)


@pytest.fixture
async def bus(busproxy: dict[str, str]) -> AsyncIterator[Bus]:
    handle = Bus(busproxy)
    yield handle
    handle.close()


def publisher(
    ctx: zmq.asyncio.Context, env: dict[str, str], identity: str, name: str = ""
) -> Publisher:
    return Publisher(
        ctx.pub_ctx,
        env["BUS_PUB_ENDPOINT"],
        name or producer_id(identity),
        security=bus_security(env, identity),
    )


async def wait_subscribed(listener: Listener, honest: Publisher, marker: Message) -> None:
    """Readiness: re-publish a marker until the subscription has reached the publisher side."""
    deadline = time.monotonic() + 10
    while True:
        honest.publish(marker)
        try:
            await listener.until(lambda m: m.topic() == marker.topic(), timeout_s=0.3)
            return
        except (TimeoutError, AssertionError):
            assert time.monotonic() < deadline, "subscription never became ready"


def bus_counter(message: Message, field: str, reason: str = "") -> int:
    if not (isinstance(message, Heartbeat) and message.service == "bus"):
        return -1
    value = message.detail.get(field, 0)
    return int(value.get(reason, 0) if reason else value)


async def send_until_counted(
    listener: Listener, send: Callable[[], None], field: str, reason: str = "", at_least: int = 1
) -> Heartbeat:
    """Send again and again until the forwarder's heartbeat has counted the refusal: a fresh
    sender's first frames can be lost before its connection is up, and a refusal that was never
    attempted would prove nothing."""
    deadline = time.monotonic() + 15
    while True:
        send()
        try:
            hb = await listener.until(
                lambda m: bus_counter(m, field, reason) >= at_least, timeout_s=0.5
            )
            assert isinstance(hb, Heartbeat)
            return hb
        except (TimeoutError, AssertionError):
            assert time.monotonic() < deadline, f"the forwarder never counted {field} {reason}"


async def test_unauthenticated_and_unknown_key_publishers_are_refused(bus, tmp_path) -> None:
    ctx, env = bus
    listener = Listener(ctx, env, ["bar.", "hb.bus"])
    honest = publisher(ctx, env, "marketdata")
    await wait_subscribed(listener, honest, bar(1.0))
    # 1. plain TCP, no CURVE at all
    plain = ctx.pub_ctx.socket(zmq.PUB)
    plain.connect(env["BUS_PUB_ENDPOINT"])
    # 2. CURVE with a key pair the forwarder does not know (right server key, wrong client)
    stranger_dir = ensure_keys(tmp_path / "stranger", ["marketdata"])
    stranger = BusSecurity(
        identity="marketdata",
        pair=KeyRing(stranger_dir).pair("marketdata"),
        ring=KeyRing(env["BUS_SECRET_FILE"].rsplit("/", 1)[0] + "/curve"),
    )
    unknown = Publisher(
        ctx.pub_ctx,
        env["BUS_PUB_ENDPOINT"],
        "marketdata@x",
        security=stranger,
    )
    forged = msgspec.structs.replace(bar(666.0), producer="marketdata@x", seq=1)
    for _ in range(50):
        plain.send_multipart([b"bar.AAPL", encode(forged)])
        unknown.publish(bar(666.0))
    await send_until_counted(listener, lambda: unknown.publish(bar(666.0)), "keys_refused")
    honest.publish(bar(2.0))  # the end marker: everything sent before it has been decided
    await listener.until(lambda m: isinstance(m, Bar) and m.close == 2.0)
    assert all(m.close != 666.0 for m in listener.got if isinstance(m, Bar))
    plain.close(linger=0)
    unknown.close()


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        ("inference", fill()),  # a forged fill would be booked in the ledger
        ("marketdata", fill()),
        (
            "marketdata",
            Heartbeat(service="inference", ready=True, ts_event=NOW),
        ),  # hides a dead one
        ("execution", bar(666.0)),  # a forged bar would set the simulator's fill price
        ("ibsim", bar(666.0)),
        ("operator", bar(666.0)),
    ],
)
async def test_identity_cannot_publish_outside_its_rights(bus, identity, message) -> None:
    ctx, env = bus
    listener = Listener(ctx, env, ["bar.", "fill.", "hb.inference", "hb.bus"])
    honest = publisher(ctx, env, "marketdata")
    await wait_subscribed(listener, honest, bar(1.0))
    forger = publisher(ctx, env, identity, name=producer_id(identity))
    # the forwarder counts the refusals and says so in its own heartbeat
    hb = await send_until_counted(
        listener, lambda: forger.publish(message), "refused", "topic_not_allowed", at_least=5
    )
    assert hb.producer.startswith("bus@")
    honest.publish(bar(2.0))
    await listener.until(lambda m: isinstance(m, Bar) and m.close == 2.0)
    assert not any(isinstance(m, Fill) for m in listener.got)
    assert not any(isinstance(m, Bar) and m.close == 666.0 for m in listener.got)
    assert not any(isinstance(m, Heartbeat) and m.service == "inference" for m in listener.got)
    forger.close()


async def test_sequence_hijack_is_impossible(bus) -> None:
    """A bar carrying marketdata's producer name and a huge seq used to silence every real bar."""
    ctx, env = bus
    listener = Listener(ctx, env, ["bar.", "hb.bus"])
    honest = publisher(ctx, env, "marketdata")
    await wait_subscribed(listener, honest, bar(1.0))
    # from another identity, with the honest producer's name: refused at the forwarder...
    hijacker = publisher(ctx, env, "inference", name=honest.producer)
    await send_until_counted(
        listener,
        lambda: hijacker.publish(msgspec.structs.replace(bar(666.0), seq=10**15)),
        "refused",
        "topic_not_allowed",
    )
    # ...and even a frame that reached a subscriber is keyed on its sender, not its name
    direct = listener.sub.accept(
        b"bar.AAPL",
        encode(msgspec.structs.replace(bar(666.0), producer=honest.producer, seq=10**15)),
        identity="inference",
    )
    assert direct is None and listener.sub.stats.refused.counts["producer_not_sender"] == 1
    for close in (3.0, 4.0, 5.0):
        honest.publish(bar(close))
    for close in (3.0, 4.0, 5.0):
        await listener.until(lambda m, c=close: isinstance(m, Bar) and m.close == c)
    assert not any(isinstance(m, Bar) and m.close == 666.0 for m in listener.got)
    hijacker.close()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"high": float("inf")}, "non_finite"),
        ({"open": float("nan")}, "non_finite"),
        ({"close": -5.0, "low": -6.0, "open": -5.0}, "price_out_of_range"),
        ({"high": 50.0}, "inconsistent_ohlc"),
        ({"symbol": "A" * 5000}, "bad_symbol"),
        ({"symbol": ""}, "bad_symbol"),
        ({"ts_event": NOW + 10**18}, "ts_event_out_of_range"),
    ],
)
async def test_hostile_numbers_are_refused_before_state(bus, changes, reason) -> None:
    ctx, env = bus
    listener = Listener(ctx, env, ["bar."])
    honest = publisher(ctx, env, "marketdata")
    await wait_subscribed(listener, honest, bar(1.0))
    honest.publish(bar(100.0, **changes))
    honest.publish(bar(2.0))
    await listener.until(lambda m: isinstance(m, Bar) and m.close == 2.0)
    assert listener.sub.stats.refused.counts == {reason: 1}
    assert all(m.close in (1.0, 2.0) for m in listener.got if isinstance(m, Bar))


async def test_oversize_frame_is_refused_and_the_bus_goes_on(bus) -> None:
    ctx, env = bus
    # subscribed to fill. too: a PUB socket only sends topics somebody subscribed to
    listener = Listener(ctx, env, ["bar.", "fill.", "hb.bus"])
    honest = publisher(ctx, env, "marketdata")
    await wait_subscribed(listener, honest, bar(1.0))
    big = ctx.pub_ctx.socket(zmq.PUB)
    security = bus_security(env, "marketdata")
    assert security is not None
    security.client(big, "bus")
    big.connect(env["BUS_PUB_ENDPOINT"])

    # ZMQ_MAXMSGSIZE drops the frame (and that connection) at the forwarder. Readiness first: a
    # small refused marker on the same connection is counted once the connection is up.
    def marker() -> None:
        big.send_multipart([b"fill.AAPL", b"x"])

    hb = await send_until_counted(listener, marker, "refused", "topic_not_allowed", at_least=1)
    admitted = bus_counter(hb, "keys_admitted")
    big.send_multipart([b"bar.AAPL", b"\x00" * (2 * 1024 * 1024)])
    # the forwarder cut that connection: the publisher reconnects, and is admitted once more
    await send_until_counted(listener, lambda: None, "keys_admitted", at_least=admitted + 1)
    honest.publish(bar(2.0))
    await listener.until(lambda m: isinstance(m, Bar) and m.close == 2.0)
    assert listener.sub.stats.malformed == 0  # no 2 MiB frame ever left the forwarder
    big.close(linger=0)


def test_every_topic_has_exactly_one_owner() -> None:
    topics = ["bar.AAPL", "signal.AAPL", "order.AAPL", "fill.AAPL", "position.AAPL",
              "pnl.default", "model.updated", "model.status"]  # fmt: skip
    for topic in topics:
        owners = [name for name in IDENTITIES if may_publish(name, topic)]
        assert len(owners) == 1, (topic, owners)
    assert PUBLISH_RIGHTS["ibsim"] == () and PUBLISH_RIGHTS["operator"] == ()
    for name in IDENTITIES:
        assert may_publish(name, f"hb.{name}") == (name not in ("ibsim", "operator"))
        assert not may_publish(name, "hb.someone-else")


# ---------------------------------------------------------------- commands


@pytest.fixture
async def command_server(bus_env, tmp_path):
    """A real CURVE command server named 'execution' with a kill and a status handler."""
    ctx = zmq.asyncio.Context()
    key = load_or_create_key(bus_env["BUS_SECRET_FILE"])
    security = bus_security(bus_env, "execution")
    endpoint = bus_env["EXECUTION_CMD_ENDPOINT"]
    server = CommandServer(ctx, endpoint, key, "execution", security=security)
    killed: list[dict] = []

    async def kill(args: dict) -> dict:
        killed.append(args)
        return {"killed": True}

    async def status(args: dict) -> dict:
        return {"ready": True}

    server.register("kill", kill)
    server.register("status", status)
    task = asyncio.create_task(server.serve_forever())
    yield endpoint, key, killed, server
    task.cancel()
    server.close()
    ctx.destroy(linger=0)


async def test_commands_are_checked_against_the_senders_rights(command_server, bus_env) -> None:
    endpoint, key, killed, _ = command_server

    def as_identity(identity: str, name: str, args: dict | None = None) -> object:
        return call(endpoint, name, args, key, security=bus_security(bus_env, identity),
                    server="execution")  # fmt: skip

    for identity in ("trainer", "inference", "marketdata", "monitor"):
        with pytest.raises(CommandError, match="may not send 'kill'"):
            await asyncio.to_thread(as_identity, identity, "kill", {"reason": "x"})
        assert await asyncio.to_thread(as_identity, identity, "status") == {"ready": True}
    assert killed == []
    assert await asyncio.to_thread(as_identity, "operator", "kill", {"reason": "drill"}) == {
        "killed": True
    }
    assert killed == [{"reason": "drill"}]
    with pytest.raises(CommandError, match="bad arguments"):  # typed: no unknown keys
        await asyncio.to_thread(as_identity, "operator", "kill", {"why": "x"})
    with pytest.raises(CommandError, match="no reply"):  # plain TCP: CURVE handshake fails
        await asyncio.to_thread(
            lambda: call(endpoint, "status", {}, key, security=None, timeout_s=1.0)
        )


async def test_hostile_command_frames_never_stop_the_server(command_server, bus_env) -> None:
    """A non-ASCII mac or args nested with non-string keys used to raise inside authentication."""
    endpoint, key, killed, _server = command_server
    security = bus_security(bus_env, "operator")
    assert security is not None
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    security.client(sock, "execution")
    sock.connect(endpoint)
    encoder = msgspec.msgpack.Encoder()
    base = dict(name="status", request_id="r", ts=time.time_ns(), nonce="n", sender="x")
    hostile = [
        encoder.encode({**base, "mac": "é" * 64}),
        encoder.encode({**base, "args": {"a": {1: 2, "b": 3}}, "mac": "0" * 64}),
        encoder.encode({**base, "args": {"a": {(1, 2): 3}}, "mac": "0" * 64}),
        encoder.encode({**base, "ts": 2**63 - 1, "mac": "0" * 64}),
        b"\xc1garbage",
        encoder.encode([1, 2, 3]),
        encoder.encode(
            sign(
                Command(
                    name="kill", args={"reason": 1}, request_id="r2", ts=time.time_ns(), nonce=""
                ),
                key,
            )
        ),
    ]

    def exchange(payload: bytes) -> Reply:  # blocking, so off the event loop the server runs on
        sock.send_multipart([b"", payload])
        assert sock.poll(5000), "the server stopped answering"
        return msgspec.msgpack.decode(sock.recv_multipart()[-1], type=Reply)

    replies = [await asyncio.to_thread(exchange, payload) for payload in hostile]
    assert all(not r.ok for r in replies), replies
    assert killed == []
    sock.close()
    ctx.term()
    assert await asyncio.to_thread(call, endpoint, "status", {}, key, server="execution") == {
        "ready": True
    }


def test_stale_or_unknown_server_endpoint_is_a_clear_error(bus_env) -> None:
    with pytest.raises(CommandError, match="no service's command endpoint"):
        call(f"tcp://127.0.0.1:{free_port()}", "status", {}, b"k" * 64)
