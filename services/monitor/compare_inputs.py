"""Inputs of the paper-versus-backtest comparison (``monitor.compare``), all read-only.

The monitor's ledger (its ``signals`` and ``fills`` tables, opened with ``mode=ro``), the model
artifact folders by version name, the ``PERIOD`` text of ``make compare`` and the paper config
execution trades with (its sizing keys).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from shared.model_store import list_versions


class CompareError(Exception):
    """The comparison cannot run; the message names the file, version or period at fault."""


def read_ledger(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(signals, fills) from the monitor's ledger, opened read-only."""
    file = Path(path)
    if not file.is_file():
        raise CompareError(f"{file}: no ledger here (the monitor writes it)")
    try:
        db = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
        try:
            signals = pd.read_sql_query(
                "SELECT order_ref, symbol, bar_seq, model_version, bar_close, target, ts_event"
                " FROM signals ORDER BY ts_event, order_ref",
                db,
            )
            fills = pd.read_sql_query(
                "SELECT exec_id, symbol, order_ref, side, quantity, price, commission, ts_event"
                " FROM fills ORDER BY ts_event, exec_id",
                db,
            )
        finally:
            db.close()
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise CompareError(f"{file}: cannot read the ledger: {exc}") from None
    return signals, fills


def find_model(roots: Sequence[str | Path], version: str) -> Path:
    """The artifact folder named ``version`` under the first root that has it."""
    for root in roots:
        for rel in list_versions(root):
            if Path(rel).name == version:
                return Path(root) / rel
    raise CompareError(
        f"model version {version!r} (recorded in the ledger's signals) is in none of "
        f"{[str(r) for r in roots]}: restore its artifact folder or pass --models"
    )


def parse_period(text: str | None) -> tuple[str | None, str | None]:
    """``"2024-01-02..2024-01-31"`` -> both ends (exchange dates, inclusive); empty = open."""
    if not text:
        return None, None
    if ".." not in text:
        raise CompareError(f"PERIOD={text!r}: expected <start>..<end> (either may be empty)")
    first, last = (part.strip() or None for part in text.split("..", 1))
    for value in (first, last):
        if value is not None:
            try:
                pd.Timestamp(value)
            except ValueError:
                raise CompareError(f"PERIOD={text!r}: {value!r} is not a date") from None
    return first, last


def default_paper_config() -> str:
    """The paper config execution reads: ``PAPER_TRADING_CONFIG``, else the user's, else the
    example (execution.config.paper_config_path's order, relative to the working folder)."""
    explicit = os.environ.get("PAPER_TRADING_CONFIG", "")
    if explicit:
        return explicit
    user = Path("paper_trading/paper_trading_config.json")
    return str(user if user.is_file() else Path("paper_trading/paper_trading_config.example.json"))
