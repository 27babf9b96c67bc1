"""The bus over real ZeroMQ sockets (in one process, through the real forwarder process)."""

import asyncio
import time

import msgspec
import pytest
import zmq
import zmq.asyncio

from shared.auth import AuthError, Verifier, load_or_create_key, sign
from shared.bus import Publisher, Subscriber
from shared.command_channel import CommandError, CommandServer, call
from shared.messages import Bar, Command, encode
from tests.conftest import bus_security

pytestmark = pytest.mark.unit


def bar(seq_close: int, symbol: str = "AAPL") -> Bar:
    return Bar(
        symbol=symbol,
        timeframe="1d",
        bar_open_ts=seq_close - 1,
        open=1.0,
        high=1.0,
        low=1.0,
        close=1.0,
        volume=1.0,
        ts_event=seq_close,
    )


def test_subscriber_drops_malformed_and_counts_it() -> None:
    sub = Subscriber(zmq.asyncio.Context.instance(), "tcp://127.0.0.1:1", ["bar."])
    assert sub.accept(b"bar.AAPL", b"\x00garbage") is None
    assert sub.accept(b"bar.AAPL", b"\x93") is None
    good = msgspec.structs.replace(bar(1), producer="p", seq=1)
    assert sub.accept(b"bar.AAPL", encode(good)) == good
    assert sub.accept(b"bar.MSFT", encode(good)) is None  # payload disagrees with its topic
    assert sub.stats.malformed == 3
    assert sub.stats.received == 1


def test_subscriber_detects_gaps_and_duplicates() -> None:
    sub = Subscriber(zmq.asyncio.Context.instance(), "tcp://127.0.0.1:1", ["bar."])
    stamped = [msgspec.structs.replace(bar(i), producer="p", seq=i) for i in (1, 2, 2, 5, 3, 6)]
    kept = [sub.accept(b"bar.AAPL", encode(m)) for m in stamped]
    assert [m.seq for m in kept if m is not None] == [1, 2, 5, 6]
    assert sub.stats.duplicates == 2  # the repeated 2 and the late 3
    assert sub.stats.gaps == 2  # 3 and 4 missing when 5 arrived
    # another producer on the same topic is its own stream
    other = msgspec.structs.replace(bar(1), producer="q", seq=1)
    assert sub.accept(b"bar.AAPL", encode(other)) is not None


async def wait_subscribed(pub: Publisher, sub: Subscriber, symbol: str = "ZZZZ") -> None:
    """Readiness: ``pub`` re-publishes a marker bar of ``symbol`` (subscribed last) until ``sub``
    receives one. A subscriber's topics reach the publisher in order through the forwarder, so
    once the last one delivers, every earlier one is in place at the publisher too."""
    deadline = time.monotonic() + 15
    while True:
        pub.publish(bar(1, symbol))
        try:
            while True:
                message = await asyncio.wait_for(sub.recv(), 0.2)
                if isinstance(message, Bar) and message.symbol == symbol:
                    return
        except TimeoutError:
            assert time.monotonic() < deadline, "the subscription never reached the publisher"


async def test_publish_subscribe_through_the_forwarder(busproxy: dict[str, str]) -> None:
    ctx = zmq.asyncio.Context()
    sub = Subscriber(
        ctx,
        busproxy["BUS_SUB_ENDPOINT"],
        ["bar.AAPL", "bar.ZZZZ"],  # the marker's topic last
        security=bus_security(busproxy, "monitor"),
    )
    pub = Publisher(
        ctx,
        busproxy["BUS_PUB_ENDPOINT"],
        "marketdata-test",
        security=bus_security(busproxy, "marketdata"),
    )
    await wait_subscribed(pub, sub)
    for i in range(1, 101):
        pub.publish(bar(i))
        pub.publish(bar(i, "MSFT"))  # not subscribed
    received: list[Bar] = []
    while len(received) < 100:
        message = await asyncio.wait_for(sub.recv(), 5)
        if isinstance(message, Bar) and message.symbol != "ZZZZ":  # late markers aside
            received.append(message)
    assert [m.seq for m in received] == list(range(1, 101))
    assert all(
        m.symbol == "AAPL" and m.producer == "marketdata-test" and m.ts_publish > 0
        for m in received
    )
    assert sub.stats.gaps == 0
    pub.close()
    sub.close()
    ctx.destroy()


def test_secret_file_created_once_and_reused(tmp_path) -> None:
    path = tmp_path / "s" / "bus.key"
    key = load_or_create_key(path)
    assert len(key) == 64 and load_or_create_key(path) == key
    assert (path.stat().st_mode & 0o777) == 0o600


def test_verifier_refuses_unsigned_forged_stale_and_replayed() -> None:
    key, other = b"k" * 64, b"o" * 64
    verifier = Verifier(key)
    now = time.time_ns()
    command = Command(name="kill", request_id="1", ts=now, nonce="")
    with pytest.raises(AuthError, match="unsigned"):
        verifier.verify(command, now)
    with pytest.raises(AuthError, match="bad signature"):
        verifier.verify(sign(command, other), now)
    tampered = msgspec.structs.replace(sign(command, key), name="rearm")
    with pytest.raises(AuthError, match="bad signature"):
        verifier.verify(tampered, now)
    stale = sign(msgspec.structs.replace(command, ts=now - 120 * 10**9), key)
    with pytest.raises(AuthError, match="stale"):
        verifier.verify(stale, stale.ts)
    good = sign(command, key)
    verifier.verify(good, now)
    with pytest.raises(AuthError, match="replayed"):
        verifier.verify(good, now)


async def test_command_server_answers_signed_and_refuses_others(tmp_path) -> None:
    from tests.conftest import free_port

    key = load_or_create_key(tmp_path / "bus.key")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.asyncio.Context()
    server = CommandServer(ctx, endpoint, key, "svc")

    async def echo(args: dict) -> dict:
        return {"echo": args}

    async def boom(args: dict) -> None:
        raise RuntimeError("handler broke")

    server.register("echo", echo)
    server.register("boom", boom)
    task = asyncio.create_task(server.serve_forever())
    loop = asyncio.get_running_loop()

    def plain_call(name: str, args: dict, secret: bytes) -> object:
        return call(endpoint, name, args, secret, security=None)

    ok = await loop.run_in_executor(None, plain_call, "echo", {}, key)
    assert ok == {"echo": {}}
    with pytest.raises(CommandError, match="bad arguments"):  # echo takes no arguments
        await loop.run_in_executor(None, plain_call, "echo", {"x": 1}, key)
    with pytest.raises(CommandError, match="unauthorised: bad signature"):
        await loop.run_in_executor(None, plain_call, "echo", {}, b"x" * 64)
    with pytest.raises(CommandError, match="handler broke"):
        await loop.run_in_executor(None, plain_call, "boom", {}, key)
    with pytest.raises(CommandError, match="unknown command"):
        await loop.run_in_executor(None, plain_call, "nope", {}, key)
    assert server.refused == 2
    # the server is still up after all of that
    assert await loop.run_in_executor(None, plain_call, "echo", {}, key) == {"echo": {}}
    task.cancel()
    server.close()
    ctx.destroy()
