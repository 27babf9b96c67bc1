"""Run it twice: the whole native stack stopped mid-replay and started again on the same state.

What a user does with `make run`, Ctrl-C, `make run`: every service is a separate process on the
real authenticated bus, execution trades through ib_async against the simulator, which keeps its
state in a folder like Docker's volume. After the second run:
- the ledger holds exactly the simulator's executions of both runs (no fill lost as a "duplicate"
  of the first run, none booked twice), and no exec id conflicts;
- execution did not halt on a false daily loss at start;
- equity right after the restart, before any new bar, equals equity before the stop (positions
  reloaded are marked at the last known price, not at their first fill);
- the replay resumed instead of starting over.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.auth import load_or_create_key
from shared.command_channel import call
from tests.conftest import free_port
from tests.processes import Stack, wait_for, wait_ready

pytestmark = pytest.mark.integration

SYMBOLS = "AAPL,NVDA"


def control(port: int, payload: dict[str, Any]) -> Any:
    from ibsim.control import control_request

    reply = control_request(port, payload)
    assert reply["ok"], reply
    return reply


def start_stack(
    env: dict[str, str],
    logs: Path,
    key: bytes,
    start_delay_s: str,
    before_marketdata: Callable[[], None] | None = None,
) -> Stack:
    """The stack in dependency order; ``before_marketdata`` runs once execution and the monitor
    answer and before marketdata starts, i.e. while no bar can possibly arrive."""
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack({**env, "MARKETDATA_START_DELAY_S": start_delay_s}, logs)
    try:
        stack.start("ibsim", "ibsim")
        stack.start("monitor", "monitor")
        stack.start("execution", "execution")
        wait_ready(env["EXECUTION_CMD_ENDPOINT"], key)
        if before_marketdata is not None:
            wait_ready(env["MONITOR_CMD_ENDPOINT"], key)
            before_marketdata()
        stack.start("marketdata", "marketdata")
        wait_ready(env["MARKETDATA_CMD_ENDPOINT"], key)
        stack.start("inference", "inference")
        for service in ("inference", "monitor"):
            wait_ready(env[f"{service.upper()}_CMD_ENDPOINT"], key)
    except BaseException:
        stack.stop()
        raise
    return stack


def test_stop_and_start_again_keeps_one_coherent_account(busproxy, tmp_path) -> None:
    ib_port, control_port = free_port(), free_port()
    env = {
        **busproxy,
        "IBSIM_PORT": str(ib_port),
        "IBSIM_CONTROL_PORT": str(control_port),
        "IBSIM_STATE_DIR": str(tmp_path / "ibsim"),
        "IBSIM_PRICE_SOURCE": "bus",  # test-only: the simulator fills on the replayed bus bars
        "IB_PORT": str(ib_port),
        "IB_CLIENT_ID": "41",
        "EXECUTION_BROKER": "ib",
        "EXECUTION_STATE_DIR": str(tmp_path / "execution"),
        "EXECUTION_SYMBOLS": SYMBOLS,
        "EXECUTION_MAX_POSITION": "10",
        "EXECUTION_RISK_PER_TRADE": "0.2",
        "EXECUTION_MAX_ORDERS_PER_MINUTE": "10000",
        "EXECUTION_HEARTBEAT_TIMEOUT_S": "60",
        "MONITOR_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "MONITOR_PNL_INTERVAL_S": "1",
        "MONITOR_RECONCILE_INTERVAL_S": "2",
        "MONITOR_HTTP_PORT": str(free_port()),
        "MARKETDATA_SYMBOLS": SYMBOLS,
        "MARKETDATA_REPLAY_START": "2022-06-01",
        "MARKETDATA_REPLAY_END": "2023-06-01",
        "MARKETDATA_BARS_PER_SECOND": "10",
        "MARKETDATA_STATE_DIR": str(tmp_path / "md"),
        "INFERENCE_MODEL_VERSION": "baseline",
    }
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])

    def cmd(service: str, name: str) -> Any:
        return call(env[f"{service.upper()}_CMD_ENDPOINT"], name, {}, key, timeout_s=10)

    def ledger_matches_simulator() -> bool:
        ledger = sorted(f["exec_id"] for f in cmd("monitor", "fills"))
        simulator = sorted(
            e["exec_id"] for e in control(control_port, {"cmd": "executions"})["executions"]
        )
        return bool(ledger) and ledger == simulator

    # ---- first run: trade until a few fills are booked, then stop everything (Ctrl-C)
    first = start_stack(env, tmp_path / "run1", key, start_delay_s="3")
    try:
        wait_for(lambda: len(cmd("monitor", "fills")) >= 3, "three fills in the first run")
        first.stop_one("marketdata")  # no more bars: let the last orders settle
        wait_for(ledger_matches_simulator, "the first run's ledger to match the simulator")
        wait_for(lambda: not cmd("execution", "status")["working_orders"], "no working order")
        first_fills = cmd("monitor", "fills")
        equity_before = cmd("monitor", "pnl")["equity"]
    finally:
        first.stop()

    # ---- second run on the same state
    def reloaded_account_is_continuous() -> None:
        # checked before marketdata starts, so no bar of the second run can have arrived
        status = cmd("execution", "status")
        assert not status["halted_day"], f"false daily-loss halt at start: {status}"
        assert not status["killed"]
        # equity is continuous: the reloaded book is marked as before
        assert cmd("monitor", "pnl")["equity"] == pytest.approx(equity_before, abs=0.01)

    second = start_stack(
        env,
        tmp_path / "run2",
        key,
        start_delay_s="3",
        before_marketdata=reloaded_account_is_continuous,
    )
    try:
        md = cmd("marketdata", "status")
        assert md["cursor"] > 0 and not md["finished"], md
        # then trading goes on: new fills are booked, none lost, none twice
        wait_for(
            lambda: len(cmd("monitor", "fills")) >= len(first_fills) + 2,
            "new fills in the second run",
        )
        second.stop_one("marketdata")
        wait_for(ledger_matches_simulator, "the ledger to hold both runs' executions")
        monitor = cmd("monitor", "status")
        assert not monitor.get("conflicts"), monitor
        ledger = cmd("monitor", "fills")
        assert len({f["exec_id"] for f in ledger}) == len(ledger)
        first_ids = {f["exec_id"] for f in first_fills}
        assert first_ids < {f["exec_id"] for f in ledger}  # the first run's fills kept as they were
    finally:
        second.stop()
