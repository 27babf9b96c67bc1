"""The SQLite ledger (WAL): booked fills, orders known from execution, quarantined and conflicting
fills, order events, the last price per symbol and PnL marks.

Tables:

* ``fills``: booked fills, keyed by the broker's execution id (the book is built from these).
* ``known_orders``: orders execution told us about (``order.*`` events or its ``orders`` command);
  a fill is booked only against one of them (see ``monitor.gate``).
* ``quarantine``: fills not (yet) consistent with a known order, with the reason. A fill whose order
  arrives later moves to ``fills`` in one transaction, so it is booked exactly once.
* ``conflicts``: a different fill under an exec id that is already booked or quarantined (e.g. a
  simulator restart reusing ids): kept here, never booked, never silently dropped.
* ``marks``: the last bar close per symbol, so positions reloaded at start keep their mark.
* ``order_events``, ``pnl``: history for the read-only API.
* ``signals``: inference's decisions (model version and the decision bar's close) keyed by the
  order reference execution derives from them (``strategy-symbol-bar_seq``), so a fill can be
  priced against its decision bar (slippage) and attributed to a model version. Bounded: the
  oldest rows beyond ``MAX_SIGNALS`` are dropped.
* ``shadow_signals``: what candidate (shadow) models would have held (``shadow.<SYM>``), one row
  per (model version, strategy, symbol, bar), idempotent like ``signals`` and bounded the same
  way. Never booked, never a trade: only ``monitor.shadow`` reads them, to compare would-be PnL.

Nothing non-finite is ever written: every number is checked before it reaches SQLite.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.messages import Fill, OrderEvent, PnL, ShadowTarget, TargetPosition

MAX_SIGNALS = 200_000  # signals kept (one per bar per symbol per strategy)

_FILL_DDL = """
    exec_id     TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    order_ref   TEXT NOT NULL,
    side        TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity    REAL NOT NULL CHECK (quantity > 0),
    price       REAL NOT NULL,
    commission  REAL NOT NULL,
    account     TEXT NOT NULL,
    ts_event    INTEGER NOT NULL,
    producer    TEXT NOT NULL,
    recorded_ns INTEGER NOT NULL"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS fills ({_FILL_DDL}, PRIMARY KEY (exec_id));
CREATE INDEX IF NOT EXISTS fills_by_time ON fills (ts_event, exec_id);
CREATE INDEX IF NOT EXISTS fills_by_order ON fills (order_ref);
CREATE TABLE IF NOT EXISTS quarantine ({_FILL_DDL}, reason TEXT NOT NULL, PRIMARY KEY (exec_id));
CREATE INDEX IF NOT EXISTS quarantine_by_order ON quarantine (order_ref);
CREATE TABLE IF NOT EXISTS conflicts ({_FILL_DDL},
    UNIQUE (exec_id, symbol, order_ref, side, quantity, price, ts_event));
CREATE TABLE IF NOT EXISTS known_orders (
    order_ref   TEXT PRIMARY KEY,
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity    REAL NOT NULL CHECK (quantity > 0),
    source      TEXT NOT NULL,
    recorded_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS marks (
    symbol      TEXT PRIMARY KEY,
    price       REAL NOT NULL CHECK (price > 0),
    ts_event    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS order_events (
    order_ref   TEXT NOT NULL,
    status      TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL,
    quantity    REAL NOT NULL,
    bar_seq     INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    ts_event    INTEGER NOT NULL,
    PRIMARY KEY (order_ref, status)
);
CREATE TABLE IF NOT EXISTS signals (
    order_ref   TEXT PRIMARY KEY,
    symbol      TEXT NOT NULL,
    bar_seq     INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    bar_close   REAL NOT NULL,
    target      REAL NOT NULL,
    ts_event    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shadow_signals (
    model_version TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    bar_seq     INTEGER NOT NULL,
    bar_close   REAL NOT NULL,
    target      REAL NOT NULL,
    ts_event    INTEGER NOT NULL,
    PRIMARY KEY (model_version, strategy, symbol, bar_seq)
);
CREATE TABLE IF NOT EXISTS pnl (
    ts          INTEGER NOT NULL,
    realized    REAL NOT NULL,
    unrealized  REAL NOT NULL,
    fees        REAL NOT NULL,
    equity      REAL NOT NULL
);
"""

FILL_COLUMNS = (
    "exec_id",
    "symbol",
    "order_ref",
    "side",
    "quantity",
    "price",
    "commission",
    "account",
    "ts_event",
    "producer",
    "recorded_ns",
)
_COLS = ", ".join(FILL_COLUMNS)
_MARKS = ",".join("?" * len(FILL_COLUMNS))
ORDER_EVENT_COLUMNS = (
    "order_ref",
    "status",
    "symbol",
    "side",
    "quantity",
    "bar_seq",
    "reason",
    "ts_event",
)


class LedgerError(Exception):
    """The ledger file cannot be opened or used; the message names the file."""


class NonFiniteError(ValueError):
    """A number about to be persisted is NaN or infinite."""


def _finite(*values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise NonFiniteError(f"refusing to persist a non-finite number: {values}")


def _fill_row(fill: Fill, recorded_ns: int) -> tuple[Any, ...]:
    _finite(fill.quantity, fill.price, fill.commission)
    return (
        fill.exec_id,
        fill.symbol,
        fill.order_ref,
        fill.side,
        fill.quantity,
        fill.price,
        fill.commission,
        fill.account,
        fill.ts_event,
        fill.producer,
        recorded_ns,
    )


def row_to_fill(row: dict[str, Any]) -> Fill:
    return Fill(
        symbol=row["symbol"],
        exec_id=row["exec_id"],
        order_ref=row["order_ref"],
        side=row["side"],
        quantity=row["quantity"],
        price=row["price"],
        commission=row["commission"],
        account=row["account"],
        ts_event=row["ts_event"],
        producer=row["producer"],
    )


class Ledger:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)  # autocommit unless BEGIN
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.execute("SELECT COUNT(*) FROM fills").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cursor = self._db.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # ------------------------------------------------------------------ fills
    def record_fill(self, fill: Fill, recorded_ns: int) -> bool:
        """True when the fill is new; False when its exec_id was already booked."""
        cursor = self._db.execute(
            f"INSERT INTO fills VALUES ({_MARKS}) ON CONFLICT (exec_id) DO NOTHING",
            _fill_row(fill, recorded_ns),
        )
        return cursor.rowcount == 1

    def find_exec(self, exec_id: str) -> tuple[str, dict[str, Any]] | None:
        """Where this exec id already is (``fills`` or ``quarantine``) and its row."""
        for table in ("fills", "quarantine"):
            rows = self._rows(f"SELECT {_COLS} FROM {table} WHERE exec_id=?", (exec_id,))
            if rows:
                return table, rows[0]
        return None

    def filled_quantity(self, order_ref: str) -> float:
        row = self._db.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM fills WHERE order_ref=?", (order_ref,)
        ).fetchone()
        return float(row[0])

    def fills(self) -> list[dict[str, Any]]:
        return self._rows(f"SELECT {_COLS} FROM fills ORDER BY ts_event, exec_id")

    def last_fill_ts(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(ts_event), 0) FROM fills").fetchone()
        return int(row[0])

    def fill_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM fills").fetchone()[0])

    # ------------------------------------------------------------------ quarantine, conflicts
    def quarantine(self, fill: Fill, reason: str, recorded_ns: int) -> bool:
        """Keep an inconsistent fill aside; True when it was not quarantined already."""
        cursor = self._db.execute(
            f"INSERT INTO quarantine VALUES ({_MARKS},?) ON CONFLICT (exec_id) DO NOTHING",
            (*_fill_row(fill, recorded_ns), reason),
        )
        return cursor.rowcount == 1

    def quarantined(self, order_ref: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE order_ref=?", (order_ref,)) if order_ref is not None else ("", ())
        return self._rows(
            f"SELECT {_COLS}, reason FROM quarantine {where} ORDER BY ts_event, exec_id", params
        )

    def quarantine_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason")
        return {str(reason): int(n) for reason, n in rows.fetchall()}

    def set_quarantine_reason(self, exec_id: str, reason: str) -> None:
        self._db.execute("UPDATE quarantine SET reason=? WHERE exec_id=?", (reason, exec_id))

    def release(self, exec_id: str, recorded_ns: int) -> bool:
        """Move a quarantined fill into ``fills`` atomically; True when it was booked now."""
        with self._transaction():
            moved = self._db.execute(
                f"INSERT INTO fills SELECT {', '.join(FILL_COLUMNS[:-1])}, ? FROM quarantine"
                " WHERE exec_id=? ON CONFLICT (exec_id) DO NOTHING",
                (recorded_ns, exec_id),
            ).rowcount
            self._db.execute("DELETE FROM quarantine WHERE exec_id=?", (exec_id,))
        return moved == 1

    def record_conflict(self, fill: Fill, recorded_ns: int) -> bool:
        """Keep a fill that conflicts with a known exec id; True when this one is new."""
        cursor = self._db.execute(
            f"INSERT INTO conflicts VALUES ({_MARKS}) ON CONFLICT DO NOTHING",
            _fill_row(fill, recorded_ns),
        )
        return cursor.rowcount == 1

    def conflicts(self) -> list[dict[str, Any]]:
        return self._rows(f"SELECT {_COLS} FROM conflicts ORDER BY recorded_ns")

    def conflict_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM conflicts").fetchone()[0])

    # ------------------------------------------------------------------ orders
    def record_known_order(
        self, order_ref: str, symbol: str, side: str, quantity: float, source: str, now_ns: int
    ) -> bool:
        _finite(quantity)
        cursor = self._db.execute(
            "INSERT INTO known_orders VALUES (?,?,?,?,?,?) ON CONFLICT (order_ref) DO NOTHING",
            (order_ref, symbol, side, quantity, source, now_ns),
        )
        return cursor.rowcount == 1

    def known_order(self, order_ref: str) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT order_ref, symbol, side, quantity, source FROM known_orders WHERE order_ref=?",
            (order_ref,),
        )
        return rows[0] if rows else None

    def known_order_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM known_orders").fetchone()[0])

    def record_order_event(self, order: OrderEvent) -> bool:
        _finite(order.quantity)
        cursor = self._db.execute(
            "INSERT INTO order_events VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (
                order.order_ref,
                order.status,
                order.symbol,
                order.side,
                order.quantity,
                order.bar_seq,
                order.reason,
                order.ts_event,
            ),
        )
        return cursor.rowcount == 1

    def order_events(self) -> list[dict[str, Any]]:
        return self._rows(
            f"SELECT {', '.join(ORDER_EVENT_COLUMNS)} FROM order_events"
            " ORDER BY ts_event, order_ref"
        )

    # ------------------------------------------------------------------ marks, pnl
    def record_mark(self, symbol: str, price: float, ts_event: int) -> None:
        _finite(price)
        self._db.execute(
            "INSERT INTO marks VALUES (?,?,?) ON CONFLICT (symbol) DO UPDATE SET"
            " price=excluded.price, ts_event=excluded.ts_event",
            (symbol, price, ts_event),
        )

    def marks(self) -> dict[str, float]:
        rows = self._db.execute("SELECT symbol, price FROM marks").fetchall()
        return {str(symbol): float(price) for symbol, price in rows}

    def record_pnl(self, pnl: PnL) -> None:
        _finite(pnl.realized, pnl.unrealized, pnl.fees, pnl.equity)
        self._db.execute(
            "INSERT INTO pnl VALUES (?,?,?,?,?)",
            (pnl.ts_event, pnl.realized, pnl.unrealized, pnl.fees, pnl.equity),
        )

    def pnl_history(self, limit: int = 5_000) -> list[tuple[int, float]]:
        """The last ``limit`` (ts_ns, equity) points, oldest first."""
        rows = self._db.execute(
            "SELECT ts, equity FROM (SELECT rowid, ts, equity FROM pnl ORDER BY rowid DESC"
            " LIMIT ?) ORDER BY rowid",
            (limit,),
        ).fetchall()
        return [(int(ts), float(equity)) for ts, equity in rows]

    def marks_detail(self) -> dict[str, tuple[float, int]]:
        rows = self._db.execute("SELECT symbol, price, ts_event FROM marks").fetchall()
        return {str(symbol): (float(price), int(ts)) for symbol, price, ts in rows}

    # ------------------------------------------------------------------ signals, dashboard
    def record_signal(self, signal: TargetPosition) -> bool:
        """Keep one decision; True when new. The order reference is execution's
        ``order_ref_for(strategy, symbol, bar_seq)``."""
        _finite(signal.bar_close, signal.target_position)
        order_ref = f"{signal.strategy}-{signal.symbol}-{signal.bar_seq}"
        cursor = self._db.execute(
            "INSERT INTO signals VALUES (?,?,?,?,?,?,?) ON CONFLICT (order_ref) DO NOTHING",
            (
                order_ref,
                signal.symbol,
                signal.bar_seq,
                signal.model_version,
                signal.bar_close,
                signal.target_position,
                signal.ts_event,
            ),
        )
        if cursor.rowcount == 1 and cursor.lastrowid and cursor.lastrowid % 10_000 == 0:
            self._db.execute(
                "DELETE FROM signals WHERE rowid <= (SELECT MAX(rowid) FROM signals) - ?",
                (MAX_SIGNALS,),
            )
        return cursor.rowcount == 1

    def signal_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT model_version, COUNT(*) FROM signals GROUP BY 1")
        return {str(version): int(n) for version, n in rows.fetchall()}

    def signal_rows(self, limit: int = MAX_SIGNALS) -> list[dict[str, Any]]:
        """The newest ``limit`` live decisions (model version, symbol, bar, close, target),
        by symbol and bar."""
        return self._decisions("signals", limit)

    def _decisions(self, table: str, limit: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT model_version, symbol, bar_seq, bar_close, target FROM (SELECT rowid,"
            f" model_version, symbol, bar_seq, bar_close, target FROM {table}"
            " ORDER BY rowid DESC LIMIT ?) ORDER BY symbol, bar_seq",
            (limit,),
        )

    def record_shadow(self, shadow: ShadowTarget) -> bool:
        """Keep one shadow decision; True when new (the same one again is ignored)."""
        _finite(shadow.bar_close, shadow.target_position)
        cursor = self._db.execute(
            "INSERT INTO shadow_signals VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (
                shadow.model_version,
                shadow.strategy,
                shadow.symbol,
                shadow.bar_seq,
                shadow.bar_close,
                shadow.target_position,
                shadow.ts_event,
            ),
        )
        if cursor.rowcount == 1 and cursor.lastrowid and cursor.lastrowid % 10_000 == 0:
            self._db.execute(
                "DELETE FROM shadow_signals WHERE rowid <= (SELECT MAX(rowid) FROM shadow_signals)"
                " - ?",
                (MAX_SIGNALS,),
            )
        return cursor.rowcount == 1

    def shadow_rows(self, limit: int = MAX_SIGNALS) -> list[dict[str, Any]]:
        """The newest ``limit`` shadow decisions, by symbol and bar."""
        return self._decisions("shadow_signals", limit)

    def shadow_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM shadow_signals").fetchone()[0])

    def fills_in_context(self) -> list[dict[str, Any]]:
        """Every booked fill with its decision (bar close, model version) when one is known."""
        return self._rows(
            "SELECT f.exec_id, f.symbol, f.order_ref, f.side, f.quantity, f.price, f.commission,"
            " f.ts_event, s.bar_close, s.model_version FROM fills f"
            " LEFT JOIN signals s ON s.order_ref = f.order_ref ORDER BY f.ts_event, f.exec_id"
        )

    def recent_order_events(self, limit: int = 20) -> list[dict[str, Any]]:
        return self._rows(
            f"SELECT {', '.join(ORDER_EVENT_COLUMNS)} FROM order_events"
            " ORDER BY ts_event DESC, order_ref LIMIT ?",
            (limit,),
        )

    def order_status_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM order_events GROUP BY status")
        return {str(status): int(n) for status, n in rows.fetchall()}

    def close(self) -> None:
        self._db.close()
