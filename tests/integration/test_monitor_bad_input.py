"""A running monitor process fed garbage on the bus: it counts and drops it, stays up, and still
books the next valid fill exactly once (also when that fill arrives twice)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from shared.auth import load_or_create_key
from shared.bus import CommandError, call
from shared.messages import Fill, encode
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def wait_status(endpoint: str, key: bytes, until, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = call(endpoint, "status", {}, key, timeout_s=2.0)
            if until(status):
                return status
        except CommandError:
            pass
        assert time.monotonic() < deadline, "monitor did not reach the expected state"
        time.sleep(0.2)


def test_malformed_frames_are_counted_and_dropped_and_the_service_stays_up(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **busproxy,
        "MONITOR_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "MONITOR_HTTP_PORT": str(free_port()),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    endpoint = busproxy["MONITOR_CMD_ENDPOINT"]
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.connect(busproxy["BUS_PUB_ENDPOINT"])
    try:
        wait_status(endpoint, key, lambda s: s.get("ready"))
        time.sleep(1.0)  # the monitor's subscription reaches the forwarder
        garbage = [
            [b"fill.AAPL", b"\x00not msgpack"],
            [b"fill.AAPL", b"\x93\x01\x02"],  # valid msgpack, not a message
            [b"fill.AAPL", b"a", b"third frame"],
            [
                b"fill.AAPL",
                encode(
                    Fill(
                        symbol="MSFT",
                        exec_id="x",
                        order_ref="r",
                        side="BUY",
                        quantity=1,
                        price=1,
                        commission=0,
                        producer="t",
                        seq=1,
                    )
                ),
            ],
        ]
        for frames in garbage:
            pub.send_multipart(frames)
        good = Fill(
            symbol="AAPL",
            exec_id="e-1",
            order_ref="rl-AAPL-1",
            side="BUY",
            quantity=5,
            price=10.0,
            commission=1.0,
            producer="test",
            seq=1,
            ts_event=1,
        )
        pub.send_multipart([b"fill.AAPL", encode(good)])
        pub.send_multipart([b"fill.AAPL", encode(good)])  # a duplicate on the wire
        status = wait_status(endpoint, key, lambda s: s.get("fills") == 1 and s["malformed"] >= 4)
        assert status["malformed"] == 4
        assert proc.poll() is None, "the monitor died on bad input"
        fills = call(endpoint, "fills", {}, key)
        assert [f["exec_id"] for f in fills] == ["e-1"]
    finally:
        pub.close()
        ctx.term()
        proc.terminate()
        proc.wait(timeout=15)
