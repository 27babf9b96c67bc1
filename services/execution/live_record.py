"""The paper track record a live account needs: the paper-versus-backtest reports' sessions.

``make compare`` writes ``<reports_dir>/paper-vs-backtest-<period>/report.json`` with one row per
session (``monitor.compare``). Before a LIVE account may trade (after the two existing keys,
``allow_live`` and ``EXECUTION_CONFIRM_LIVE``), the live guard asks :func:`read_track_record`:
the most recent ``required`` sessions over all reports (a session in several reports counts once,
from the newest report) must each have no decision differing from the backtest, none missing
(``within_bound`` in the report) and a deviation at most ``bound`` (this service's bound, not the
report's). Anything less, or no report at all, refuses live trading with a message naming the
reports read and what is missing. Paper accounts are never affected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "paper-vs-backtest-"
MAX_REPORT_BYTES = 50_000_000


@dataclass(frozen=True)
class TrackRecord:
    ok: bool
    required: int
    bound: float
    sessions_within: int  # within bound among the most recent ``required`` sessions
    reports: tuple[str, ...]  # report.json files read, newest first
    message: str  # why live trading is refused ('' when ok)

    def describe(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "required_sessions": self.required,
            "bound": self.bound,
            "sessions_within_bound": self.sessions_within,
            "reports": list(self.reports),
            "missing": self.message,
        }


def _load(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_track_record(reports_dir: str | Path, required: int, bound: float) -> TrackRecord:
    """The verdict of the live guard's track record (see the module docstring)."""
    root = Path(reports_dir)
    files = sorted(root.glob(f"{PREFIX}*/report.json")) if root.is_dir() else []
    loaded: list[tuple[int, Path, dict[str, Any]]] = []
    unreadable = []
    for path in files:
        data = _load(path)
        stamp = data.get("generated_ns") if data else None
        if data is None or not isinstance(data.get("sessions"), list) or not _finite_number(stamp):
            unreadable.append(str(path))
            continue
        loaded.append((int(stamp), path, data))  # type: ignore[arg-type]
    loaded.sort(key=lambda item: item[0], reverse=True)
    sessions: dict[str, tuple[bool, float, str]] = {}  # date -> (within, deviation, report)
    for _, path, data in loaded:
        for row in data["sessions"]:
            if not isinstance(row, dict) or not isinstance(row.get("session"), str):
                continue
            if row["session"] in sessions:
                continue  # the newest report's row wins
            raw = row.get("deviation")
            dev = float(raw) if _finite_number(raw) else math.inf  # type: ignore[arg-type]
            ok = row.get("within_bound") is True and dev <= bound
            sessions[row["session"]] = (ok, dev, str(path))
    recent = sorted(sessions)[-required:]
    within = [s for s in recent if sessions[s][0]]
    reports = tuple(str(p) for _, p, _ in loaded)
    if len(recent) == required and len(within) == required:
        return TrackRecord(True, required, bound, len(within), reports, "")
    failing = [s for s in recent if not sessions[s][0]]
    parts = [
        f"live trading needs a paper track record: the last {required} sessions of the "
        f"paper-vs-backtest reports under {root} each within deviation {bound:g} with every "
        "decision equal to the backtest's"
    ]
    if not reports:
        parts.append(f"no report found (run `make compare` after {required} paper sessions)")
    else:
        parts.append(
            f"found {len(sessions)} sessions in {', '.join(reports)}; "
            f"{len(within)} of the last {len(recent)} within bound"
        )
        if len(recent) < required:
            parts.append(f"{required - len(recent)} more sessions needed")
        if failing:
            shown = ", ".join(f"{s} (deviation {sessions[s][1]:.4g})" for s in failing[:5])
            more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
            parts.append(f"outside the bound: {shown}{more}")
    if unreadable:
        parts.append(f"unreadable: {', '.join(unreadable[:3])}")
    return TrackRecord(False, required, bound, len(within), reports, "; ".join(parts))
