"""``python -m ibsim`` as a separate process against hostile clients and re-runs: half-open and
oversize connections closed, the cap enforced, bad control commands answered on a connection that
stays open, the real ib_async client still trading afterwards; a re-run (with or without a state
directory) never reuses an execution id; a bad hardening setting exits 2 naming its variable."""

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ib_async import IB, MarketOrder, Stock
from ibsim.process import SimulatorProcess

from tests.conftest import sim_ports

pytestmark = pytest.mark.integration

NS = 1_000_000_000
T0 = 1_764_167_400 * NS


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Reads until EOF; True when the server closed the connection within ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True


def push_bar(sim: SimulatorProcess, minute: int, price: float) -> dict[str, object]:
    return sim.control(
        {
            "cmd": "push_bar",
            "symbol": "AAPL",
            "ts": T0 + minute * 60 * NS,
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": 100,
        }
    )


async def buy_and_fill(sim: SimulatorProcess, ref: str, minute: int) -> str:
    """One market order through ib_async, filled by a pushed bar; returns its exec id."""
    ib = IB()
    await ib.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=10)
    try:
        [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        assert isinstance(contract, Stock)
        trade = ib.placeOrder(contract, MarketOrder("BUY", 5, orderRef=ref))
        await until(lambda: trade.orderStatus.status == "Submitted")
        assert push_bar(sim, minute, 100.0 + minute) == {"ok": True, "fills": 1}
        await until(lambda: trade.isDone() and bool(trade.fills))
        assert trade.orderStatus.status == "Filled"
        return str(trade.fills[0].execution.execId)
    finally:
        ib.disconnect()


@pytest.mark.parametrize("keep_state", [False, True], ids=["in_memory", "state_dir"])
async def test_a_re_run_never_reuses_an_exec_id(tmp_path: Path, keep_state: bool) -> None:
    env = {"IBSIM_SLIPPAGE_BPS": "0"}
    if keep_state:
        env["IBSIM_STATE_DIR"] = str(tmp_path / "state")
    seen: list[str] = []
    for run in range(2):
        log = tmp_path / f"ibsim-{run}.log"
        with SimulatorProcess({**env, **sim_ports()}, log_path=log) as sim:
            seen.append(await buy_and_fill(sim, f"run-{run}", minute=run + 1))
            records = sim.control({"cmd": "executions"})["executions"]
            assert isinstance(records, list)
            on_record = [record["exec_id"] for record in records]
            assert seen[-1] in on_record
            # a state dir keeps the first run's record; in memory, the re-run starts empty
            assert len(on_record) == (run + 1 if keep_state else 1)
    assert seen[0] != seen[1]


async def test_hostile_clients_then_ib_async_trades(tmp_path: Path) -> None:
    env = {
        "IBSIM_SLIPPAGE_BPS": "0",
        "IBSIM_MAX_CLIENTS": "3",
        "IBSIM_HANDSHAKE_TIMEOUT_S": "0.5",
        "IBSIM_FRAME_TIMEOUT_S": "0.5",
        "IBSIM_MAX_FRAME_BYTES": str(64 * 1024),
    }
    with SimulatorProcess({**env, **sim_ports()}, log_path=tmp_path / "ibsim.log") as sim:
        # three half-open connections fill the cap; a fourth is refused at once
        held = [socket.create_connection(("127.0.0.1", sim.port), timeout=5) for _ in range(3)]
        deadline = time.monotonic() + 10
        while sim.control({"cmd": "ping"})["refused"] != {"max_clients": 1}:
            extra = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
            assert closed_by_server(extra, within_s=5.0)
            extra.close()
            assert time.monotonic() < deadline, "the connection cap was not enforced"
        for sock in held:  # and the half-open ones go after the handshake timeout
            assert closed_by_server(sock, within_s=5.0)
            sock.close()
        for opening in (
            b"API\x00" + struct.pack(">I", 1 << 20),  # over the frame limit: closed on the length
            b"API\x00" + struct.pack(">I", 9) + b"v15",  # half a version frame, then silence
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello
        ):
            sock = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
            sock.sendall(opening)
            assert closed_by_server(sock, within_s=5.0)
            sock.close()
        refused = sim.control({"cmd": "ping"})["refused"]
        assert isinstance(refused, dict)
        assert refused["handshake_timeout"] >= 4 and refused["frame_too_large"] == 1

        # the control port: each bad command answered, the same connection still served
        with socket.create_connection(("127.0.0.1", sim.control_port), timeout=10) as ctl:
            stream = ctl.makefile("rwb")
            for line, field in (
                (b'{"cmd": "push_bar", "symbol": "AAPL", "open": 1, "high": 1, "low": 1, '
                 b'"close": 1, "ts": 1e400}', "ts"),
                (b'{"cmd": "push_bar", "symbol": "", "open": 1, "high": 1, "low": 1, "close": 1}',
                 "symbol"),
                (b'{"cmd": "push_bar", "symbol": "AAPL", "open": 2, "high": 1, "low": 1, '
                 b'"close": 1}', "high"),
                (b'{"cmd": "faults", "set": {"delay_acks_ms": NaN}}', "set.delay_acks_ms"),
                (b"\x00\xff garbage", "line"),
            ):  # fmt: skip
                stream.write(line + b"\n")
                stream.flush()
                reply = json.loads(stream.readline())
                assert reply["ok"] is False and reply["error"].startswith(f"{field}: "), reply
            stream.write(b'{"cmd": "ping"}\n')
            stream.flush()
            assert json.loads(stream.readline())["ok"] is True

        exec_id = await buy_and_fill(sim, "after-hostile", minute=1)
        assert exec_id
        assert sim.proc is not None and sim.proc.poll() is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("IBSIM_MAX_CLIENTS", "0"),
        ("IBSIM_HANDSHAKE_TIMEOUT_S", "-1"),
        ("IBSIM_FRAME_TIMEOUT_S", "soon"),
        ("IBSIM_MAX_FRAME_BYTES", "1e12"),
        ("IBSIM_MAX_WRITE_BUFFER_BYTES", "1"),
    ],
)
def test_a_bad_hardening_setting_exits_2_naming_it(key: str, value: str) -> None:
    env = {**os.environ, key: value, "IBSIM_PRICE_SOURCE": "none"}
    result = subprocess.run(
        [sys.executable, "-m", "ibsim"], env=env, capture_output=True, timeout=30
    )
    assert result.returncode == 2
    assert key.encode() in result.stderr and b"Traceback" not in result.stderr
