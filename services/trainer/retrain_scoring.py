"""How a shadow candidate is judged against the live model, session by session.

``decision_row``: a live ``signal.`` or ``shadow.`` decision as ``shared.shadow_marks`` reads it,
with its session (``session_of``: the New York date of its bar); ``session_scores``: per complete
session, both models' summed would-be return on the bars both decided; ``decide``: promote iff
the shadow beats live by more than the margin over the required sessions
(``trainer.retrain.RetrainLoop`` acts on it).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from shared.messages import ShadowTarget, TargetPosition
from shared.shadow_marks import known_closes, step_returns

NY = ZoneInfo("America/New_York")
Row = dict[str, Any]


def session_of(bar_close_ts: int) -> str:
    """The trading session of a bar: its New York calendar date."""
    return dt.datetime.fromtimestamp(bar_close_ts / 1e9, NY).date().isoformat()


def decision_row(message: TargetPosition | ShadowTarget) -> Row:
    """A decision as ``shared.shadow_marks`` reads it (plus its role and session)."""
    return {
        "role": "shadow" if isinstance(message, ShadowTarget) else "live",
        "model_version": message.model_version,
        "symbol": message.symbol,
        "bar_seq": message.bar_seq,
        "bar_close": message.bar_close,
        "target": message.target_position,
        "session": session_of(message.bar_close_ts),
    }


def session_scores(rows: list[Row], version: str) -> list[dict[str, Any]]:
    """Per complete session (oldest first), the shadow ``version``'s and the live model's summed
    would-be return (in %) on the bars both decided, marked with ``shared.shadow_marks``' rule."""
    live = [r for r in rows if r["role"] == "live"]
    shadow = [r for r in rows if r["role"] == "shadow" and r["model_version"] == version]
    closes = known_closes(live, shadow)
    live_by_bar: dict[tuple[str, int], float] = {}
    for steps in step_returns(live, closes).values():
        live_by_bar.update(steps)
    shadow_steps = step_returns(shadow, closes).get(version, {})
    session_by_bar = {(r["symbol"], int(r["bar_seq"])): r["session"] for r in shadow}
    sessions = sorted({r["session"] for r in rows})
    scores = []
    for i, session in enumerate(sessions):
        decided = [bar for bar, s in session_by_bar.items() if s == session]
        all_marked = all(bar in shadow_steps for bar in decided)
        if not decided or not (all_marked or i + 2 < len(sessions)):
            if decided:
                break  # sessions complete in order: the rest wait for this one
            continue
        same = [bar for bar in decided if bar in shadow_steps and bar in live_by_bar]
        if not same:
            continue
        scores.append(
            {
                "session": session,
                "bars": len(same),
                "shadow_pct": sum(shadow_steps[b] for b in same) * 100,
                "live_pct": sum(live_by_bar[b] for b in same) * 100,
            }
        )
    return scores


def decide(scores: list[dict[str, Any]], sessions: int, margin_pct: float) -> dict[str, Any] | None:
    """None while fewer than ``sessions`` complete sessions exist; then promote iff the shadow's
    return summed over the first ``sessions`` of them exceeds live's by more than the margin."""
    if len(scores) < sessions:
        return None
    used = scores[:sessions]
    shadow = sum(s["shadow_pct"] for s in used)
    live = sum(s["live_pct"] for s in used)
    return {
        "promote": shadow - live > margin_pct,
        "sessions": [s["session"] for s in used],
        "shadow_pct": round(shadow, 6),
        "live_pct": round(live, 6),
        "excess_pct": round(shadow - live, 6),
        "margin_pct": margin_pct,
    }
