"""A durable store of every published bar: one SQLite file, one row per (symbol, timeframe, close).

Why SQLite and not Parquet partitions:

* **Appends are one bar at a time.** Marketdata publishes a bar every few seconds to once a day.
  Parquet files are immutable: appending one row means rewriting a file or producing thousands of
  tiny part files that must later be compacted (and a crash mid-compaction is its own recovery
  problem). SQLite appends a row in one transaction.
* **Crash safety is the database's job, not ours.** In WAL mode with ``synchronous=FULL`` a
  committed append survives a process kill and a power loss; a torn write is rolled back on the
  next open. There is no "half-written part file" state to detect.
* **Idempotency is a constraint, not a convention.** ``PRIMARY KEY (symbol, timeframe,
  bar_close_ts)`` makes a re-published bar (a reconnect's backfill, a restarted marketdata that
  replays its warm-up) a no-op, and a *different* bar for the same key is detected at the
  database, kept in a ``conflicts`` table for the operator, and raised as :class:`BarConflict`.
* **Readers and the writer share the file safely.** WAL lets the trainer and the monitor's
  paper-versus-backtest report read while marketdata appends, without locks held across reads.
* **Nothing to install**: ``sqlite3`` is in the standard library; the file opens with any SQLite
  tool (``sqlite3 var/bars.sqlite 'select count(*) from bars'``).

Parquet would win for column scans over hundreds of millions of rows; a trading stack's own bar
history (a few symbols x years of minute bars is a few million rows) reads into pandas in well
under a second from SQLite's primary-key index, so the simpler durable choice wins.

Every bar is checked with ``shared.validate.problem`` before it is stored: a NaN or hostile bar
is refused with :class:`BarRefused` and never reaches the file. Prices are SQLite REALs (IEEE
754 doubles), so a stored bar reads back bit-for-bit.

``read_frame`` returns the shape of ``shared.data``'s loaders: a ``DataFrame`` indexed by the
bar's CLOSE time (``ts``, tz-aware UTC, ns), float64 ``open high low close volume``, ``attrs``
``source`` (``"barstore"``), ``symbol``, ``timeframe``, ``file``, ``repairs`` and ``gaps``; the
range is ``[start, end)`` on the close time, like ``shared.data.slice_bars``.

    store = BarStore(Path("var/bars.sqlite"))
    store.append(bar)                     # True: stored; False: already stored, identical
    df = store.read_frame("AAPL", "2024-01-01", "2024-02-01")
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from shared.data_validation import OHLCV, validate_bars
from shared.messages import Bar
from shared.validate import problem

SCHEMA = """
CREATE TABLE IF NOT EXISTS bars (
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    bar_close_ts INTEGER NOT NULL,
    bar_open_ts INTEGER NOT NULL,
    open REAL NOT NULL,
    high REAL NOT NULL,
    low REAL NOT NULL,
    close REAL NOT NULL,
    volume REAL NOT NULL,
    epoch INTEGER NOT NULL,
    backfill INTEGER NOT NULL,
    producer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts_publish INTEGER NOT NULL,
    stored_ns INTEGER NOT NULL,
    PRIMARY KEY (symbol, timeframe, bar_close_ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    bar_close_ts INTEGER NOT NULL,
    stored TEXT NOT NULL,
    offered TEXT NOT NULL,
    recorded_ns INTEGER NOT NULL
);
"""

# What makes two bars "the same bar": the market data, not the envelope. A backfilled or
# re-published copy (another epoch, seq or publish time) of the same bar is identical.
_IDENTITY = ("bar_open_ts", "open", "high", "low", "close", "volume")
_COLUMNS = (
    "symbol, timeframe, bar_close_ts, bar_open_ts, open, high, low, close, volume, "
    "epoch, backfill, producer, seq, ts_publish"
)


class BarConflict(Exception):
    """A different bar arrived for a (symbol, timeframe, close) already stored; both are kept."""

    def __init__(self, stored: Bar, offered: Bar) -> None:
        self.stored = stored
        self.offered = offered
        super().__init__(
            f"bar conflict for {offered.symbol} {offered.timeframe} close_ts={offered.ts_event}: "
            f"stored {_describe(stored)}; offered {_describe(offered)} "
            "(the stored bar is kept, the offered one is recorded in the conflicts table)"
        )


class BarRefused(ValueError):
    """A bar that ``shared.validate.problem`` refuses (NaN, inconsistent OHLC, hostile text)."""

    def __init__(self, bar: Bar, reason: str) -> None:
        self.reason = reason
        super().__init__(f"bar refused ({reason}): {bar.symbol!r} close_ts={bar.ts_event}")


def _describe(bar: Bar) -> str:
    return (
        f"open={bar.open!r} high={bar.high!r} low={bar.low!r} close={bar.close!r} "
        f"volume={bar.volume!r} open_ts={bar.bar_open_ts} epoch={bar.epoch}"
    )


def _bar_from_row(row: tuple[Any, ...]) -> Bar:
    (symbol, timeframe, close_ts, open_ts, o, h, lo, c, v, epoch, backfill, producer, seq, pub) = (
        row
    )
    return Bar(
        symbol=symbol,
        timeframe=timeframe,
        ts_event=close_ts,
        bar_open_ts=open_ts,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=v,
        epoch=epoch,
        backfill=bool(backfill),
        producer=producer,
        seq=seq,
        ts_publish=pub,
    )


def _same_bar(a: Bar, b: Bar) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in _IDENTITY)


def _utc_ns(value: str | None) -> int | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


class BarStore:
    """One SQLite file of bars; one writer process (marketdata), any number of readers."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves (BEGIN IMMEDIATE) so the
        # check-then-insert of ``append`` cannot interleave with another writer.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed bar survives a power loss
        self._db.executescript(SCHEMA)

    def append(self, bar: Bar) -> bool:
        """Store ``bar``; True when stored, False when an identical bar is already there.

        Raises :class:`BarRefused` for a bar ``shared.validate.problem`` refuses and
        :class:`BarConflict` (after recording both in ``conflicts``) when a different bar is
        already stored for the same (symbol, timeframe, close).
        """
        reason = problem(bar)
        if reason is not None:
            raise BarRefused(bar, reason)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM bars "
                "WHERE symbol = ? AND timeframe = ? AND bar_close_ts = ?",
                (bar.symbol, bar.timeframe, bar.ts_event),
            ).fetchone()
            if row is None:
                db.execute(
                    f"INSERT INTO bars ({_COLUMNS}, stored_ns) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        bar.symbol,
                        bar.timeframe,
                        bar.ts_event,
                        bar.bar_open_ts,
                        float(bar.open),
                        float(bar.high),
                        float(bar.low),
                        float(bar.close),
                        float(bar.volume),
                        bar.epoch,
                        int(bar.backfill),
                        bar.producer,
                        bar.seq,
                        bar.ts_publish,
                        time.time_ns(),
                    ),
                )
                db.execute("COMMIT")
                return True
            stored = _bar_from_row(row)
            if _same_bar(stored, bar):
                db.execute("COMMIT")
                return False
            db.execute(
                "INSERT INTO conflicts (symbol, timeframe, bar_close_ts, stored, offered, "
                "recorded_ns) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    bar.symbol,
                    bar.timeframe,
                    bar.ts_event,
                    msgspec.json.encode(stored).decode(),
                    msgspec.json.encode(bar).decode(),
                    time.time_ns(),
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        raise BarConflict(stored, bar)

    def conflicts(self) -> list[tuple[Bar, Bar]]:
        """Every recorded conflict as (stored, offered), oldest first."""
        rows = self._db.execute("SELECT stored, offered FROM conflicts ORDER BY id").fetchall()
        decode = msgspec.json.Decoder(Bar)
        return [(decode.decode(s), decode.decode(o)) for s, o in rows]

    def symbols(self) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT symbol FROM bars ORDER BY symbol").fetchall()
        return [r[0] for r in rows]

    def timeframes(self, symbol: str) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT timeframe FROM bars WHERE symbol = ? ORDER BY timeframe", (symbol,)
        ).fetchall()
        return [r[0] for r in rows]

    def read_frame(
        self,
        symbol: str,
        start: str | None = None,
        end: str | None = None,
        *,
        timeframe: str | None = None,
    ) -> pd.DataFrame:
        """Bars of ``symbol`` whose close is in ``[start, end)`` (naive bounds are UTC).

        ``timeframe`` is needed only when the store holds more than one for the symbol.
        """
        if timeframe is None:
            known = self.timeframes(symbol)
            if len(known) > 1:
                raise ValueError(
                    f"{self.path}: {symbol} is stored in timeframes {known}; pass timeframe="
                )
            timeframe = known[0] if known else ""
        sql = (
            "SELECT bar_close_ts, open, high, low, close, volume FROM bars "
            "WHERE symbol = ? AND timeframe = ?"
        )
        args: list[Any] = [symbol, timeframe]
        lo, hi = _utc_ns(start), _utc_ns(end)
        if lo is not None:
            sql += " AND bar_close_ts >= ?"
            args.append(lo)
        if hi is not None:
            sql += " AND bar_close_ts < ?"
            args.append(hi)
        rows = self._db.execute(sql + " ORDER BY bar_close_ts", args).fetchall()
        ts = np.array([r[0] for r in rows], dtype=np.int64)
        values = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), len(OHLCV))
        index = pd.DatetimeIndex(pd.to_datetime(ts, unit="ns", utc=True), name="ts").as_unit("ns")
        frame = pd.DataFrame(values, index=index, columns=list(OHLCV))
        frame.attrs.update(
            {"source": "barstore", "symbol": symbol, "timeframe": timeframe, "file": str(self.path)}
        )
        # The same checks (and the same output shape) as every packaged loader.
        return validate_bars(frame, None, file=str(self.path))

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM bars").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> BarStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_store_frames(
    path: Path, symbols: Iterable[str], start: str | None = None, end: str | None = None
) -> dict[str, pd.DataFrame]:
    """``{symbol: read_frame(symbol, start, end)}`` from the store at ``path`` (read and closed).

    A symbol the store has never seen is an error naming the store and what it does hold.
    """
    wanted = list(symbols)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no bar store here (marketdata writes it)")
    store = BarStore(path)
    try:
        known = set(store.symbols())
        missing = [s for s in wanted if s not in known]
        if missing:
            raise KeyError(f"{path}: no bars stored for {missing}; stored: {sorted(known)}")
        return {s: store.read_frame(s, start, end) for s in wanted}
    finally:
        store.close()
