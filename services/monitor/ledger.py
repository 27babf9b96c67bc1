"""The SQLite ledger (WAL): fills keyed by the broker's execution id, order events, PnL marks.

Writing the same fill twice is a no-op (``ON CONFLICT (exec_id) DO NOTHING``; a row that breaks
a CHECK still fails loudly), so a fill received
from the bus and again from a back-fill, or after a restart, is booked exactly once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from shared.messages import Fill, OrderEvent, PnL

SCHEMA = """
CREATE TABLE IF NOT EXISTS fills (
    exec_id     TEXT PRIMARY KEY,
    symbol      TEXT NOT NULL,
    order_ref   TEXT NOT NULL,
    side        TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity    REAL NOT NULL CHECK (quantity > 0),
    price       REAL NOT NULL,
    commission  REAL NOT NULL,
    account     TEXT NOT NULL,
    ts_event    INTEGER NOT NULL,
    producer    TEXT NOT NULL,
    recorded_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_by_time ON fills (ts_event, exec_id);
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


class Ledger:
    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit; one statement = one tx
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def record_fill(self, fill: Fill, recorded_ns: int) -> bool:
        """True when the fill is new; False when its exec_id was already booked."""
        cursor = self._db.execute(
            "INSERT INTO fills VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (exec_id) DO NOTHING",
            (
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
            ),
        )
        return cursor.rowcount == 1

    def record_order_event(self, order: OrderEvent) -> bool:
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

    def record_pnl(self, pnl: PnL) -> None:
        self._db.execute(
            "INSERT INTO pnl VALUES (?,?,?,?,?)",
            (pnl.ts_event, pnl.realized, pnl.unrealized, pnl.fees, pnl.equity),
        )

    def fills(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            f"SELECT {', '.join(FILL_COLUMNS)} FROM fills ORDER BY ts_event, exec_id"
        ).fetchall()
        return [dict(zip(FILL_COLUMNS, row, strict=True)) for row in rows]

    def last_fill_ts(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(ts_event), 0) FROM fills").fetchone()
        return int(row[0])

    def order_events(self) -> list[dict[str, Any]]:
        cols = (
            "order_ref",
            "status",
            "symbol",
            "side",
            "quantity",
            "bar_seq",
            "reason",
            "ts_event",
        )
        rows = self._db.execute(
            f"SELECT {', '.join(cols)} FROM order_events ORDER BY ts_event, order_ref"
        ).fetchall()
        return [dict(zip(cols, row, strict=True)) for row in rows]

    def close(self) -> None:
        self._db.close()
