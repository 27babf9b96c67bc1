"""The study's comparison: ``results.csv``, ``results.md`` and ``results.png`` (``trainer.study``).

One row per variant (mean and sample std over its seeds; an ensemble is one model) and one per
benchmark (Buy-and-Hold, MA crossover: the same folds, bars and costs for every variant), for
validation-fold and hold-out Sharpe, total return, max drawdown and turnover; the Markdown says
which variants did not beat both benchmarks.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

if TYPE_CHECKING:
    from trainer.study import SeedScore, StudyConfig

METRICS = ("sharpe", "total_return", "max_drawdown", "turnover")
BENCHMARK_LABELS = {"buy_and_hold": "Buy-and-Hold", "ma_crossover": "MA crossover"}


def _stats(values: list[float]) -> tuple[float, float]:
    clean = [v for v in values if math.isfinite(v)]
    if not clean:
        return math.nan, math.nan
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def table_rows(study: StudyConfig, scores: list[SeedScore]) -> list[dict[str, Any]]:
    """One row per variant (mean/std over seeds) and one per benchmark (same folds and bars)."""
    rows: list[dict[str, Any]] = []
    bench = scores[0]
    bench_val = {b: bench.validation[b]["sharpe"] for b in BENCHMARK_LABELS}
    bench_hold = {b: bench.holdout[b]["sharpe"] for b in BENCHMARK_LABELS}
    for variant in study.variants:
        mine = [s for s in scores if s.variant == variant.name]
        row: dict[str, Any] = {
            "variant": variant.name,
            "kind": "ensemble" if variant.ensemble_of else variant.policy.kind,
            "n": len(mine),
        }
        for split in ("validation", "holdout"):
            for m in METRICS:
                mean, std = _stats([getattr(s, split)["model"][m] for s in mine])
                row[f"{split}_{m}_mean"], row[f"{split}_{m}_std"] = mean, std
        row["beats_baselines_validation"] = all(
            row["validation_sharpe_mean"] > v for v in bench_val.values()
        )
        row["beats_baselines_holdout"] = all(
            row["holdout_sharpe_mean"] > v for v in bench_hold.values()
        )
        rows.append(row)
    for name, label in BENCHMARK_LABELS.items():
        row = {"variant": label, "kind": "benchmark", "n": 1}
        for split in ("validation", "holdout"):
            for m in METRICS:
                row[f"{split}_{m}_mean"] = getattr(bench, split)[name][m]
                row[f"{split}_{m}_std"] = 0.0
        rows.append(row)
    return rows


def _cell(mean: float, std: float, n: int) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def _symbols(study: StudyConfig) -> list[str]:
    return list(study.base.get("symbols") or [study.base.get("symbol", "AAPL")])


def markdown(study: StudyConfig, rows: list[dict[str, Any]], looks: int, seconds: float) -> str:
    head = ["variant", "kind", "n"] + [
        f"{'val' if split == 'validation' else 'hold-out'} {m}"
        for split in ("validation", "holdout")
        for m in METRICS
    ]
    lines = [
        f"# Study `{study.name}`: {study.description}",
        "",
        f"Symbols {_symbols(study)}; seeds {study.seeds}; mean ± sample std over seeds (an "
        "ensemble is one model); with several symbols one pooled policy per seed, each number "
        "the mean over the symbols' backtests. "
        "Validation: mean over the walk-forward folds; hold-out: the final test slice; both "
        "net of costs with exit costs, from the exported ONNX graphs. Benchmarks on the same "
        f"bars and costs. Models scored on this hold-out so far: {looks}. Run took "
        f"{seconds:.0f}s.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [r["variant"], r["kind"], str(r["n"])]
        for split in ("validation", "holdout"):
            for m in METRICS:
                cells.append(_cell(r[f"{split}_{m}_mean"], r[f"{split}_{m}_std"], r["n"]))
        lines.append("| " + " | ".join(cells) + " |")
    variants = [r for r in rows if r["kind"] != "benchmark"]
    losers = [r["variant"] for r in variants if not r["beats_baselines_validation"]]
    hold_losers = [r["variant"] for r in variants if not r["beats_baselines_holdout"]]
    lines += [
        "",
        "Did not beat both Buy-and-Hold and the MA crossover (mean Sharpe): validation: "
        + (", ".join(losers) or "none")
        + "; hold-out: "
        + (", ".join(hold_losers) or "none")
        + ".",
    ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows)), 4.0))
    for offset, split, label in (
        (-0.2, "validation", "validation folds"),
        (0.2, "holdout", "hold-out"),
    ):
        means = [r[f"{split}_sharpe_mean"] for r in rows]
        stds = [r[f"{split}_sharpe_std"] for r in rows]
        ax.bar(
            x + offset, np.nan_to_num(means), 0.4, yerr=np.nan_to_num(stds), label=label, capsize=3
        )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("Sharpe (net of costs)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(
    study: StudyConfig, scores: list[SeedScore], out: Path, *, looks: int, seconds: float
) -> None:
    import pandas as pd

    rows = table_rows(study, scores)
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    (out / "results.md").write_text(markdown(study, rows, looks, seconds))
    plot(rows, out / "results.png", f"study {study.name}: Sharpe, mean ± std over seeds")
    (out / "study.json").write_text(
        json.dumps(
            {
                "study": msgspec.to_builtins(study),
                "seconds": seconds,
                "holdout_models_scored": looks,
                "scores": [s.__dict__ for s in scores],
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
