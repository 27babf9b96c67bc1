"""The compose stack on its defaults trades from bars that came through the TWS API: ibsim is the
market, marketdata (``MARKETDATA_SOURCE=ib``) reads it with ib_async, execution fills there.

Reuses ``test_compose``'s engine setup, ``Stack`` helpers and waits; only the compose files
differ (``compose.yaml`` plus an override that moves the monitor's port). About three minutes
once the images are built: startup, the first bars, the first fills.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_compose as base  # tests/docker is on sys.path (no __init__.py: rootdir-relative)

pytestmark = pytest.mark.docker

FILES = [base.REPO / "compose.yaml", Path(__file__).with_name("compose.live-data.yaml")]
SERVICES = ["bus", "ibsim", "marketdata", "inference", "execution", "monitor"]  # no trainer
BARS_LIMIT_S = 90  # the first bars through marketdata after healthy
FILLS_LIMIT_S = 150  # the first fills (the baseline trades on MA crossovers)
SLIPPAGE = 1e-4  # IBSIM_SLIPPAGE_BPS default (1 bp against the trader on market fills)
report = base.report  # the module fixture, shared


class LiveStack(base.Stack):
    def compose(
        self, *args: str, timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        files = [a for f in FILES for a in ("-f", str(f))]
        cmd = ["docker", "compose", "-p", self.project, *files, *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=base.REPO, env=self.env
        )
        if check and proc.returncode != 0:
            raise AssertionError(base._failure(cmd, proc))
        return proc


@pytest.fixture(scope="module")
def live(request: pytest.FixtureRequest, report: Callable[[str], None]) -> Iterator[LiveStack]:
    base._ensure_engine()
    env = dict(os.environ)
    if "BASE_IMAGE" not in env:
        local = subprocess.run(
            ["docker", "image", "inspect", base.LOCAL_BASE_IMAGE], capture_output=True
        )
        env["BASE_IMAGE"] = base.LOCAL_BASE_IMAGE if local.returncode == 0 else "python:3.11-slim"
    env["RLTRADER_TAG"] = base.TAG
    for name in ("COMPOSE_PROJECT_NAME", "IB_HOST", "IB_PORT", "MARKETDATA_SOURCE"):
        env.pop(name, None)  # the defaults, whatever this shell says
    stack = LiveStack(f"rlt-live-data-{uuid.uuid4().hex[:8]}", env)
    try:
        wheels = subprocess.run(
            ["bash", str(base.REPO / "docker/wheelhouse.sh")],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert wheels.returncode == 0, f"docker/wheelhouse.sh failed:\n{wheels.stderr[-3000:]}"
        stack.compose("build", *SERVICES, timeout=1800)
        t0 = time.monotonic()
        stack.compose(
            "up", "-d", "--wait", "--wait-timeout", str(base.STARTUP_LIMIT_S), *SERVICES,
            timeout=base.STARTUP_LIMIT_S + 60,
        )  # fmt: skip
        report(f"{stack.project}: healthy {time.monotonic() - t0:.0f}s after up")
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.compose("down", "-v", "--remove-orphans", "-t", "10", timeout=300, check=False)


def test_default_stack_trades_bars_that_came_through_the_tws_api(live: LiveStack) -> None:
    def marketdata() -> dict[str, Any]:
        reply = live.command("marketdata", "status")
        assert reply["ok"], reply
        status: dict[str, Any] = reply["result"]
        return status

    status = base._wait(
        "bars published by marketdata from ibsim",
        BARS_LIMIT_S,
        lambda: s if (s := marketdata())["published"] >= 4 else None,
    )
    assert status["source"] == "ib" and status["connected"] and status["live"], status
    assert status["gateway"] == "ibsim:4002" and status["quarantined"] == 0, status
    base._wait("fills in the ledger", FILLS_LIMIT_S, lambda: len(live.ledger_fills()) >= 1)
    # every fill is one of the simulator's executions, at a price of its own book
    executions = {e["exec_id"]: e for e in live.sim("executions")}
    for fill in live.ledger_fills():
        execution = executions[fill["exec_id"]]
        code = (
            "import json; from ibsim.control import control_request as c; "
            f"r = c(4003, {{'cmd': 'bars', 'symbol': {execution['symbol']!r}}}); "
            "print(json.dumps(r['bars']))"
        )
        own = {b["close_ts"]: b for b in live.exec_json("ibsim", code)}[execution["bar_ts"]]
        slipped = [own["open"] * (1 + side * SLIPPAGE) for side in (1, -1)]  # ibsim's default
        prices = (own["open"], own["high"], own["low"], own["close"], *slipped)
        assert any(abs(execution["price"] - p) < 1e-5 for p in prices), (execution, own)
    # the bars marketdata published (its snapshot: what inference warmed from and was sent) are
    # the simulator's own bars, value for value, for the same window
    code = (
        "import json; from ibsim.control import control_request as c; "
        "print(json.dumps(c(4003, {'cmd': 'bars', 'symbol': 'AAPL'})['bars']))"
    )
    book = {b["close_ts"]: b for b in live.exec_json("ibsim", code)}
    snapshot = live.command("marketdata", "snapshot", {"symbol": "AAPL", "n": 50})
    assert snapshot["ok"], snapshot
    # the window the simulator's book holds (warm-up history before it was served from the same
    # dataset by reqHistoricalData and is not in the book)
    first = min(book)
    published = [b for b in snapshot["result"]["bars"] if b["ts_event"] >= first]
    assert published, "marketdata published no AAPL bar inside the simulator's window"
    for bar in published:
        own = book[bar["ts_event"]]  # a bar the simulator never had raises KeyError
        fields = ("open", "high", "low", "close", "volume")
        assert [bar[f] for f in fields] == pytest.approx([own[f] for f in fields], rel=1e-9)
    live.assert_no_duplicate_orders()
