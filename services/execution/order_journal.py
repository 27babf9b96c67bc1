"""SQLite journal of order references, fills and daily equity: what makes restarts safe.

An order reference is written (and committed) BEFORE the order goes to the broker, so a process
killed at any instant, SIGKILL included, finds the reference on restart and never sends it again.
The lifecycle per reference is ``OrderState`` and the journal owns it: ``advance`` is the only way
a state changes, and ``may_advance`` is its one rule. ``reserved`` (written, maybe sent) -> ``sent``
(the broker took it) -> ``acknowledged`` -> ``filled`` / ``cancelled`` / ``rejected``; a state only
moves forward and a terminal one is never left. ``lost`` marks a reservation that the broker did
not know after a restart (it is still never re-sent: the next target signal moves the position
instead); a late broker report about a lost order still advances it, since the broker is right.

Fills are keyed by the broker's ``exec_id``: ``fill_published`` tells whether ``fill.<SYM>`` was
already published for it, which is what makes recovered executions publish exactly once (the
monitor ledger is idempotent by ``exec_id`` as well, so the crash window between publishing and
committing costs at most one duplicate frame, never a duplicate ledger row).

Durability (``EXECUTION_JOURNAL_SYNC``, the README's "Order journal durability" argues the
default). WAL with ``synchronous=NORMAL`` (default) survives a process crash, SIGKILL included:
a committed transaction is in the WAL file, i.e. in the OS page cache, before ``reserve`` returns.
Only a host crash or power loss can drop the last transactions; restart reconciliation against
the broker's orders and executions by ``orderRef`` recovers what they said. ``FULL`` also survives
that and costs an fsync per commit on the signal path. WAL checkpoints (which fsync even under
``NORMAL``) are taken by ``checkpoint()`` on its own connection, which the service runs in a
worker thread every few seconds, so no order waits for one; SQLite's own auto-checkpoint stays
only as a backstop for a journal used without that loop.

Which references exist is also held in memory (``bar_ts_of``): the decision path asks it once per
signal without a query; ``reserve`` (INSERT OR IGNORE, one transaction for a bracket's parent and
children) stays the authority that never lets a reference be sent twice.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

from execution.broker import BrokerFill, OrderRequest
from execution.input_guard import StateFileError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_ref TEXT PRIMARY KEY,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity REAL NOT NULL,
    order_type TEXT NOT NULL,
    bar_seq INTEGER NOT NULL,
    bar_ts INTEGER NOT NULL DEFAULT 0,
    limit_price REAL,
    state TEXT NOT NULL,
    broker_order_id TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_state ON orders(state);
CREATE TABLE IF NOT EXISTS fills (
    exec_id TEXT PRIMARY KEY,
    order_ref TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity REAL NOT NULL,
    price REAL NOT NULL,
    commission REAL NOT NULL,
    account TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS equity_days (
    day TEXT PRIMARY KEY,
    start_equity REAL NOT NULL,
    last_equity REAL NOT NULL,
    orders INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class OrderState(StrEnum):
    """Where one order reference is in its life (stored as its string value)."""

    RESERVED = "reserved"  # committed before sending: maybe at the broker, maybe not
    SENT = "sent"  # the broker took it
    ACKNOWLEDGED = "acknowledged"  # the broker works it
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    LOST = "lost"  # reserved, and unknown to the broker after a reconnect


# The order of progress: a state moves only to a higher rank. LOST ranks with RESERVED (it is a
# verdict on a reservation), the three outcomes rank together (one outcome excludes the others).
_RANK = {
    OrderState.RESERVED: 0,
    OrderState.LOST: 0,
    OrderState.SENT: 1,
    OrderState.ACKNOWLEDGED: 2,
    OrderState.FILLED: 3,
    OrderState.CANCELLED: 3,
    OrderState.REJECTED: 3,
}
TERMINAL_STATES = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED})
# Not working at the broker as far as the journal knows (lost included: it is not open).
FINAL_STATES = TERMINAL_STATES | {OrderState.LOST}
OPEN_STATES = (OrderState.RESERVED, OrderState.SENT, OrderState.ACKNOWLEDGED)
SYNC_MODES = ("NORMAL", "FULL")
# pages of WAL before SQLite checkpoints inside a commit; the service's checkpoint loop keeps the
# WAL far below this, so it only bounds the WAL of a journal used without that loop
BACKSTOP_AUTOCHECKPOINT_PAGES = 10_000


def may_advance(current: OrderState, new: OrderState) -> bool:
    """The one lifecycle rule: may an order in ``current`` move to ``new``?

    Terminal states are never left; RESERVED only becomes LOST by the reconciliation verdict; a LOST
    order follows whatever the broker later reports about it; otherwise only forward moves.
    """
    if current in TERMINAL_STATES or new is OrderState.RESERVED:
        return False
    if new is OrderState.LOST:
        return current is OrderState.RESERVED
    if current is OrderState.LOST:
        return True
    return _RANK[new] > _RANK[current]


# The states may_advance lets become SENT (reserved, lost): mark_sent's one conditional UPDATE
# instead of advance's read and compare-and-set.
_SENT_FROM = tuple(state.value for state in OrderState if may_advance(state, OrderState.SENT))


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True):
    order_ref: str
    symbol: str
    side: str
    quantity: float
    order_type: str
    bar_seq: int
    bar_ts: int  # close of the bar the decision was taken on (ns)
    limit_price: float | None
    state: OrderState
    broker_order_id: str
    reason: str
    created_ns: int
    updated_ns: int


class EquityDay(msgspec.Struct, frozen=True, kw_only=True):
    day: str
    start_equity: float
    last_equity: float
    orders: int


class OrderJournal:
    """One SQLite file per execution instance (``EXECUTION_STATE_DIR/journal.sqlite``)."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {SYNC_MODES}, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self._in_memory = str(path) == ":memory:"
        self._checkpoint_db: sqlite3.Connection | None = None
        try:
            if not self._in_memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_AUTOCHECKPOINT_PAGES}")
            self._db.executescript(_SCHEMA)
            # reference -> bar close (ns): every reference ever reserved, for the signal path
            self._refs: dict[str, int] = dict(
                self._db.execute("SELECT order_ref, bar_ts FROM orders").fetchall()
            )
        except (OSError, sqlite3.Error) as exc:
            raise StateFileError(
                f"{self.path}: order journal does not open ({exc}); it holds every order"
                " reference sent, so repair or move it away on purpose"
            ) from None

    def close(self) -> None:
        if self._checkpoint_db is not None:
            self._checkpoint_db.close()
        self._db.close()

    def checkpoint(self) -> int:
        """Copy the WAL into the database file (PASSIVE: never waits for the writer), on a
        connection of its own so it can run in a worker thread while orders are written. Returns
        the WAL pages checkpointed (0 for an in-memory journal)."""
        if self._in_memory:
            return 0
        if self._checkpoint_db is None:
            self._checkpoint_db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
            self._checkpoint_db.execute(f"PRAGMA synchronous={self.synchronous}")
            self._checkpoint_db.execute("PRAGMA busy_timeout=5000")
        row = self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[2]) if row and row[2] > 0 else 0

    # ------------------------------------------------------------------ orders
    def reserve(
        self,
        order: OrderRequest,
        now_ns: int | None = None,
        children: tuple[OrderRequest, ...] = (),
    ) -> bool:
        """Write the reference (and a bracket's ``children``) in one committed transaction
        before sending. False when the reference was already there (never send)."""
        for o in (order, *children):
            _require_finite(o.quantity, o.limit_price, o.stop_loss, o.take_profit)
        now = now_ns or time.time_ns()
        if not children:  # the common case: one autocommitted statement
            inserted = self._insert(order, now)
        else:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                inserted = self._insert(order, now)
                if inserted:
                    for child in children:
                        self._insert(child, now)
        if inserted:
            for o in (order, *children):
                self._refs.setdefault(o.order_ref, o.not_before_ns)
        return inserted

    def _insert(self, order: OrderRequest, now: int) -> bool:
        cur = self._db.execute(
            "INSERT OR IGNORE INTO orders (order_ref, symbol, side, quantity, order_type, bar_seq,"
            " bar_ts, limit_price, state, created_ns, updated_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                order.order_ref,
                order.symbol,
                order.side,
                float(order.quantity),
                order.order_type,
                order.bar_seq,
                order.not_before_ns,
                order.limit_price,
                OrderState.RESERVED.value,
                now,
                now,
            ),
        )
        return cur.rowcount == 1

    def has(self, order_ref: str) -> bool:
        return order_ref in self._refs

    def bar_ts_of(self, order_ref: str) -> int | None:
        """The bar close (ns, 0: unknown) of a reserved reference; None when never reserved.
        From memory: the signal path's duplicate check costs no query."""
        return self._refs.get(order_ref)

    def mark_sent(self, order_ref: str, broker_order_id: str, day: str, equity: float) -> bool:
        """After the broker took the order: SENT and the day's order count, one transaction."""
        movable = _SENT_FROM
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                "UPDATE orders SET state=?, broker_order_id=?, updated_ns=? WHERE order_ref=?"
                f" AND state IN ({','.join('?' * len(movable))})",
                (OrderState.SENT.value, broker_order_id, time.time_ns(), order_ref, *movable),
            )
            self.count_order(day, equity)
        return cur.rowcount == 1

    def advance(
        self,
        order_ref: str,
        state: OrderState | str,
        broker_order_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Move an order to ``state`` when ``may_advance`` allows it; True when it moved.

        A compare-and-set on the state read, so two writers never both move the same order.
        """
        new = OrderState(state)
        entry = self.get(order_ref)
        if entry is None or not may_advance(entry.state, new):
            return False
        cur = self._db.execute(
            "UPDATE orders SET state=?, broker_order_id=COALESCE(?, broker_order_id),"
            " reason=COALESCE(?, reason), updated_ns=? WHERE order_ref=? AND state=?",
            (new.value, broker_order_id, reason, time.time_ns(), order_ref, entry.state.value),
        )
        return cur.rowcount == 1

    def get(self, order_ref: str) -> JournalEntry | None:
        row = self._db.execute("SELECT * FROM orders WHERE order_ref=?", (order_ref,)).fetchone()
        return None if row is None else self._entry(row)

    def orders(
        self, states: tuple[OrderState, ...] | None = None, limit: int = 1000
    ) -> list[JournalEntry]:
        if states:
            marks = ",".join("?" * len(states))
            rows = self._db.execute(
                f"SELECT * FROM orders WHERE state IN ({marks}) ORDER BY created_ns DESC LIMIT ?",
                (*(str(state) for state in states), limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM orders ORDER BY created_ns DESC LIMIT ?", (limit,)
            ).fetchall()
        return [self._entry(r) for r in rows]

    def open_entries(self) -> list[JournalEntry]:
        """Orders not in a final state (reserved, sent, acknowledged)."""
        return self.orders(OPEN_STATES)

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> JournalEntry:
        return JournalEntry(
            order_ref=row[0],
            symbol=row[1],
            side=row[2],
            quantity=row[3],
            order_type=row[4],
            bar_seq=row[5],
            bar_ts=row[6],
            limit_price=row[7],
            state=OrderState(row[8]),
            broker_order_id=row[9],
            reason=row[10],
            created_ns=row[11],
            updated_ns=row[12],
        )

    # ------------------------------------------------------------------ fills
    def fill_published(self, exec_id: str) -> bool:
        row = self._db.execute("SELECT published FROM fills WHERE exec_id=?", (exec_id,)).fetchone()
        return bool(row and row[0])

    def save_fill(self, fill: BrokerFill, published: bool = True) -> None:
        _require_finite(fill.quantity, fill.price, fill.commission)
        self._db.execute(
            "INSERT INTO fills (exec_id, order_ref, symbol, side, quantity, price, commission,"
            " account, ts_ns, published) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(exec_id) DO"
            " UPDATE SET published=MAX(published, excluded.published),"
            " commission=excluded.commission",
            (
                fill.exec_id,
                fill.order_ref,
                fill.symbol,
                fill.side,
                fill.quantity,
                fill.price,
                fill.commission,
                fill.account,
                fill.ts_ns,
                int(published),
            ),
        )

    def fills(self, limit: int = 1000) -> list[dict[str, Any]]:
        cur = self._db.execute("SELECT * FROM fills ORDER BY ts_ns DESC LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def fills_since(self, since_ns: int) -> list[dict[str, Any]]:
        """Fills with ``ts_ns >= since_ns`` shaped like the bus ``Fill`` (the monitor back-fills
        what it missed while it was down from this)."""
        cur = self._db.execute(
            "SELECT symbol, exec_id, order_ref, side, quantity, price, commission, account, ts_ns"
            " FROM fills WHERE ts_ns >= ? ORDER BY ts_ns, exec_id",
            (since_ns,),
        )
        names = (
            "symbol",
            "exec_id",
            "order_ref",
            "side",
            "quantity",
            "price",
            "commission",
            "account",
            "ts_event",
        )
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def filled_quantity(self, order_ref: str) -> float:
        row = self._db.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM fills WHERE order_ref=?", (order_ref,)
        ).fetchone()
        return float(row[0])

    def last_exec_ns(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(ts_ns), 0) FROM fills").fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ equity per day
    def observe_equity(self, day: str, equity: float) -> EquityDay:
        """Record the equity seen on ``day``. A day starts from the previous day's last equity
        (the previous close), or from this first observation when there is no earlier day."""
        _require_finite(equity)
        previous = self._db.execute(
            "SELECT last_equity FROM equity_days WHERE day < ? ORDER BY day DESC LIMIT 1", (day,)
        ).fetchone()
        start = float(previous[0]) if previous else equity
        self._db.execute(
            "INSERT INTO equity_days (day, start_equity, last_equity) VALUES (?,?,?)"
            " ON CONFLICT(day) DO UPDATE SET last_equity=excluded.last_equity",
            (day, start, equity),
        )
        day_row = self.equity_day(day)
        assert day_row is not None
        return day_row

    def count_order(self, day: str, equity: float) -> None:
        cur = self._db.execute("UPDATE equity_days SET orders=orders+1 WHERE day=?", (day,))
        if cur.rowcount == 0:  # first order of the day: the day's row first
            self.observe_equity(day, equity)
            self._db.execute("UPDATE equity_days SET orders=orders+1 WHERE day=?", (day,))

    def equity_day(self, day: str) -> EquityDay | None:
        row = self._db.execute(
            "SELECT day, start_equity, last_equity, orders FROM equity_days WHERE day=?", (day,)
        ).fetchone()
        if row is None:
            return None
        return EquityDay(day=row[0], start_equity=row[1], last_equity=row[2], orders=row[3])

    def equity_days(self) -> list[EquityDay]:
        rows = self._db.execute(
            "SELECT day, start_equity, last_equity, orders FROM equity_days ORDER BY day"
        ).fetchall()
        return [EquityDay(day=r[0], start_equity=r[1], last_equity=r[2], orders=r[3]) for r in rows]

    # ------------------------------------------------------------------ key/value
    def get_value(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except (TypeError, ValueError):
            raise StateFileError(f"{self.path}: state value {key!r} is not valid JSON") from None

    def set_value(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO kv (key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET"
            " value=excluded.value",
            (key, json.dumps(value, allow_nan=False)),
        )

    def next_counter(self, name: str) -> int:
        """A persistent counter (1, 2, ...), for references that no signal names (flattening)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            value = int(self.get_value(f"counter.{name}", 0)) + 1
            self.set_value(f"counter.{name}", value)
        return value


def _require_finite(*values: float | None) -> None:
    """Nothing non-finite is ever persisted (a NaN in the journal is a crash at every start)."""
    for value in values:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"refusing to persist a non-finite number ({value})")
