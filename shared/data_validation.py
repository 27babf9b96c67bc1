"""Bar validation: the rules every loaded bar frame passes, and the error that names a broken row.

``validate_bars`` raises ``DataValidationError`` naming the file, the row (1-based line in the
file, header = line 1), the rule and the values. ``repair=True`` drops or fixes the offending rows
instead and records how many in ``attrs["repairs"]``. Gaps larger than the source's calendar
(``Calendar``) allows cannot be repaired and always raise.

Loaders (``shared.data``, ``shared.data_files``) build their frame with ``source_frame``, which
carries each row's line in the source file in the internal ``LINE_COLUMN`` column so an error can
name it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("data")

OHLCV = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")

NY_TZ = "America/New_York"

LINE_COLUMN = "_line"  # internal column: the row's line number in its source file


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


def source_frame(
    index: pd.DatetimeIndex, data: dict[str, Any], lines: Any, attrs: dict[str, Any]
) -> pd.DataFrame:
    df = pd.DataFrame(
        {name: np.asarray(data[name], dtype=np.float64) for name in OHLCV},
        index=pd.DatetimeIndex(index, name="ts"),
    )
    df[LINE_COLUMN] = np.asarray(lines, dtype=np.int64)
    df.attrs.update(attrs)
    return df


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
    if LINE_COLUMN not in out.columns:
        out[LINE_COLUMN] = np.arange(1, len(out) + 1, dtype=np.int64)
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
            raise DataValidationError(
                file, int(out[LINE_COLUMN].iloc[first]), rule, describe(first)
            )
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
                int(out[LINE_COLUMN].iloc[i]),
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
                raise DataValidationError(
                    file, int(out[LINE_COLUMN].iloc[first]), rule, row_text(first)
                )
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
                    int(out[LINE_COLUMN].iloc[k + 1]),
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
    result = out.drop(columns=[LINE_COLUMN])
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
