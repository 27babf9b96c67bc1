"""LOG_FORMAT=pretty: a blotter of fills, orders, positions, PnL with drawdown and alerts."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.logs import PrettyFormatter, configure, event

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def line(
    formatter: logging.Formatter, name: str, level: int = logging.INFO, **values: object
) -> str:
    record = logging.LogRecord("monitor", level, __file__, 1, name, None, None)
    record.fields = values
    record.created = 1_700_000_000.25
    record.msecs = 250.0
    return formatter.format(record)


def test_blotter_lines_are_one_per_event_and_aligned() -> None:
    f = PrettyFormatter()
    fill = line(
        f,
        "fill",
        symbol="AAPL",
        side="BUY",
        quantity=100.0,
        price=187.23,
        commission=1.0,
        position=100.0,
        realized=0.0,
        equity=999_999.0,
        order_ref="rl-AAPL-17",
    )
    sell = line(
        f,
        "fill",
        symbol="MSFT",
        side="SELL",
        quantity=5.0,
        price=31.5,
        commission=1.0,
        position=-5.0,
        realized=12.5,
        equity=1_000_011.5,
        order_ref="rl-MSFT-18",
    )
    assert fill.startswith("22:13:20.250 FILL     AAPL     BUY        100 @    187.2300")
    assert "equity     999,999.00" in fill and fill.endswith("rl-AAPL-17")
    # the same columns on every fill line: prices, fees and equity line up
    assert fill.index("@") == sell.index("@") and fill.index("equity") == sell.index("equity")
    order = line(
        f,
        "order",
        symbol="AAPL",
        side="BUY",
        quantity=100.0,
        status="submitted",
        order_ref="rl-AAPL-17",
        reason="",
    )
    assert order.split() == [
        "22:13:20.250",
        "ORDER",
        "AAPL",
        "BUY",
        "100",
        "submitted",
        "rl-AAPL-17",
    ]
    mismatch = line(
        f, "position_mismatch", logging.WARNING, symbol="AAPL", broker=100.0, ledger=90.0
    )
    assert "POSITION AAPL     MISMATCH broker 100 ledger 90" in mismatch
    alert = line(
        f,
        "alert_fired",
        logging.WARNING,
        alert="drawdown",
        state="fired",
        message="equity 5.1 % below its peak",
    )
    assert alert.split()[1:5] == ["ALERT", "drawdown", "fired", "equity"]
    assert "\n" not in fill + order + mismatch + alert


def test_pnl_lines_show_the_drawdown_from_the_peak() -> None:
    f = PrettyFormatter()
    pnl: dict[str, Any] = {
        "realized": 0.0,
        "unrealized": 0.0,
        "fees": 0.0,
        "positions": {},
        "positions_omitted": 0,
    }
    first = line(f, "pnl", **{**pnl, "equity": 1_000_000.0})
    assert "drawdown  0.00%" in first and first.endswith("flat")
    line(f, "fill", symbol="AAPL", side="BUY", quantity=1.0, price=1.0, equity=1_100_000.0)
    down = line(f, "pnl", **{**pnl, "equity": 1_045_000.0, "positions": {"AAPL": 100.0}})
    assert "drawdown  5.00%" in down and "AAPL=100" in down
    assert first.index("drawdown") == down.index("drawdown")


def test_other_events_and_unexpected_shapes_fall_back_to_key_values() -> None:
    f = PrettyFormatter()
    started = line(f, "started", ledger="var/ledger.sqlite", fills_in_ledger=3)
    assert started.split()[1:4] == ["INFO", "monitor", "started"]
    assert "ledger=var/ledger.sqlite fills_in_ledger=3" in started
    odd = line(f, "fill", symbol="AAPL")  # no price: never raise inside logging
    assert "fill" in odd and "symbol=AAPL" in odd


def test_configure_picks_the_format_and_json_stays_the_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monkeypatch.delenv("LOG_FORMAT", raising=False)
        log = configure("monitor")
        event(log, "order", symbol="AAPL", side="BUY", quantity=1.0, status="filled")
        assert json.loads(capsys.readouterr().out)["event"] == "order"
        monkeypatch.setenv("LOG_FORMAT", "pretty")
        log = configure("monitor")
        event(log, "order", symbol="AAPL", side="BUY", quantity=1.0, status="filled")
        assert " ORDER    AAPL " in capsys.readouterr().out
        monkeypatch.setenv("LOG_FORMAT", "xml")
        with pytest.raises(SystemExit) as stop:
            configure("monitor")
        assert stop.value.code == 2
        error = json.loads(capsys.readouterr().out)
        assert error["event"] == "config_error" and "LOG_FORMAT='xml'" in error["error"]
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def _monitor(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_monitor_exits_2_on_a_bad_log_format_and_takes_pretty(tmp_path: Path) -> None:
    bad = _monitor([], {"LOG_FORMAT": "loud"})
    assert bad.returncode == 2 and "LOG_FORMAT='loud'" in bad.stdout
    # --pretty: the next start-up error (a bad setting) is a pretty line, not JSON
    pretty = _monitor(["--pretty"], {"MONITOR_PNL_INTERVAL_S": "-1", "LOG_FORMAT": ""})
    assert pretty.returncode == 2
    assert "config_error" in pretty.stdout and not pretty.stdout.lstrip().startswith("{")
