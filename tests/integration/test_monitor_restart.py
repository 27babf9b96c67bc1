"""The monitor process across a restart: equity is continuous without a new bar (positions keep
the last bar's mark), an exec-id conflict is kept and still reported, orders learnt before the stop
still admit their fills, and a ledger file that cannot be opened stops the start with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from shared.auth import load_or_create_key
from shared.bus import Publisher
from shared.command_channel import call
from shared.messages import Bar
from tests.conftest import bus_security
from tests.integration.test_monitor_bad_input import (
    T0,
    execution_publisher,
    good_fill,
    publish_order_until_known,
    start_monitor,
    stop,
    wait_status,
)

pytestmark = pytest.mark.integration


def test_a_ledger_that_cannot_be_opened_stops_the_start_with_exit_2(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    ledger.write_bytes(b"not an sqlite file, a broken state file" * 200)
    proc = start_monitor(busproxy, ledger)
    try:
        assert proc.wait(timeout=60) == 2
    finally:
        stop(proc)
    output = Path(f"{ledger}.log").read_text()
    assert str(ledger) in output and "state_error" in output
    assert "Traceback" not in output


def test_equity_and_conflicts_survive_a_restart_without_a_new_bar(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    endpoint = busproxy["MONITOR_CMD_ENDPOINT"]
    ctx: zmq.Context = zmq.Context()
    pub = execution_publisher(ctx, busproxy)
    marketdata = Publisher(
        ctx,
        busproxy["BUS_PUB_ENDPOINT"],
        "marketdata@test",
        security=bus_security(busproxy, "marketdata"),
    )
    proc = start_monitor(busproxy, ledger, MONITOR_INITIAL_CASH="1000")
    try:
        wait_status(endpoint, key, lambda s: s.get("ready"))
        publish_order_until_known(pub, endpoint, key)
        pub.publish(good_fill(price=10.0))  # 5 @ 10, commission 1
        close = 14.0
        marketdata.publish(
            Bar(
                symbol="AAPL",
                timeframe="1d",
                bar_open_ts=T0,
                open=close,
                high=close,
                low=close,
                close=close,
                volume=1.0,
                ts_event=T0 + 1,
            )
        )
        expected = 1000 + 5 * (close - 10.0) - 1.0
        before = wait_status(endpoint, key, lambda s: abs(s.get("equity", 0) - expected) < 1e-6)
        assert before["fills"] == 1
        # a simulator restart reusing the exec id with another execution: a conflict, kept
        pub.publish(good_fill(price=11.0, quantity=1.0, ts_event=T0 + 99))
        wait_status(endpoint, key, lambda s: s.get("conflicts") == 1)
        stop(proc)

        proc = start_monitor(busproxy, ledger, MONITOR_INITIAL_CASH="1000")
        after = wait_status(endpoint, key, lambda s: s.get("ready"))
        assert after["equity"] == pytest.approx(before["equity"])  # no new bar since
        assert after["fills"] == 1 and after["conflicts"] == 1 and after["orders_known"] == 1
        pnl = call(endpoint, "pnl", {}, key)
        assert pnl["equity"] == pytest.approx(expected)
        assert proc.poll() is None
    finally:
        pub.close()
        marketdata.close()
        ctx.term()
        stop(proc)
