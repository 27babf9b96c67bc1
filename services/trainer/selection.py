"""Honest model selection: walk-forward validation folds, an untouched final hold-out, a ledger.

    train        bars before ``val_start``                  (the policy learns here)
    validation   ``val_folds`` walk-forward folds in [val_start + embargo, val_end - embargo)
                 (Tune's objective and the promotion gate: mean and worst fold)
    hold-out     [test_start, test_end)                      (scored ONCE per promoted model)

Nothing in Tune or the gate reads a bar at or after ``val_end``: ``trainer.train`` builds the
validation slice from bars cut at ``val_end``, and ``trainer.evaluate.evaluate_folds`` hands the
evaluation only ``bars[:plan.validation_end]``.

Every hold-out score is appended to ``<output>/best_models/holdout_ledger.json``; a model's
manifest and report carry ``holdout_models_scored``: how many models have been scored on that
same hold-out (source, symbol, dates), this one included. A hold-out that has been looked at by
many models is no longer an unbiased estimate (the ones reported are the lucky ones); the
pipeline warns above ``HOLDOUT_WARN`` looks.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.splits import HoldoutPlan, Split, holdout_splits

LEDGER_FILE = "holdout_ledger.json"
HOLDOUT_WARN = 5  # looks after which the report says the hold-out has been used too often

__all__ = [
    "HOLDOUT_WARN",
    "LEDGER_FILE",
    "holdout_count",
    "record_holdout",
    "selection_plan",
    "slice_folds",
]


def _pos(index: pd.DatetimeIndex, when: str | None, default: int) -> int:
    if when is None:
        return default
    ts = pd.Timestamp(when)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(np.searchsorted(index.asi8, ts.value, side="left"))


def selection_plan(cfg: Any, index: pd.DatetimeIndex) -> HoldoutPlan:
    """The folds and hold-out of a ``TrainConfig`` over the bars' ``index`` (positions)."""
    index = pd.DatetimeIndex(index).as_unit("ns")
    n = len(index)
    val0 = _pos(index, cfg.val_start, 0)
    val1 = _pos(index, cfg.val_end, n)
    hold0 = _pos(index, cfg.test_start, n)
    hold1 = _pos(index, cfg.test_end, n)
    if hold0 < val1:
        raise ValueError(f"test_start {cfg.test_start} is before val_end {cfg.val_end}")
    plan = holdout_splits(
        n,
        validation_start=val0,
        holdout_start=val1,
        n_folds=cfg.val_folds,
        embargo=cfg.embargo_bars,
        expanding=cfg.fold_mode == "expanding",
    )
    holdout = Split(
        train=np.arange(0, max(hold0 - cfg.embargo_bars, 0), dtype=np.int64),
        test=np.arange(hold0, hold1, dtype=np.int64),
        fold=cfg.val_folds,
    )
    return HoldoutPlan(plan.folds, holdout, plan.embargo, plan.expanding)


def slice_folds(cfg: Any, n_bars: int, first: int) -> HoldoutPlan:
    """The same folds inside a validation slice of ``n_bars`` bars (history + validation, cut
    at ``val_end``) whose first decision bar is ``first`` (what Tune scores)."""
    return holdout_splits(
        n_bars,
        validation_start=first,
        holdout_start=n_bars,
        n_folds=cfg.val_folds,
        embargo=cfg.embargo_bars,
        expanding=cfg.fold_mode == "expanding",
    )


def _key(source: str, symbol: str, start: str, end: str) -> str:
    return f"{source}/{symbol}/{start}/{end}"


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"entries": []}
    data: dict[str, Any] = json.loads(path.read_text())
    data.setdefault("entries", [])
    return data


def holdout_count(ledger: Path, source: str, symbol: str, start: str, end: str) -> int:
    """Models scored so far on this hold-out."""
    key = _key(source, symbol, start, end)
    return sum(1 for e in _read(ledger)["entries"] if e.get("holdout") == key)


def record_holdout(
    ledger: Path,
    *,
    version: str,
    source: str,
    symbol: str,
    start: str,
    end: str,
    content_hash: str,
    metrics: dict[str, Any],
    forced: bool,
) -> int:
    """Append one hold-out score; returns how many models have now been scored on it."""
    data = _read(ledger)
    key = _key(source, symbol, start, end)
    data["entries"].append(
        {
            "holdout": key,
            "version": version,
            "scored_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "content_hash": content_hash,
            "forced": forced,
            "metrics": metrics,
        }
    )
    ledger.parent.mkdir(parents=True, exist_ok=True)
    tmp = ledger.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, ledger)
    return sum(1 for e in data["entries"] if e.get("holdout") == key)
