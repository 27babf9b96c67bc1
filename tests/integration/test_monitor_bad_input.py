"""A running monitor process fed garbage on the authenticated bus (as the execution identity, the
only one allowed to publish fills): it counts and drops it, stays up, and still books the next
valid fill exactly once (also when that fill arrives twice). Fills that decode but make no sense
(NaN price, zero quantity, an absurd symbol, no known order, wrong side, overfill) never reach the
ledger."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from shared.auth import load_or_create_key
from shared.bus import Publisher, producer_id
from shared.command_channel import CommandError, call
from shared.messages import Fill, OrderEvent, encode
from tests.conftest import bus_security, free_port

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000


def wait_status(
    endpoint: str, key: bytes, until: Callable[[dict], bool], timeout_s: float = 30.0
) -> dict:
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


def start_monitor(busproxy: dict[str, str], ledger: Path, **extra: str) -> subprocess.Popen:
    """``python -m monitor`` on ``ledger``; its log goes to ``<ledger>.log`` (appended)."""
    env = {
        **os.environ,
        **busproxy,
        "MONITOR_LEDGER_PATH": str(ledger),
        "MONITOR_HTTP_PORT": "0",
        "MONITOR_PNL_INTERVAL_S": "0.5",
        "MONITOR_RECONCILE_INTERVAL_S": "3600",  # no execution here: one back-fill try at start
        **extra,
    }
    with open(f"{ledger}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor"], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def execution_publisher(ctx: zmq.Context, env: dict[str, str]) -> Publisher:
    """Publishes as the execution identity (CURVE), like the real execution service."""
    return Publisher(
        ctx,
        env["BUS_PUB_ENDPOINT"],
        producer_id("execution"),
        security=bus_security(env, "execution"),
    )


def raw_execution_socket(ctx: zmq.Context, env: dict[str, str]) -> zmq.Socket:
    sock = ctx.socket(zmq.PUB)
    security = bus_security(env, "execution")
    if security is not None:
        security.client(sock, "bus")
    sock.connect(env["BUS_PUB_ENDPOINT"])
    return sock


ORDER = OrderEvent(
    symbol="AAPL",
    order_ref="rl-AAPL-1",
    side="BUY",
    quantity=5,
    order_type="MKT",
    status="submitted",
    bar_seq=1,
    ts_event=T0,
)


def publish_order_until_known(
    pub: Publisher, endpoint: str, key: bytes, order: OrderEvent = ORDER, known: int = 1
) -> None:
    """Readiness probe: re-publish ``order`` until the monitor knows ``known`` orders (its
    subscription has reached the forwarder); re-publishing an order is harmless."""
    deadline = time.monotonic() + 30
    while True:
        pub.publish(order)
        try:
            if call(endpoint, "status", {}, key, timeout_s=2.0).get("orders_known", 0) >= known:
                return
        except CommandError:
            pass
        assert time.monotonic() < deadline, "the monitor never saw the order"
        time.sleep(0.2)


def good_fill(**changes: Any) -> Fill:
    base = Fill(
        symbol="AAPL",
        exec_id="e-1",
        order_ref="rl-AAPL-1",
        side="BUY",
        quantity=5,
        price=10.0,
        commission=1.0,
        ts_event=T0,
    )
    return msgspec.structs.replace(base, **changes) if changes else base


def test_malformed_frames_are_counted_and_dropped_and_the_service_stays_up(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    proc = start_monitor(busproxy, tmp_path / "ledger.sqlite", MONITOR_HTTP_PORT=str(free_port()))
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    endpoint = busproxy["MONITOR_CMD_ENDPOINT"]
    ctx: zmq.Context = zmq.Context()
    pub = execution_publisher(ctx, busproxy)
    raw = raw_execution_socket(ctx, busproxy)
    try:
        wait_status(endpoint, key, lambda s: s.get("ready"))
        publish_order_until_known(pub, endpoint, key)
        garbage = [
            [b"fill.AAPL", b"\x00not msgpack"],
            [b"fill.AAPL", b"\x93\x01\x02"],  # valid msgpack, not a message
            [b"fill.AAPL", encode(good_fill(symbol="MSFT", producer=pub.producer, seq=1))],
        ]
        for frames in garbage:
            raw.send_multipart(frames)
        hostile: list[dict[str, Any]] = [
            {"price": float("nan")},
            {"price": float("inf")},
            {"commission": float("nan")},
            {"quantity": 0.0},
            {"quantity": -5.0},
            {"symbol": "A" * 100_000},
            {"symbol": "../../etc"},
            {"order_ref": "nobody-sent-this"},
            {"side": "SELL"},
            {"quantity": 50.0},
        ]
        for i, change in enumerate(hostile):
            pub.publish(good_fill(exec_id=f"h-{i}", **change))
        pub.publish(good_fill())
        pub.publish(good_fill())  # the same fill again (a new seq): the ledger's duplicate
        # the garbage came through another connection than the fills, which the forwarder
        # serves in no fixed order: its count is awaited too, not assumed from the fills
        status = wait_status(
            endpoint,
            key,
            lambda s: (
                s.get("fills") == 1 and s.get("duplicates", 0) >= 1 and s.get("malformed", 0) >= 2
            ),
        )
        assert proc.poll() is None, "the monitor died on bad input"
        assert status["handler_errors"] == 0
        # what the bus let through is kept aside, not booked
        assert status["quarantined"] == {
            "unknown_order": 1,
            "side_mismatch": 1,
            "overfill": 1,
        }
        fills = call(endpoint, "fills", {}, key)
        assert [f["exec_id"] for f in fills] == ["e-1"]
        pnl = call(endpoint, "pnl", {}, key)
        assert pnl["positions"] == {"AAPL": 5.0}
    finally:
        pub.close()
        raw.close()
        ctx.term()
        stop(proc)
