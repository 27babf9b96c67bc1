"""Promotion gate: a model is pushed only if it beats both benchmarks on the validation folds.

``fold_gate`` (what ``make train`` uses) reads the walk-forward validation folds only, never the
final hold-out: the model must beat Buy-and-Hold and the MA crossover on the MEAN fold metric and
on the WORST fold, each benchmark scored on the same folds with the same costs.
``promotion_gate`` is the single-slice rule it is built from.

The numbers come from ``trainer.evaluate.evaluate_model`` (same bars, same costs for every
strategy). The model must be STRICTLY better than Buy-and-Hold and than the MA crossover on the
configured metric (Sharpe net of costs by default). An undefined ratio (a strategy that never
trades has no return variance) counts as 0, the same rule as Tune's objective. ``force=True``
promotes a model that failed; the verdict's reason then starts with ``FORCED`` and the caller
logs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

BENCHMARKS = ("buy_and_hold", "ma_crossover")


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    verdict: str  # "promoted" | "rejected" (shared.manifest.Promotion.verdict)
    reason: str
    metric: str
    model_value: float
    benchmark_values: dict[str, float] = field(default_factory=dict)
    forced: bool = False
    passed: bool = False  # the gate itself (before --force)
    folds: int = 0  # validation folds it was decided on (0: a single slice)
    model_worst: float | None = None
    benchmark_worst: dict[str, float] = field(default_factory=dict)

    def numbers(self) -> dict[str, float]:
        """Flat numbers for the manifest's metrics."""
        out = {f"gate_model_{self.metric}": self.model_value}
        out.update({f"gate_{k}_{self.metric}": v for k, v in self.benchmark_values.items()})
        if self.folds:
            out["gate_folds"] = float(self.folds)
            out[f"gate_model_worst_{self.metric}"] = float(self.model_worst or 0.0)
            out.update(
                {f"gate_{k}_worst_{self.metric}": v for k, v in self.benchmark_worst.items()}
            )
        out["gate_passed"] = 1.0 if self.passed else 0.0
        out["gate_forced"] = 1.0 if self.forced else 0.0
        return out


def _value(metrics: dict[str, Any] | None, metric: str) -> float:
    if not metrics:
        return 0.0
    raw = metrics.get(metric)
    try:
        value = float(raw) if raw is not None else math.nan
    except (TypeError, ValueError):
        value = math.nan
    return value if math.isfinite(value) else 0.0


def promotion_gate(
    strategies: dict[str, dict[str, Any]],
    metric: str = "sharpe",
    *,
    force: bool = False,
    benchmarks: tuple[str, ...] = BENCHMARKS,
) -> GateDecision:
    """Decide from ``{"model": {...}, "buy_and_hold": {...}, "ma_crossover": {...}}`` metrics."""
    if "model" not in strategies:
        raise ValueError("promotion_gate needs the model's metrics (key 'model')")
    missing = [b for b in benchmarks if b not in strategies]
    if missing:
        raise ValueError(f"promotion_gate: benchmark metrics missing: {missing}")
    model = _value(strategies["model"], metric)
    bench = {b: _value(strategies[b], metric) for b in benchmarks}
    beaten = [b for b, v in bench.items() if model > v]
    passed = len(beaten) == len(bench)
    table = ", ".join(f"{b} {v:.4f}" for b, v in bench.items())
    if passed:
        reason = f"test {metric} {model:.4f} beats {table}"
    else:
        lost = [b for b in bench if b not in beaten]
        reason = f"test {metric} {model:.4f} does not beat {', '.join(lost)} ({table})"
    if not passed and force:
        reason = f"FORCED: {reason}"
    promoted = passed or force
    return GateDecision(
        promoted=promoted,
        verdict="promoted" if promoted else "rejected",
        reason=reason,
        metric=metric,
        model_value=model,
        benchmark_values=bench,
        forced=force and not passed,
        passed=passed,
    )


def fold_gate(
    folds: list[dict[str, dict[str, Any]]],
    metric: str = "sharpe",
    *,
    force: bool = False,
    benchmarks: tuple[str, ...] = BENCHMARKS,
) -> GateDecision:
    """Decide from one ``{"model": {...}, "buy_and_hold": {...}, ...}`` per validation fold.

    Passed only when the model's mean fold metric AND its worst fold are strictly above each
    benchmark's mean and worst fold on the same folds (an undefined ratio counts as 0).
    """
    if not folds:
        raise ValueError("fold_gate needs at least one validation fold")
    for k, fold in enumerate(folds):
        missing = [b for b in ("model", *benchmarks) if b not in fold]
        if missing:
            raise ValueError(f"fold_gate: fold {k} lacks metrics for {missing}")
    values = {
        name: [_value(fold[name], metric) for fold in folds] for name in ("model", *benchmarks)
    }
    mean = {name: sum(v) / len(v) for name, v in values.items()}
    worst = {name: min(v) for name, v in values.items()}
    lost = [
        f"{b} ({'mean' if mean['model'] <= mean[b] else 'worst fold'})"
        for b in benchmarks
        if not (mean["model"] > mean[b] and worst["model"] > worst[b])
    ]
    passed = not lost
    table = ", ".join(f"{b} {mean[b]:.4f}/{worst[b]:.4f}" for b in benchmarks)
    head = (
        f"validation {metric} over {len(folds)} folds, model mean/worst "
        f"{mean['model']:.4f}/{worst['model']:.4f}"
    )
    reason = (
        f"{head} beats {table}" if passed else f"{head} does not beat {', '.join(lost)}: {table}"
    )
    if not passed and force:
        reason = f"FORCED: {reason}"
    promoted = passed or force
    return GateDecision(
        promoted=promoted,
        verdict="promoted" if promoted else "rejected",
        reason=reason,
        metric=metric,
        model_value=mean["model"],
        benchmark_values={b: mean[b] for b in benchmarks},
        forced=force and not passed,
        passed=passed,
        folds=len(folds),
        model_worst=worst["model"],
        benchmark_worst={b: worst[b] for b in benchmarks},
    )
