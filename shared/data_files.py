"""A user's own bar file (CSV or Parquet) as a source: ``load_file`` and the ``file:`` spec.

``load_file`` reads the file into the shape every loader returns (``shared.data``) and validates
every row (``shared.data_validation``). ``file_source`` makes the plain-string spec
(``file:<path>;option=value...``) that ``shared.data.load_bars`` accepts as a source, so a
``TrainConfig``/``EnvConfig`` carries it into RLlib env runners and manifests unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared.data_validation import (
    NY_TZ,
    OHLCV,
    Calendar,
    DataValidationError,
    source_frame,
    validate_bars,
)

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
    frame = source_frame(index.as_unit("ns"), data, lines, attrs)
    return validate_bars(frame, calendar, repair=repair, file=name)


# --------------------------------------------------------------------------- source specs

FILE_PREFIX = "file:"
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


def load_file_spec(spec: str, symbol: str, *, repair: bool) -> pd.DataFrame:
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
