"""Live versus shadow: what each model version's decisions would have earned, on the same bars.

A shadow (candidate) model publishes ``ShadowTarget`` on ``shadow.<SYM>``: what it would hold on
a bar. It never trades, so it has no fills; its *would-be* PnL is measured the simplest way that
treats live and shadow alike:

    a decision to hold ``target`` (in [-1, 1]) at the close ``c0`` of bar ``n`` earns
    ``target * (c1 / c0 - 1)``, where ``c1`` is the close of the next bar of that symbol the
    monitor knows (from any live or shadow decision; the decisions carry their bar's close).

Summed over a version's decisions this is the return of holding ``target`` units of one unit of
capital from close to close: no costs, no sizing, no fills. The last decision of each symbol is
*open* (its next close is not known yet) and not counted. The live figure beside each shadow
version is the live model's own decisions marked the same way **on the same bars** (the bars both
decided), so the two numbers compare like with like. The realised PnL of live *fills* (with costs)
is the per-model table's, not this one. The marking rule is ``shared.shadow_marks`` (the
trainer's retraining judgement uses the same functions).
"""

from __future__ import annotations

from typing import Any

from shared.shadow_marks import Key, known_closes, step_returns


def live_vs_shadow(
    live_rows: list[dict[str, Any]], shadow_rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per model version, live ones first: decisions, marked decisions, would-be return
    (in %), and for a shadow version the live model's return on the same bars."""
    closes = known_closes(live_rows, shadow_rows)
    live = step_returns(live_rows, closes)
    shadow = step_returns(shadow_rows, closes)
    live_by_bar: dict[Key, float] = {}
    for steps in live.values():
        live_by_bar.update(steps)
    decided: dict[tuple[str, str], int] = {}
    for role, rows in (("live", live_rows), ("shadow", shadow_rows)):
        for decision in rows:
            key = (role, decision["model_version"])
            decided[key] = decided.get(key, 0) + 1
    table = []
    for (role, version), count in sorted(decided.items()):
        steps = (live if role == "live" else shadow).get(version, {})
        row: dict[str, Any] = {
            "role": role,
            "version": version,
            "decisions": count,
            "marked": len(steps),
            "return_pct": round(sum(steps.values()) * 100, 4),
        }
        if role == "shadow":
            same = [bar for bar in steps if bar in live_by_bar]
            row["bars_with_live"] = len(same)
            row["shadow_on_same_bars_pct"] = round(sum(steps[b] for b in same) * 100, 4)
            row["live_on_same_bars_pct"] = round(sum(live_by_bar[b] for b in same) * 100, 4)
        table.append(row)
    return table
