"""IB's errors on the market data path, reproduced with the simulator's fault switches against the
real marketdata process (MARKETDATA_SOURCE=ib, real ib_async):

* an unknown symbol is refused with IB's error text and exit code 2;
* no market data subscription (354) is refused with exit 2 and what to subscribe to, or served
  as delayed data when MARKETDATA_IB_ALLOW_DELAYED=1;
* pacing violations (162 on historical data, 420 on real-time bars) back off, are logged and
  counted, and the source still goes live.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ibsim.control import control_request

from shared.auth import load_or_create_key
from shared.command_channel import CommandError, call
from tests.conftest import free_port
from tests.processes import Stack

pytestmark = pytest.mark.integration


def _wait(predicate, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except (OSError, ConnectionError, CommandError):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def ibsim(busproxy: dict[str, str], tmp_path: Path) -> Iterator[tuple[Stack, dict[str, str]]]:
    ib_port, control_port = free_port(), free_port()
    env = {
        **busproxy,
        "IBSIM_PORT": str(ib_port),
        "IBSIM_CONTROL_PORT": str(control_port),
        "IBSIM_REPLAY_SYMBOLS": "AAPL",
        "IBSIM_REPLAY_START": "2023-06-01",
        "IBSIM_REPLAY_AUTOSTART": "false",
        "IB_PORT": str(ib_port),  # marketdata follows IB_HOST / IB_PORT
        "MARKETDATA_SOURCE": "ib",
        "MARKETDATA_SYMBOLS": "AAPL",
        "MARKETDATA_IB_CONNECT_TIMEOUT_S": "5",
        "MARKETDATA_IB_PACING_BACKOFF_S": "0.2",
        "MARKETDATA_STATE_DIR": str(tmp_path / "md"),
        "CONTROL_PORT": str(control_port),
    }
    stack = Stack(env, tmp_path)
    stack.start("ibsim", "ibsim")
    _wait(lambda: control_request(control_port, {"cmd": "ping"})["ok"], "ibsim control port")
    try:
        yield stack, env
    finally:
        stack.stop()


def _control(env: dict[str, str], payload: dict) -> dict:
    reply = control_request(int(env["CONTROL_PORT"]), payload)
    assert reply["ok"], reply
    return reply


def _run_marketdata(stack: Stack, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marketdata"],
        env={**stack.env, **extra},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unknown_symbol_is_refused_with_ibs_text_and_exit_2(ibsim) -> None:
    stack, _ = ibsim
    result = _run_marketdata(stack, {"MARKETDATA_SYMBOLS": "AAPL,NOSUCHCO"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "NOSUCHCO" in result.stderr
    assert "No security definition has been found for the request" in result.stderr


def test_no_market_data_subscription_names_what_to_subscribe_to(ibsim) -> None:
    stack, env = ibsim
    _control(env, {"cmd": "faults", "set": {"market_data_error": 354}})
    result = _run_marketdata(stack, {})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "354" in result.stderr and "Requested market data is not subscribed" in result.stderr
    assert "Market Data Subscriptions" in result.stderr
    assert "MARKETDATA_IB_ALLOW_DELAYED=1" in result.stderr


def test_delayed_data_when_allowed_and_pacing_backs_off(ibsim, busproxy) -> None:
    stack, env = ibsim
    _control(
        env,
        {
            "cmd": "faults",
            "set": {
                "market_data_error": 354,
                "pacing_error_next_n": 2,
                "realtime_pacing_next_n": 1,
            },
        },
    )
    stack.env["MARKETDATA_IB_ALLOW_DELAYED"] = "1"
    stack.start("marketdata", "marketdata")
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    endpoint = busproxy["MARKETDATA_CMD_ENDPOINT"]

    def status() -> dict:
        return call(endpoint, "status", {}, key, timeout_s=2.0)

    live = _wait(lambda: (s := status())["live"] and s, "marketdata live on delayed data")
    assert live["delayed"] is True
    # two historical pacing errors (162) and one real-time (420): backed off, not fatal
    counted = _wait(lambda: (s := status())["pacing_violations"] >= 3 and s, "420 re-subscribe")
    assert counted["connections"] == 1 and stack.procs["marketdata"].poll() is None
    snapshot = call(endpoint, "snapshot", {"symbol": "AAPL", "n": 5}, key)
    assert len(snapshot["bars"]) == 5  # the warm-up came through after the back-off
    log = (Path(stack.logs) / "marketdata.log").read_text()
    assert "ib_pacing_violation" in log and "ib_delayed_data" in log
