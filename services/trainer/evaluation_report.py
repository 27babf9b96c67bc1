"""What an evaluation wrote and printed: its result, the output folder, the pooled symbol table.

``EvaluationResult`` is what ``trainer.evaluate.evaluate_model`` returns; ``write_outputs``
writes its folder (``metrics.json``, ``trades.csv``, ``fills.csv``, ``equity.csv``, PNG plots and
``report.html``); ``pool_symbols`` / ``pooled_table`` summarise several symbols' results
(``symbols.json`` and the table the CLI prints); ``log_result`` logs one result. These change
when the report's format does, not when what is scored does.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.backtest import BacktestResult

__all__ = [
    "STRATEGY_ORDER",
    "EvaluationResult",
    "clean_json",
    "log_result",
    "pool_symbols",
    "pooled_table",
    "write_outputs",
]

STRATEGY_ORDER = ("model", "buy_and_hold", "ma_crossover")


@dataclass
class EvaluationResult:
    """What ``evaluate_model`` computed (and wrote, when it had an output folder)."""

    metrics: dict[str, dict[str, float | None]]
    results: dict[str, BacktestResult]
    meta: dict[str, Any]
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return {**self.meta, "strategies": self.metrics}

    def summary(self) -> str:
        keys = ("total_return", "annualised_return", "sharpe", "max_drawdown", "n_trades")
        lines = [f"{'strategy':<14}" + "".join(f"{k:>19}" for k in keys)]
        for name, m in self.metrics.items():
            cells = "".join(
                f"{m.get(k):>19.4f}" if isinstance(m.get(k), float) else f"{'-':>19}" for k in keys
            )
            lines.append(f"{name:<14}{cells}")
        return "\n".join(lines)


def clean_json(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, timestamps -> ISO strings."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def write_outputs(result: EvaluationResult, out_dir: Path, *, plots: bool = True) -> None:
    """metrics.json, trades.csv, fills.csv, equity.csv, PNGs and report.html into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    path = out_dir / "metrics.json"
    path.write_text(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    files["metrics"] = path

    ordered = [result.results[k] for k in STRATEGY_ORDER if k in result.results]
    trades = pd.concat([r.trades.assign(strategy=r.name) for r in ordered], ignore_index=True)
    trades = trades[["strategy", *[c for c in trades.columns if c != "strategy"]]]
    files["trades"] = out_dir / "trades.csv"
    trades.to_csv(files["trades"], index=False, float_format="%.17g")
    fills = pd.concat([r.fills.assign(strategy=r.name) for r in ordered], ignore_index=True)
    fills = fills[["strategy", *[c for c in fills.columns if c != "strategy"]]]
    files["fills"] = out_dir / "fills.csv"
    fills.to_csv(files["fills"], index=False, float_format="%.17g")
    equity = pd.DataFrame({r.name: r.equity for r in ordered}, index=ordered[0].index)
    equity["close"] = ordered[0].close
    files["equity"] = out_dir / "equity.csv"
    equity.to_csv(files["equity"], float_format="%.17g")

    if plots:
        from shared import report

        primary = result.results.get("model") or result.results["ma_crossover"]
        data = result.meta["data"]
        title = f"{data['symbol']} {data['first_bar'][:10]} -> {data['last_bar'][:10]}"
        images = [
            ("Equity curves", report.plot_equity(ordered, out_dir / "equity.png", title)),
            ("Drawdowns", report.plot_drawdowns(ordered, out_dir / "drawdown.png")),
            (
                f"Position and trades: {primary.name}",
                report.plot_positions(primary, out_dir / "positions.png"),
            ),
            (
                f"Monthly returns: {primary.name}",
                report.plot_monthly_heatmap(primary, out_dir / "monthly_returns.png"),
            ),
            (
                "Return distribution",
                report.plot_return_distribution(ordered, out_dir / "returns_hist.png"),
            ),
        ]
        for _caption, img in images:
            files[img.stem] = img
        meta = result.meta
        flat = {
            "run": meta["run"],
            "data": f"{data['source']}/{data['symbol']} {data['first_bar']} -> "
            f"{data['last_bar']} ({data['rows']} bars)",
            "data content_hash": data["content_hash"],
            "MA grid-search slice": f"{data['train']['start']} -> {data['train']['end']} "
            f"({data['train']['rows']} bars)",
            "MA windows": f"{meta['ma_crossover']['fast']}/{meta['ma_crossover']['slow']} "
            f"(best {meta['ma_crossover']['objective']} on the training slice)",
            "model": json.dumps(meta["model"]),
            "account and costs": json.dumps(meta["account"]),
            "exit costs at the end": "charged (every strategy)"
            if meta.get("exit_costs")
            else "NOT charged (--no-exit-costs)",
            "seeds": json.dumps(meta["seeds"]),
            "git revision": meta["git_revision"],
        }
        for key, value in (meta.get("selection") or {}).items():
            flat[f"selection: {key}"] = value if isinstance(value, str) else json.dumps(value)
        files["report"] = report.write_html(
            out_dir / "report.html",
            title=f"Evaluation {meta['run']}",
            metrics=result.metrics,
            images=images,
            meta=flat,
            trades=trades,
        )
    result.out_dir = out_dir
    result.files = files


def pool_symbols(results: dict[str, EvaluationResult]) -> dict[str, Any]:
    """Per-symbol metrics and their equal-weight mean / worst symbol, per strategy."""
    keys = ("total_return", "annualised_return", "sharpe", "max_drawdown", "n_trades")
    per = {
        sym: {n: {k: m.get(k) for k in keys} for n, m in r.metrics.items()}
        for sym, r in results.items()
    }
    strategies = list(next(iter(results.values())).metrics)
    pooled: dict[str, Any] = {}
    for name in strategies:
        pooled[name] = {}
        for k in keys:
            vals = [float(per[s][name][k] or 0.0) for s in per if name in per[s]]
            pooled[name][f"{k}_mean"] = sum(vals) / len(vals)
            if k == "max_drawdown":
                pooled[name][f"{k}_largest"] = max(vals)
            elif k == "n_trades":
                pooled[name][f"{k}_min"] = min(vals)
            else:
                pooled[name][f"{k}_worst"] = min(vals)
    beats = {
        sym: all(
            float(per[sym]["model"]["sharpe"] or 0.0) > float(per[sym][b]["sharpe"] or 0.0)
            for b in ("buy_and_hold", "ma_crossover")
        )
        for sym in per
        if "model" in per[sym]
    }
    return clean_json(
        {
            "symbols": list(per),
            "per_symbol": per,
            "pooled": pooled,
            "model_beats_both_on_sharpe": beats,
            "data": {s: r.meta["data"] for s, r in results.items()},
        }
    )


def pooled_table(pooled: dict[str, Any]) -> str:
    lines = [f"{'symbol':<8}{'strategy':<14}{'total_return':>14}{'sharpe':>10}{'max_dd':>10}"]
    for sym, strategies in pooled["per_symbol"].items():
        for name, m in strategies.items():
            cells = "".join(
                f"{m[k]:>{w}.4f}" if isinstance(m[k], float) else f"{'-':>{w}}"
                for k, w in (("total_return", 14), ("sharpe", 10), ("max_drawdown", 10))
            )
            lines.append(f"{sym:<8}{name:<14}{cells}")
    for name, m in pooled["pooled"].items():
        lines.append(
            f"{'mean':<8}{name:<14}{m['total_return_mean']:>14.4f}{m['sharpe_mean']:>10.4f}"
            f"{m['max_drawdown_mean']:>10.4f}"
        )
    return "\n".join(lines)


def log_result(log: Any, result: EvaluationResult, out_dir: Path) -> None:
    from shared.logs import event

    for name, m in result.metrics.items():
        event(
            log,
            "evaluation_strategy",
            strategy=name,
            total_return=m.get("total_return"),
            sharpe=m.get("sharpe"),
            max_drawdown=m.get("max_drawdown"),
            n_trades=m.get("n_trades"),
        )
    event(log, "evaluation_written", out_dir=str(out_dir), files=sorted(result.files))
    print(f"{result.meta['data']['symbol']}:\n{result.summary()}", file=sys.stderr)
