"""The export's evidence: the validation folds the gate decides on, and the hold-out after it.

These steps change when the selection protocol changes (folds, gate numbers, hold-out ledger),
not when the artifact's format does:

* ``score_folds``: the staged artifact scored on the walk-forward validation folds of every
  symbol (``trainer.selection``; bars from ``val_end`` on are not even handed over);
* ``validation_metrics``: the manifest's ``validation_metrics`` (fold means and worst folds,
  per symbol, the gate's numbers, the seed spread);
* ``score_holdout``: the final hold-out (the ``test`` slice), scored ONCE and only for a
  promoted model, each look appended to ``best_models/holdout_ledger.json``; the manifest's
  ``test_metrics``;
* ``selection_record``: how the model was chosen (gate, folds, seeds, hold-out looks), written
  into every fold report and ``evaluation/folds.json``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainer.config import TrainConfig
from trainer.export_manifest import ExportInputs
from trainer.gate import GateDecision


@dataclass
class FoldScores:
    """The staged artifact's validation folds, per symbol and pooled (the gate's evidence)."""

    symbols: list[str]
    bars_of: dict[str, pd.DataFrame]
    plans: dict[str, Any]
    symbol_folds: dict[str, list[Any]]
    # Several symbols: every (symbol, fold) pair is one fold of the gate, so the model's mean
    # is the pooled mean and its worst fold the worst of any symbol.
    folds: list[Any]
    summary: dict[str, Any]


@dataclass
class HoldoutScores:
    """The hold-out step's outcome: ``test_metrics``, the reports scored, the looks so far."""

    numbers: dict[str, Any]
    holdout: Any | None  # the first symbol's result; None when not scored (rejected)
    holdouts: dict[str, Any]
    looks: int  # models scored on this hold-out, this one included
    ledger: Path
    start: str
    end: str | None


def score_folds(cfg: TrainConfig, loaded: Any, common: dict[str, Any], version: str) -> FoldScores:
    from shared.data import load_bars
    from trainer.evaluate import evaluate_folds, fold_summary
    from trainer.selection import selection_plan

    symbols = cfg.symbol_list
    bars_of = {sym: load_bars(cfg.source, sym) for sym in symbols}
    plans = {sym: selection_plan(cfg, bars_of[sym].index) for sym in symbols}
    symbol_folds = {
        sym: evaluate_folds(
            loaded,
            bars=bars_of[sym],
            plan=plans[sym],
            run_name=f"{version}_{sym}_fold" if len(symbols) > 1 else f"{version}_fold",
            **{**common, "symbol": sym},
        )
        for sym in symbols
    }
    folds = [f for sym in symbols for f in symbol_folds[sym]]
    summary = fold_summary(folds, cfg.metric)
    return FoldScores(symbols, bars_of, plans, symbol_folds, folds, summary)


def validation_metrics(
    cfg: TrainConfig, scores: FoldScores, gate: GateDecision, spread: dict[str, Any] | None
) -> dict[str, Any]:
    from trainer.evaluate import fold_summary

    folds, summary = scores.folds, scores.summary
    validation_numbers: dict[str, Any] = {}
    for name in ("model", "buy_and_hold", "ma_crossover"):
        prefix = "" if name == "model" else f"{name}_"
        for key in folds[0].metrics[name]:
            vals = [f.metrics[name].get(key) for f in folds]
            nums = [float(v) for v in vals if isinstance(v, int | float) and math.isfinite(v)]
            if nums and not isinstance(vals[0], bool):
                validation_numbers[f"{prefix}{key}"] = sum(nums) / len(nums)
        validation_numbers[f"{prefix}fold_worst_{cfg.metric}"] = summary[name]["worst"]
        # per symbol, also for one (the results table reads these keys)
        for sym in scores.symbols:
            sym_summary = fold_summary(scores.symbol_folds[sym], cfg.metric)[name]
            validation_numbers[f"{sym}:{prefix}fold_mean_{cfg.metric}"] = sym_summary["mean"]
            validation_numbers[f"{sym}:{prefix}fold_worst_{cfg.metric}"] = sym_summary["worst"]
    validation_numbers.update(gate.numbers())
    if spread and spread.get("chosen_by"):
        validation_numbers.update(
            {k: float(v) for k, v in spread.get("numbers", {}).items() if v is not None}
        )
    elif spread and spread.get("objectives"):
        values = [float(v) for v in spread["objectives"]]
        validation_numbers.update(
            {
                "seed_spread_n": float(len(values)),
                "seed_spread_mean": float(np.mean(values)),
                "seed_spread_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "seed_spread_worst": float(min(values)),
                "seed_spread_best": float(max(values)),
            }
        )
    return validation_numbers


def score_holdout(
    cfg: TrainConfig,
    loaded: Any,
    common: dict[str, Any],
    scores: FoldScores,
    gate: GateDecision,
    validation_numbers: dict[str, Any],
    ledger: Path,
    version: str,
    score_other_seeds: Callable[[str, Path], dict[str, float]] | None,
) -> HoldoutScores:
    from trainer.evaluate import evaluate_model
    from trainer.selection import holdout_count, record_holdout

    symbols, bars_of = scores.symbols, scores.bars_of
    hold_start, hold_end = inclusive_days(cfg.test_start, cfg.test_end)
    hold_key = (cfg.source, cfg.symbol, hold_start, str(hold_end))
    test_numbers: dict[str, Any] = {"gate_passed": validation_numbers["gate_passed"]}
    test_numbers["gate_forced"] = validation_numbers["gate_forced"]
    holdout = None
    holdouts: dict[str, Any] = {}
    if gate.promoted:
        looks = 0
        for sym in symbols:
            scored = evaluate_model(
                loaded,
                bars=bars_of[sym],
                start=hold_start,
                end=hold_end,
                **{**common, "symbol": sym},
            )
            holdouts[sym] = scored
            looks = max(
                looks,
                record_holdout(
                    ledger,
                    version=version,
                    source=cfg.source,
                    symbol=sym,
                    start=hold_start,
                    end=str(hold_end),
                    content_hash=scored.meta["data"]["content_hash"],
                    metrics={n: scored.metrics[n].get(cfg.metric) for n in scored.metrics},
                    forced=gate.forced,
                ),
            )
        holdout = holdouts[symbols[0]]
        test_numbers.update(_pooled_holdout(holdouts))
        # per symbol, also for one (the results table reads these keys)
        for sym, scored in holdouts.items():
            for name in ("model", "buy_and_hold", "ma_crossover"):
                prefix = "" if name == "model" else f"{name}_"
                for key in ("sharpe", "total_return", "max_drawdown"):
                    test_numbers[f"{sym}:{prefix}{key}"] = scored.metrics[name].get(key)
        test_numbers["holdout_scored"] = 1.0
        if score_other_seeds is not None:
            test_numbers.update(score_other_seeds(version, ledger))
            looks = max(
                looks, *(holdout_count(ledger, *hold_key[:1], s, *hold_key[2:]) for s in symbols)
            )
    else:
        looks = max(holdout_count(ledger, cfg.source, sym, *hold_key[2:]) for sym in symbols)
        test_numbers["holdout_scored"] = 0.0
    test_numbers["holdout_models_scored"] = float(looks)
    return HoldoutScores(test_numbers, holdout, holdouts, looks, ledger, hold_start, hold_end)


def selection_record(
    cfg: TrainConfig,
    inputs: ExportInputs,
    scores: FoldScores,
    gate: GateDecision,
    validation_numbers: dict[str, Any],
    hold: HoldoutScores,
) -> dict[str, Any]:
    from trainer.selection import HOLDOUT_WARN

    summary, symbols = scores.summary, scores.symbols
    bars, plan = scores.bars_of[symbols[0]], scores.plans[symbols[0]]
    spread = inputs.seed_spread
    looks = hold.looks
    return {
        "gate": gate.reason,
        "verdict": gate.verdict,
        "forced": gate.forced,
        "validation_folds": {
            k: v for k, v in summary.items() if k in ("metric", "folds", "windows")
        }
        | {n: summary[n] for n in ("model", "buy_and_hold", "ma_crossover")},
        "fold_plan": plan.describe([str(t) for t in bars.index]),
        "symbols": symbols,
        "chosen_by": spread["chosen_by"]
        if spread and spread.get("chosen_by")
        else f"the Tune trial's own seed ({cfg.seed}), retrained with the full budget"
        if inputs.trial_id
        else f"one configured run, seed {cfg.seed} (no search, no seed choice)",
        "seed_spread": spread["report"]
        if spread and spread.get("chosen_by")
        else {
            "seeds": len(spread["objectives"]),
            "objective": f"mean validation-fold {cfg.metric} (Tune budget)",
            "mean": validation_numbers["seed_spread_mean"],
            "std": validation_numbers["seed_spread_std"],
            "worst": validation_numbers["seed_spread_worst"],
            "best": validation_numbers["seed_spread_best"],
        }
        if spread and spread.get("objectives")
        else "not run (only Tune re-runs the chosen config on other seeds)",
        "holdout": {
            "slice": f"{cfg.source}/{','.join(symbols)} {hold.start} -> {hold.end or 'last bar'}",
            "scored": hold.holdout is not None,
            "models_scored_on_it": looks,
            "ledger": str(hold.ledger),
            "warning": f"the hold-out has been scored for {looks} models: its numbers are "
            "optimistic for the ones that are reported"
            if looks > HOLDOUT_WARN
            else "",
        },
    }


def _pooled_holdout(holdouts: dict[str, Any]) -> dict[str, Any]:
    """The model's hold-out metrics and the benchmarks' headline ones, each the equal-weight
    mean over symbols (one symbol: its own numbers)."""
    out: dict[str, Any] = {}
    first = next(iter(holdouts.values()))
    for name in ("model", "buy_and_hold", "ma_crossover"):
        prefix = "" if name == "model" else f"{name}_"
        keys = (
            list(first.metrics[name])
            if name == "model"
            else ["sharpe", "total_return", "max_drawdown", "annualised_return"]
        )
        for key in keys:
            vals = [h.metrics[name].get(key) for h in holdouts.values()]
            nums = [
                float(v) for v in vals if isinstance(v, int | float) and not isinstance(v, bool)
            ]
            finite = [v for v in nums if math.isfinite(v)]
            out[f"{prefix}{key}"] = sum(finite) / len(finite) if finite else None
    return out


def inclusive_days(start: str | None, end: str | None) -> tuple[str, str | None]:
    """TrainConfig slices are [start, end); trainer.evaluate takes inclusive days."""
    if end is None:
        return start or "1970-01-01", None
    last = (dt.date.fromisoformat(end[:10]) - dt.timedelta(days=1)).isoformat()
    return start or "1970-01-01", last
