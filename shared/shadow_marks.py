"""Would-be returns of model decisions, marked close to close: the one rule the monitor's
live-versus-shadow table (``monitor.shadow``) and the trainer's retraining judgement
(``trainer.retrain``) both use, so the two cannot drift apart.

A decision to hold ``target`` (in [-1, 1]) at the close ``c0`` of bar ``n`` earns
``target * (c1 / c0 - 1)``, where ``c1`` is the close of the next bar of that symbol that is
known (from any live or shadow decision: each decision carries its bar's close). No costs, no
sizing, no fills; the last decision of a symbol is open (its next close is not known yet) and
not counted. A decision is a mapping with ``symbol``, ``bar_seq``, ``bar_close``, ``target`` and
``model_version``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

__all__ = ["Key", "known_closes", "step_returns"]

Key = tuple[str, int]  # (symbol, bar_seq)


def known_closes(
    *decision_sets: Iterable[dict[str, Any]],
) -> dict[str, tuple[list[int], list[float]]]:
    """Per symbol, the known bar numbers in order and their closes."""
    known: dict[str, dict[int, float]] = {}
    for rows in decision_sets:
        for row in rows:
            known.setdefault(row["symbol"], {})[int(row["bar_seq"])] = float(row["bar_close"])
    out = {}
    for symbol, by_seq in known.items():
        seqs = sorted(by_seq)
        out[symbol] = (seqs, [by_seq[s] for s in seqs])
    return out


def step_returns(
    rows: Iterable[dict[str, Any]], closes: dict[str, tuple[list[int], list[float]]]
) -> dict[str, dict[Key, float]]:
    """Per model version, per (symbol, bar): ``target * (next close / close - 1)``; decisions
    whose next close is unknown yet are left out."""
    out: dict[str, dict[Key, float]] = {}
    for row in rows:
        symbol, seq, close = row["symbol"], int(row["bar_seq"]), float(row["bar_close"])
        seqs, values = closes.get(symbol, ([], []))
        i = bisect_right(seqs, seq)
        if i >= len(seqs) or not close > 0:
            continue
        out.setdefault(row["model_version"], {})[(symbol, seq)] = float(row["target"]) * (
            values[i] / close - 1.0
        )
    return out
