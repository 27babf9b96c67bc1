"""Retraining on the dashboard: every step of the trainer's retrain records (``trainer.retrain``).

Two sources, the richer first:

* ``<model root>/retrain.json`` (``MONITOR_MODEL_DIR``, the folder inference serves from and the
  trainer writes its registry into), read-only, re-read only when its modification time or size
  changes: every record with its steps and their numbers (gate Sharpes, per-session live-versus-
  shadow returns, the decision);
* the trainer's heartbeat (``hb.trainer``, field ``retrain``) when the file cannot be read (a
  monitor container without the model volume): the newest record's summary only.

``panel`` turns either into what ``/dashboard.json`` carries under ``retrain`` and the
dashboard's Retraining table draws: one row per record (newest first), its state, candidate
and live versions, the gate's verdict with the model's and the benchmarks' validation Sharpe,
the shadow sessions (done / needed, each session's shadow and live would-be return on the same
bars) and the outcome with its reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RECORDS_FILE = "retrain.json"  # trainer.retrain_config.RECORDS_FILE (no trainer import here)
SHOWN = 10  # newest records on the dashboard
NOTE = (
    "the trainer's retraining records (train on the bar store, validation-fold gate, shadow "
    "sessions, promoted or dropped), newest first; shadow and live returns are would-be returns "
    "marked close to close on the bars both decided (shared.shadow_marks), no costs"
)


class RetrainFile:
    """``retrain.json`` read-only, parsed again only when it changed on disk."""

    def __init__(self, model_dir: str | os.PathLike[str]) -> None:
        self.path = Path(model_dir) / RECORDS_FILE
        self._key: tuple[int, int] | None = None
        self._records: list[dict[str, Any]] | None = None

    def read(self) -> list[dict[str, Any]] | None:
        """The records, oldest first; None when there is no readable file."""
        try:
            st = self.path.stat()
        except OSError:
            self._key, self._records = None, None
            return None
        key = (st.st_mtime_ns, st.st_size)
        if key != self._key:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                return self._records  # mid-replace or damaged: keep the last good read
            rows = data if isinstance(data, list) else []
            self._records = [r for r in rows if isinstance(r, dict)]
            self._key = key
        return self._records


def _num(value: Any, digits: int = 4) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return round(v, digits) if v == v else None


def _gate(record: dict[str, Any]) -> dict[str, Any]:
    numbers = record.get("gate") or {}
    if not isinstance(numbers, dict):
        numbers = {}

    def pick(prefix: str) -> float | None:
        for key, value in numbers.items():
            if key.startswith(prefix) and "worst" not in key:
                return _num(value)
        return None

    return {
        "verdict": record.get("verdict"),
        "reason": record.get("gate_reason"),
        "model": pick("gate_model_"),
        "buy_and_hold": pick("gate_buy_and_hold_"),
        "ma_crossover": pick("gate_ma_crossover_"),
        "folds": _num(numbers.get("gate_folds"), 0),
    }


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """One record as the dashboard shows it."""
    scores = [s for s in record.get("scores") or [] if isinstance(s, dict)]
    decision = record.get("decision") if isinstance(record.get("decision"), dict) else None
    state = record.get("state")
    outcome = ""
    if state == "promoted":
        outcome = "promoted" + (" (already live)" if record.get("already_live") else "")
    elif state == "dropped":
        outcome = "dropped"
    return {
        "id": record.get("id"),
        "state": state,
        "reason": record.get("reason"),
        "started_at": record.get("started_at"),
        "candidate": record.get("shadow_version") or record.get("version"),
        "live": record.get("live_version"),
        "gate": _gate(record),
        "sessions_done": len(scores),
        "sessions_needed": record.get("sessions_needed"),
        "margin_pct": record.get("margin_pct"),
        "sessions": [
            {
                "session": s.get("session"),
                "bars": s.get("bars"),
                "shadow_pct": _num(s.get("shadow_pct")),
                "live_pct": _num(s.get("live_pct")),
            }
            for s in scores
        ],
        "decision": decision,
        "outcome": outcome,
        "why": record.get("why") or "",
        "steps": [
            {"state": step.get("state"), "at": step.get("at")}
            for step in record.get("steps") or []
            if isinstance(step, dict)
        ],
    }


def panel(records: list[dict[str, Any]] | None, heartbeat: dict[str, Any] | None) -> dict[str, Any]:
    """``/dashboard.json``'s ``retrain``: from the records file, else the trainer's heartbeat."""
    if records is not None:
        rows = [record_row(r) for r in reversed(records[-SHOWN:])]
        return {"source": "file", "rows": rows, "schedule": _schedule(heartbeat), "note": NOTE}
    last = (heartbeat or {}).get("last")
    rows = []
    if isinstance(last, dict):
        rows = [
            record_row(
                {
                    **last,
                    "scores": [{}] * int(last.get("sessions_done") or 0),
                    "sessions_needed": last.get("sessions_needed"),
                }
            )
        ]
        rows[0]["sessions"] = []  # the heartbeat carries the count, not the sessions
    source = "heartbeat" if heartbeat is not None else "none"
    return {"source": source, "rows": rows, "schedule": _schedule(heartbeat), "note": NOTE}


def _schedule(heartbeat: dict[str, Any] | None) -> dict[str, Any]:
    hb = heartbeat or {}
    return {"every": hb.get("every"), "next_due": hb.get("next_due")}
