"""``python -m execution`` as a process: a broken state file or setting stops it with exit code 2
naming the file or variable (never a traceback, never a crash loop), and hostile numbers on the
real bus neither move money nor stop the service."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from shared.messages import OrderEvent, TargetPosition
from tests.conftest import REPO_ROOT
from tests.integration.execution_stack import ExecutionStack, close_ns, trading_days

pytestmark = pytest.mark.integration

DAYS = trading_days(dt.date(2024, 3, 4), 4)
START_TIMEOUT_S = 60.0  # a failure guard for a process that should exit at once


def run_execution(tmp: Path, bus_env: dict[str, str], **env: str) -> subprocess.CompletedProcess:
    paper = tmp / "paper.json"
    paper.write_text(json.dumps({"symbols": ["AAPL"]}))
    return subprocess.run(
        [sys.executable, "-m", "execution"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            **bus_env,
            "EXECUTION_BROKER": "sim",
            "EXECUTION_WARMUP_BARS": "false",
            "PAPER_TRADING_CONFIG": str(paper),
            "EXECUTION_STATE_DIR": str(tmp / "state"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )


@pytest.mark.parametrize(
    ("file_name", "content"),
    [
        ("sim_broker.json", b'{"cash": null}'),  # what a NaN fill price used to leave behind
        ("sim_broker.json", b"{truncated"),
        ("journal.sqlite", b"not a database at all" * 200),
    ],
)
def test_broken_state_file_exits_2_naming_the_file(
    tmp_path: Path, bus_env: dict[str, str], file_name: str, content: bytes
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / file_name).write_bytes(content)
    done = run_execution(tmp_path, bus_env)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert file_name in output and "state_file_error" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EXECUTION_MAX_DAILY_LOSS", "inf"),
        ("EXECUTION_MAX_GROSS_EXPOSURE", "nan"),
        ("EXECUTION_SIM_INITIAL_CASH", "inf"),
        ("EXECUTION_RISK_PER_TRADE", "nan"),
    ],
)
def test_non_finite_setting_exits_2_naming_the_variable(
    tmp_path: Path, bus_env: dict[str, str], variable: str, value: str
) -> None:
    done = run_execution(tmp_path, bus_env, **{variable: value})
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert variable in output and "Traceback" not in output


async def test_hostile_numbers_on_the_bus_move_no_money_and_the_service_goes_on(
    tmp_path: Path, busproxy: dict[str, str]
) -> None:
    stack = ExecutionStack(tmp_path, busproxy, broker="sim")
    await stack.start()
    try:
        b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
        for i, target in enumerate([math.nan, math.inf, -math.inf, 5.0, -1e300]):
            stack.publisher.publish(
                TargetPosition(
                    symbol="AAPL",
                    target_position=target,
                    model_version="hostile",
                    bar_seq=1000 + i,
                    bar_close_ts=b1.ts_event,
                    bar_close=b1.close,
                    ts_event=b1.ts_event,
                )
            )
        for day, (o, h, lo, c) in [
            (DAYS[1], (100, math.inf, 99, 100)),
            (DAYS[2], (math.nan, 101, 99, -100)),
        ]:  # refused by the bus's validation, else by execution's own: no wait for a count
            stack.publisher.publish(
                msgspec.structs.replace(
                    b1,
                    open=o,
                    high=h,
                    low=lo,
                    close=c,
                    ts_event=close_ns(day),
                    bar_open_ts=close_ns(day) - 1,
                    seq=b1.seq + day.toordinal() - DAYS[0].toordinal(),
                )
            )
        stack.bar_seq += 2  # the hostile bars used two sequence numbers
        good = await stack.bar(DAYS[3], 100, 102, 99, 101)
        ref = stack.signal(good, 0.5)
        order = await stack.wait_for(
            lambda m: isinstance(m, OrderEvent) and m.order_ref == ref and m.status == "submitted",
            "an order from the good signal after the hostile ones",
        )
        assert order.side == "BUY" and order.quantity > 0
        status = await stack.status()
        assert status["ready"] and status["halted_day"] == ""
        assert status["handler_errors"] == 0
        hostile = [
            m for m in stack.messages(OrderEvent) if m.order_ref.endswith(("-1000", "-1001"))
        ]
        assert hostile == []
    finally:
        await stack.close()
