"""The simulator against hostile clients: a TWS port that bounds what one connection may hold
(handshake timeout, connection cap, frame size and frame time limits), a control port that
validates every field and never drops a connection over a bad one, and execution ids that a
re-run never repeats. Every wait has a deadline; none stands in for readiness."""

import asyncio
import json
import socket
import struct
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ib_async import IB, MarketOrder, Stock
from ibsim.app import Simulator
from ibsim.config import IbsimSettings, load_settings
from ibsim.contracts import ContractRegistry
from ibsim.exchange import Exchange
from ibsim.faults import FaultSwitches
from ibsim.journal import ExecutionJournal
from ibsim.models import ContractQuery, OrderRequest
from ibsim.wire import encode_frame

from shared.config import ConfigError

pytestmark = pytest.mark.unit

NS = 1_000_000_000
T0 = 1_764_167_400 * NS
GENEROUS_S = 60.0  # a limit that must not be the one that fires in a test


def sim_settings(**overrides: Any) -> IbsimSettings:
    values: dict[str, Any] = dict(
        port=0,
        control_port=0,
        price_source="none",
        slippage_bps=0.0,
        handshake_timeout_s=GENEROUS_S,
        frame_timeout_s=GENEROUS_S,
    )
    values.update(overrides)
    return IbsimSettings(**values)


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    """True when the server closes the connection within ``within_s`` (reads until EOF)."""
    try:
        async with asyncio.timeout(within_s):
            while True:
                try:
                    chunk = await reader.read(65536)
                except ConnectionError:
                    return True
                if not chunk:
                    return True
    except TimeoutError:
        return False


def version_frame() -> bytes:
    payload = b"v157..178"
    return b"API\x00" + struct.pack(">I", len(payload)) + payload


def start_api_frame(client_id: int) -> bytes:
    return encode_frame([71, 2, client_id, ""])  # START_API, version 2, clientId, options


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def ready_raw(port: int, client_id: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection through the handshake and startApi (the server's greeting is read)."""
    reader, writer = await open_raw(port)
    writer.write(version_frame())
    await writer.drain()
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    await reader.readexactly(length)  # server version + connection time
    writer.write(start_api_frame(client_id))
    await writer.drain()
    return reader, writer


# ------------------------------------------------------------------ TWS port


@pytest.mark.parametrize(
    "opening",
    [b"", b"AP", b"API\x00", b"API\x00\x00\x00\x00\x09v15", version_frame()],
    ids=["silent", "half_prefix", "prefix_only", "half_version_frame", "no_start_api"],
)
async def test_a_client_that_never_finishes_the_handshake_is_closed(opening: bytes) -> None:
    async with Simulator(sim_settings(handshake_timeout_s=0.3)) as sim:
        reader, writer = await open_raw(sim.port)
        writer.write(opening)
        await writer.drain()
        assert await closed_by_server(reader, within_s=5.0)
        writer.close()
        assert sim.ib_server.refused.counts.get("handshake_timeout") == 1
        await until(lambda: not sim.ib_server.sessions)


async def test_an_unfinished_frame_after_start_api_is_closed() -> None:
    async with Simulator(sim_settings(frame_timeout_s=0.3)) as sim:
        reader, writer = await ready_raw(sim.port, client_id=3)
        await until(lambda: 3 in sim.ib_server.by_client_id)
        writer.write(struct.pack(">I", 100) + b"6\x00")  # 2 of the 100 bytes it announces
        await writer.drain()
        assert await closed_by_server(reader, within_s=5.0)
        assert sim.ib_server.refused.counts == {"frame_timeout": 1}
        await until(lambda: 3 not in sim.ib_server.by_client_id)


async def test_a_ready_client_that_stays_quiet_is_kept() -> None:
    async with Simulator(sim_settings(handshake_timeout_s=0.2, frame_timeout_s=0.2)) as sim:
        reader, writer = await ready_raw(sim.port, client_id=4)
        await until(lambda: 4 in sim.ib_server.by_client_id)
        # well past both limits: a connected client may be idle as long as it likes
        assert not await closed_by_server(reader, within_s=0.6)
        assert sim.ib_server.refused.counts == {}
        writer.close()


@pytest.mark.parametrize("declared", [(1 << 20) + 1, 16 << 20, 0xFFFFFFFF])
async def test_an_oversize_frame_closes_the_connection_at_once(declared: int) -> None:
    async with Simulator(sim_settings()) as sim:  # both timeouts far away: the size rule fires
        reader, writer = await open_raw(sim.port)
        writer.write(b"API\x00" + struct.pack(">I", declared) + b"v157")
        await writer.drain()
        assert await closed_by_server(reader, within_s=5.0)
        assert sim.ib_server.refused.counts == {"frame_too_large": 1}


async def test_the_connection_cap_refuses_one_more_and_counts_it() -> None:
    async with Simulator(sim_settings(max_clients=2)) as sim:
        held = [await open_raw(sim.port) for _ in range(2)]
        await until(lambda: len(sim.ib_server.sessions) == 2)
        extra_reader, extra_writer = await open_raw(sim.port)
        assert await closed_by_server(extra_reader, within_s=5.0)
        assert sim.ib_server.refused.counts == {"max_clients": 1}
        for reader, _ in held:  # the two below the cap are untouched
            assert not await closed_by_server(reader, within_s=0.05)
        for _, writer in held:
            writer.close()
        await until(lambda: not sim.ib_server.sessions)
        ib = IB()  # room again: a real client gets in
        await ib.connectAsync("127.0.0.1", sim.port, clientId=9, timeout=5)
        assert ib.isConnected()
        ib.disconnect()
        extra_writer.close()


async def test_ib_async_still_trades_after_the_hostile_clients() -> None:
    async with Simulator(sim_settings(max_clients=4, handshake_timeout_s=0.3)) as sim:
        hostile = []
        for opening in (b"", b"API\x00" + struct.pack(">I", 50 << 20), b"GET / HTTP/1.1\r\n"):
            reader, writer = await open_raw(sim.port)
            writer.write(opening)
            hostile.append((reader, writer))
        for reader, _ in hostile:
            assert await closed_by_server(reader, within_s=5.0)
        await until(lambda: not sim.ib_server.sessions)
        assert sum(sim.ib_server.refused.counts.values()) == 3
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=5)
        try:
            [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
            assert isinstance(contract, Stock)
            trade = ib.placeOrder(contract, MarketOrder("BUY", 10, orderRef="after-hostile"))
            await until(lambda: trade.orderStatus.status == "Submitted")
            assert sim.exchange.on_bar("AAPL", T0, 100, 101, 99, 100.5, 1000) == 1
            await until(lambda: trade.isDone() and bool(trade.fills))
            assert trade.orderStatus.status == "Filled"
            await asyncio.sleep(0.5)  # past the handshake timeout: a ready client stays
            assert ib.isConnected()
        finally:
            ib.disconnect()


# --------------------------------------------------------------- control port


class ControlConnection:
    """One control connection kept open across commands (to prove it survives bad ones)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def raw(self, line: bytes) -> dict[str, Any]:
        self.writer.write(line.rstrip(b"\n") + b"\n")
        await self.writer.drain()
        reply_line = await asyncio.wait_for(self.reader.readline(), 5.0)
        assert reply_line, "control port closed the connection"
        reply: dict[str, Any] = json.loads(reply_line)
        return reply

    async def send(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.raw(json.dumps(payload).encode())


@pytest.fixture
async def control() -> AsyncIterator[tuple[Simulator, ControlConnection]]:
    async with Simulator(sim_settings()) as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.control_port)
        yield sim, ControlConnection(reader, writer)
        writer.close()


GOOD_BAR: dict[str, Any] = {
    "cmd": "push_bar",
    "symbol": "AAPL",
    "open": 100.0,
    "high": 101.0,
    "low": 99.0,
    "close": 100.5,
    "volume": 10,
    "ts": T0,
}

BAD_COMMANDS: list[tuple[dict[str, Any] | bytes, str]] = [
    (
        b'{"cmd": "push_bar", "symbol": "AAPL", "open": 1, "high": 2, "low": 1, "close": 1, '
        b'"ts": 1e400}',
        "ts",
    ),
    ({**GOOD_BAR, "open": float("nan")}, "open"),
    ({**GOOD_BAR, "close": float("inf")}, "close"),
    ({**GOOD_BAR, "open": "100"}, "open"),
    ({**GOOD_BAR, "high": True}, "high"),
    ({**GOOD_BAR, "low": -1.0}, "low"),
    ({**GOOD_BAR, "open": 0}, "open"),
    ({**GOOD_BAR, "high": 100.2}, "high"),  # below close
    ({**GOOD_BAR, "low": 100.2}, "low"),  # above open
    ({**GOOD_BAR, "symbol": ""}, "symbol"),
    ({**GOOD_BAR, "symbol": "A" * 25}, "symbol"),
    ({**GOOD_BAR, "symbol": "AAPL\n"}, "symbol"),
    ({**GOOD_BAR, "symbol": "../etc"}, "symbol"),
    ({**GOOD_BAR, "symbol": 7}, "symbol"),
    ({**GOOD_BAR, "volume": -1}, "volume"),
    ({**GOOD_BAR, "ts": -5}, "ts"),
    ({**GOOD_BAR, "ts": 10**30}, "ts"),
    ({**GOOD_BAR, "ts": 1.5e18}, "ts"),
    ({**GOOD_BAR, "bar_open_ts": T0}, "bar_open_ts"),
    ({**GOOD_BAR, "surprise": 1}, "surprise"),
    ({k: v for k, v in GOOD_BAR.items() if k != "close"}, "close"),
    ({"cmd": "faults", "set": {"delay_acks_ms": -1}}, "set.delay_acks_ms"),
    ({"cmd": "faults", "set": {"delay_acks_ms": 1e400}}, "set.delay_acks_ms"),
    ({"cmd": "faults", "set": {"reject_next_n": 2.5}}, "set.reject_next_n"),
    ({"cmd": "faults", "set": {"reject_next_n": 10**12}}, "set.reject_next_n"),
    ({"cmd": "faults", "set": {"reject_code": 0}}, "set.reject_code"),
    ({"cmd": "faults", "set": {"reject_reason": "x" * 1000}}, "set.reject_reason"),
    ({"cmd": "faults", "set": {"partial_fill_fraction": 2}}, "set.partial_fill_fraction"),
    ({"cmd": "faults", "set": {"drop_connection_now": -1}}, "set.drop_connection_now"),
    ({"cmd": "faults", "set": {"drop_connection_now": "all"}}, "set.drop_connection_now"),
    ({"cmd": "faults", "set": {"outage_seconds": 0}}, "set.outage_seconds"),
    ({"cmd": "faults", "set": {"outage_seconds": 1e9}}, "set.outage_seconds"),
    ({"cmd": "faults", "set": {"nonsense": 1}}, "set.nonsense"),
    ({"cmd": "faults", "set": [1]}, "set"),
    ({"cmd": "faults", "clear": "yes"}, "clear"),
    ({"cmd": "executions", "symbol": ""}, "symbol"),
    ({"cmd": "executions", "order_ref": "r" * 500}, "order_ref"),
    ({"cmd": "orders", "order_ref": 5}, "order_ref"),
    ({"cmd": "ping", "extra": True}, "extra"),
    ({"cmd": "explode"}, "cmd"),
    ({"cmd": None}, "cmd"),
    ({}, "cmd"),
    (b"[1, 2]", "line"),
    (b"not json", "line"),
    (b"\xff\xfe\x00", "line"),
    (b"[" * 50_000, "line"),
    (b'{"cmd": "ping", "x": ' + b'{"a": ' * 20 + b"1" + b"}" * 20 + b"}", "x.a.a.a.a.a.a.a.a"),
]


@pytest.mark.parametrize(
    ("command", "field"), BAD_COMMANDS, ids=[f"{i}-{f}" for i, (_, f) in enumerate(BAD_COMMANDS)]
)
async def test_each_bad_control_field_is_refused_and_the_connection_stays_usable(
    control: tuple[Simulator, ControlConnection], command: dict[str, Any] | bytes, field: str
) -> None:
    sim, conn = control
    before = (sim.exchange.bars.latest("AAPL"), sim.faults.to_json(), len(sim.exchange.orders))
    reply = await conn.raw(command) if isinstance(command, bytes) else await conn.send(command)
    assert reply["ok"] is False
    assert reply["error"].startswith(f"{field}: "), reply
    after = (sim.exchange.bars.latest("AAPL"), sim.faults.to_json(), len(sim.exchange.orders))
    assert after == before  # a refused command changes nothing
    assert sim.ib_server.accepting
    assert (await conn.send({"cmd": "ping"}))["ok"] is True  # same connection, still served
    assert await conn.send(GOOD_BAR) == {"ok": True, "fills": 0}


async def test_a_line_over_the_limit_is_answered_before_the_close(
    control: tuple[Simulator, ControlConnection],
) -> None:
    sim, conn = control
    conn.writer.write(b"x" * (2 << 20) + b"\n")
    line = await asyncio.wait_for(conn.reader.readline(), 10.0)
    assert json.loads(line)["error"].startswith("line: ")
    again = await asyncio.open_connection("127.0.0.1", sim.control_port)
    assert (await ControlConnection(*again).send({"cmd": "ping"}))["ok"]
    again[1].close()


# -------------------------------------------- control port, generated inputs


@pytest.fixture(scope="module")
def threaded_sim() -> Iterator[int]:
    """A simulator in its own thread and loop, so hypothesis can drive it with plain sockets."""
    loop = asyncio.new_event_loop()
    sim = Simulator(sim_settings())
    ready = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        async with sim:
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield sim.control_port
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


FIELD_NAMES = [
    "cmd", "symbol", "open", "high", "low", "close", "volume", "ts", "bar_open_ts", "set",
    "clear", "order_ref", "delay_acks_ms", "reject_next_n", "reject_reason", "reject_code",
    "partial_fill_fraction", "drop_connection_now", "outage_seconds",
]  # fmt: skip
COMMANDS = ["ping", "faults", "executions", "orders", "push_bar", "positions", "account", "reset"]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e400, -1e400, 0.0, 1e-320, 1e9, 1e10])
    | st.text(max_size=30)
    | st.sampled_from([*COMMANDS, "AAPL", "", "BRK.B", "a/b", "-X"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _no_outage(command: dict[str, Any]) -> bool:
    """A valid outage would close the TWS port for up to a day: not what these tests are about."""
    changes = command.get("set")
    return not (isinstance(changes, dict) and "outage_seconds" in changes)


COMMAND_OBJECTS: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {"cmd": st.sampled_from(COMMANDS) | SCALARS},
    optional={name: VALUES for name in FIELD_NAMES if name != "cmd"},
).filter(_no_outage)


def _roundtrip(sock: socket.socket, line: bytes, buffer: bytearray) -> dict[str, Any]:
    sock.sendall(line + b"\n")
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"control port dropped the connection after {line[:200]!r}"
        buffer += chunk
    end = buffer.index(b"\n")
    reply: dict[str, Any] = json.loads(bytes(buffer[:end]))
    del buffer[: end + 1]
    return reply


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=st.lists(COMMAND_OBJECTS, min_size=1, max_size=5))
def test_generated_commands_always_get_an_answer_on_a_live_connection(
    threaded_sim: int, commands: list[dict[str, Any]]
) -> None:
    with socket.create_connection(("127.0.0.1", threaded_sim), timeout=10) as sock:
        buffer = bytearray()
        for command in commands:
            reply = _roundtrip(sock, json.dumps(command).encode(), buffer)  # NaN/Infinity too
            assert reply["ok"] in (True, False)
            if reply["ok"] is False:
                field, sep, why = reply["error"].partition(": ")
                assert sep and field and why, reply
        assert _roundtrip(sock, b'{"cmd": "ping"}', buffer)["ok"] is True


@settings(max_examples=150, deadline=None)
@given(line=st.binary(max_size=200).filter(lambda b: b"\n" not in b and b.strip()))
def test_generated_bytes_always_get_an_answer(threaded_sim: int, line: bytes) -> None:
    with socket.create_connection(("127.0.0.1", threaded_sim), timeout=10) as sock:
        buffer = bytearray()
        assert _roundtrip(sock, line, buffer)["ok"] in (True, False)
        assert _roundtrip(sock, b'{"cmd": "ping"}', buffer)["ok"] is True


# ------------------------------------------------------------- restart coherence


def _fill_one(state_dir: str) -> tuple[str, int]:
    config = IbsimSettings(slippage_bps=0.0)
    journal = ExecutionJournal(state_dir)
    exchange = Exchange(config, ContractRegistry(config.universe), journal, FaultSwitches())
    exchange.place_order(
        1,
        OrderRequest(
            order_id=exchange.next_valid_id(1),
            contract=ContractQuery(symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD"),
            action="BUY",
            total_qty=10,
            order_type="MKT",
            lmt_price=None,
            aux_price=None,
            order_ref="restart",
        ),
    )
    assert exchange.on_bar("AAPL", T0, 100, 100, 100, 100, 1) == 1
    record = exchange.executions[-1]
    journal.close()
    return record.exec_id, record.perm_id


def test_re_runs_without_a_state_dir_never_reuse_an_exec_id() -> None:
    exec_ids = [_fill_one("")[0] for _ in range(20)]
    assert len(set(exec_ids)) == len(exec_ids)


def test_re_runs_on_one_state_dir_never_reuse_an_exec_id_or_perm_id(tmp_path: Any) -> None:
    runs = [_fill_one(str(tmp_path)) for _ in range(5)]
    assert len({exec_id for exec_id, _ in runs}) == 5
    assert len({perm_id for _, perm_id in runs}) == 5


def test_exec_ids_keep_the_tws_shape() -> None:
    exec_id, perm_id = _fill_one("")
    session, perm, fill, correction = exec_id.split(".")
    assert int(session, 16) and int(perm, 16) == perm_id and (fill, correction) == ("01", "01")
    assert 0 < perm_id < 2**31  # a signed 32-bit int, like TWS permIds


# ---------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("IBSIM_MAX_CLIENTS", "0"),
        ("IBSIM_MAX_CLIENTS", "many"),
        ("IBSIM_HANDSHAKE_TIMEOUT_S", "0"),
        ("IBSIM_HANDSHAKE_TIMEOUT_S", "inf"),
        ("IBSIM_FRAME_TIMEOUT_S", "nan"),
        ("IBSIM_MAX_FRAME_BYTES", "100"),
        ("IBSIM_MAX_FRAME_BYTES", str(1 << 30)),
        ("IBSIM_MAX_WRITE_BUFFER_BYTES", "10"),
        ("IBSIM_INITIAL_CASH", "inf"),
    ],
)
def test_a_bad_hardening_setting_names_its_variable(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings({key: value})


def test_hardening_defaults() -> None:
    defaults = load_settings({})
    assert defaults.max_clients == 32
    assert defaults.handshake_timeout_s == 5.0 and defaults.frame_timeout_s == 10.0
    assert defaults.max_frame_bytes == 1 << 20
