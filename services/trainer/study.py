"""Studies: named lists of variants (reward, features, architecture, ensemble vs single), each
trained on the same folds with several seeds and compared in one table (issue 15).

    python -m trainer.study --study smoke [--output-dir .] [--seeds 0,1] [--symbols AAPL,NVDA]
    (make study STUDY=smoke [SYMBOLS=AAPL,AMZN,GOOG,META,NFLX,NVDA])
    python -m trainer.study --list

A study (``StudyConfig``, one typed config in ``STUDIES``) is a budget (``TrainConfig`` overrides
shared by every variant), a seed list and variants. Each variant x seed is trained with the
trainer's own functions (``trainer.train.train`` for an MLP, ``trainer.policies.training`` for
LSTM / attention), exported to ONNX (``trainer.onnx_export.export_onnx`` /
``trainer.policies.onnx``, parity-checked) and scored from the exported graph by
``trainer.evaluate.evaluate_folds`` on the walk-forward validation folds and ``evaluate_model``
on the final hold-out (costs on, exit costs at the end), beside Buy-and-Hold and the MA
crossover on the same bars. An ensemble variant combines another variant's seeds
(``trainer.ensemble``: the top-k by validation Sharpe) into one graph, so it has one score, not
a spread.

Every hold-out look is appended to ``<output-dir>/best_models/holdout_ledger.json`` (the
export's ledger): a study that reads the hold-out for many variants makes it less final, and the
table says how many models have been scored on it.

Output in ``optimization_results/<study>/``: ``results.csv`` and ``results.md`` (mean and sample
std over seeds of validation-fold and hold-out Sharpe, total return, max drawdown, turnover; the
benchmarks' rows; which variants beat both benchmarks), ``results.png``, ``study.json`` (every
seed's numbers) and ``artifacts/`` (every exported graph with its manifest).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np

from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from trainer.config import TrainConfig
from trainer.policies import PolicyConfig
from trainer.progress import say, setup
from trainer.study_report import METRICS, write_results

STRATEGIES = ("model", "buy_and_hold", "ma_crossover")


class StudyVariant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    # TrainConfig fields for this variant only (reward, features, hiddens, ...)
    overrides: dict[str, Any] = msgspec.field(default_factory=dict)
    policy: PolicyConfig = msgspec.field(default_factory=PolicyConfig)
    # An ensemble of another (MLP) variant's seeds: that variant's name; nothing is trained.
    ensemble_of: str = ""
    top_k: int = 0  # members kept by validation Sharpe (0 = every seed)


class StudyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str
    profile: Literal["quick", "full"] = "quick"
    base: dict[str, Any] = msgspec.field(default_factory=dict)  # TrainConfig overrides, all
    seeds: list[int] = msgspec.field(default_factory=lambda: [0, 1, 2])
    variants: list[StudyVariant] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"study {self.name}: variants need unique names, got {names}")
        if not self.seeds:
            raise ValueError(f"study {self.name}: seeds must not be empty")
        trained = {v.name: v for v in self.variants if not v.ensemble_of}
        for v in self.variants:
            if v.ensemble_of:
                member = trained.get(v.ensemble_of)
                if member is None or member.policy.kind != "mlp":
                    raise ValueError(
                        f"study {self.name}: variant {v.name}: ensemble_of must name an MLP "
                        f"variant of this study, got {v.ensemble_of!r}"
                    )
                if len(self.seeds) < 2:
                    raise ValueError(f"study {self.name}: an ensemble needs >= 2 seeds")

    def train_config(self, variant: StudyVariant, seed: int) -> TrainConfig:
        return TrainConfig.profile(self.profile, **{**self.base, **variant.overrides, "seed": seed})


# Tiny budgets: minutes on 2 cores; numbers from it say nothing about the variants.
SMOKE_BUDGET: dict[str, Any] = {
    "iterations": 1,
    "max_env_steps": 0,
    "eval_every": 1,
    "train_batch_size": 1000,
    "minibatch_size": 250,
    "num_epochs": 1,
    "num_envs_per_env_runner": 4,
    "hiddens": [16, 16],
    "symbols": ["AAPL"],
    "torch_threads": 1,
}
QUICK_BUDGET: dict[str, Any] = {"iterations": 10, "symbols": ["AAPL"], "torch_threads": 1}

STUDIES: dict[str, StudyConfig] = {
    s.name: s
    for s in (
        StudyConfig(
            name="smoke",
            description="every kind of variant once, tiny budgets (the code path, not a result)",
            base=SMOKE_BUDGET,
            seeds=[0, 1],
            variants=[
                StudyVariant(name="mlp"),
                StudyVariant(name="mlp_diff_sharpe", overrides={"reward": "diff_sharpe"}),
                StudyVariant(name="lstm", policy=PolicyConfig(kind="lstm", lstm_cell_size=16)),
                StudyVariant(
                    name="attention",
                    policy=PolicyConfig(kind="attention", window=8, d_model=16, ff_size=32),
                ),
                StudyVariant(name="mlp_ensemble", ensemble_of="mlp"),
            ],
        ),
        StudyConfig(
            name="architectures",
            description="MLP vs LSTM vs attention vs an ensemble of the MLP seeds",
            base=QUICK_BUDGET,
            variants=[
                StudyVariant(name="mlp"),
                StudyVariant(name="lstm", policy=PolicyConfig(kind="lstm")),
                StudyVariant(name="attention", policy=PolicyConfig(kind="attention")),
                StudyVariant(name="mlp_ensemble", ensemble_of="mlp"),
            ],
        ),
        StudyConfig(
            name="rewards",
            description="the env's reward functions, MLP policy",
            base=QUICK_BUDGET,
            variants=[
                StudyVariant(name=f"reward_{r}", overrides={"reward": r})
                for r in ("log_return", "pnl", "diff_sharpe", "drawdown")
            ],
        ),
        StudyConfig(
            name="features",
            description="feature look-backs (shorter / default / longer trend and volatility)",
            base=QUICK_BUDGET,
            variants=[
                StudyVariant(name="features_default"),
                StudyVariant(
                    name="features_short",
                    overrides={"features": {"trend_fast": 5, "trend_slow": 20, "vol_long": 60}},
                ),
                StudyVariant(
                    name="features_long",
                    overrides={"features": {"trend_fast": 20, "trend_slow": 100}},
                ),
            ],
        ),
    )
}


# ----------------------------------------------------------------------------- one seed


@dataclass
class SeedScore:
    variant: str
    seed: int | None  # None for an ensemble (one model over several seeds)
    version: str
    validation: dict[str, dict[str, float]]  # strategy -> metric -> mean over folds
    holdout: dict[str, dict[str, float]]  # strategy -> metric
    artifact: str
    extra: dict[str, Any] = field(default_factory=dict)


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _score(
    model: Any, cfg: TrainConfig, version: str, ledger: Path, bars: Any
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Validation folds (mean per metric) and the hold-out, model and benchmarks, from ``model``
    (an ONNX-backed policy object); the hold-out look is recorded in ``ledger``."""
    from trainer.evaluate import evaluate_folds, evaluate_model
    from trainer.export_scoring import inclusive_days
    from trainer.selection import record_holdout, selection_plan

    common: dict[str, Any] = {
        "source": cfg.source,
        "symbol": cfg.symbol,
        "account": cfg.env_config("validation").account(),  # real costs
        "feature_config": FeatureConfig.from_dict(cfg.features),
        "seed": cfg.seed,
        "plots": False,
        # a stateful policy object has no manifest: the rules it was trained under, explicitly
        "risk": cfg.env_config("train").risk or "off",
    }
    folds = evaluate_folds(
        model, bars=bars, plan=selection_plan(cfg, bars.index), run_name=version, **common
    )
    validation = {
        name: {
            m: float(np.nanmean([_num(f.metrics[name].get(m)) for f in folds]))
            if any(math.isfinite(_num(f.metrics[name].get(m))) for f in folds)
            else math.nan
            for m in METRICS
        }
        for name in STRATEGIES
    }
    start, end = inclusive_days(cfg.test_start, cfg.test_end)
    scored = evaluate_model(model, bars=bars, start=start, end=end, **common)
    record_holdout(
        ledger,
        version=version,
        source=cfg.source,
        symbol=cfg.symbol,
        start=start,
        end=str(end),
        content_hash=scored.meta["data"]["content_hash"],
        metrics={n: scored.metrics[n].get(cfg.metric) for n in scored.metrics},
        forced=False,
    )
    holdout = {n: {m: _num(scored.metrics[n].get(m)) for m in METRICS} for n in STRATEGIES}
    return validation, holdout


def _score_symbols(
    model: Any, cfg: TrainConfig, version: str, ledger: Path, bars: dict[str, Any]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], dict[str, Any]]:
    """``_score`` on every symbol of ``cfg`` (one pooled policy); each number is the mean over
    the symbols (an equal-weight portfolio of per-symbol backtests), each symbol's in ``extra``."""
    per: dict[str, Any] = {}
    for symbol in cfg.symbol_list:
        one = cfg.for_symbol(symbol)
        per[symbol] = _score(model, one, version, ledger, bars[symbol])
    if len(per) == 1:
        validation, holdout = next(iter(per.values()))
        return validation, holdout, {}

    def mean(split: int) -> dict[str, dict[str, float]]:
        return {
            n: {m: float(np.nanmean([per[s][split][n][m] for s in per])) for m in METRICS}
            for n in STRATEGIES
        }

    extra = {"per_symbol": {s: {"validation": v, "holdout": h} for s, (v, h) in per.items()}}
    return mean(0), mean(1), extra


def _train_mlp(cfg: TrainConfig, data: Any, root: Path, version: str) -> tuple[Any, Path]:
    """``trainer.train.train`` -> ``export_onnx`` (parity-checked) -> artifact, loaded back."""
    from shared.loaded_model import load_artifact
    from shared.model_store import write_artifact
    from trainer.export_manifest import ExportInputs, build_manifest
    from trainer.onnx_export import check_parity, export_onnx, parity_observations
    from trainer.train import train

    result = train(cfg, data=data, keep_algo=True, label=version)
    try:
        assert result.head is not None
        size = data.train.market.obs.shape[1]
        onnx_bytes = export_onnx(result.head, size)
        positions = tuple(data.train.env_config.action_targets)
        check_parity(
            result.head, onnx_bytes, parity_observations(size, [data.validation], positions)
        )
        inputs = ExportInputs(
            cfg=cfg,
            head=result.head,
            normaliser=data.normaliser,
            slices={"train": data.train, "validation": data.validation},
            seeds={"train": cfg.seed},
            provenance={"producer": "trainer.study"},
        )
        manifest = build_manifest(inputs, version, validation_metrics=result.validation)
    finally:
        result.algo.stop()
    folder = write_artifact(root, manifest, onnx_bytes, overwrite=True)
    return load_artifact(folder, FeaturePipeline(FeatureConfig.from_dict(cfg.features))), folder


def _train_stateful(
    cfg: TrainConfig, policy: PolicyConfig, data: Any, root: Path, version: str
) -> tuple[Any, Path]:
    """``train_stateful`` -> ``export_stateful`` (500-step parity) -> artifact + ONNX policy."""
    from shared.model_store import write_artifact
    from trainer.export_manifest import ExportInputs, build_manifest
    from trainer.onnx_export import ExportError
    from trainer.policies.onnx import (
        OnnxStepper,
        StatefulHead,
        export_stateful,
        policy_spec,
        sequence_parity,
    )
    from trainer.policies.training import StatefulOnnxPolicy, train_stateful

    run = train_stateful(cfg, policy, data=data, label=version)
    size = data.train.market.obs.shape[1]
    onnx_bytes = export_stateful(run.module, policy.kind, size)
    spec = policy_spec(run.module, policy)
    base, valid = data.validation.observations
    seq = base[valid][:500, None, :]  # real observations, in order, position 0
    worst = sequence_parity(
        StatefulHead(run.module, policy.kind), OnnxStepper(onnx_bytes, spec), seq
    )
    if max(worst.values()) > 1e-5:
        raise ExportError(f"{version}: ONNX/torch sequence parity {worst} exceeds 1e-5")
    inputs = ExportInputs(
        cfg=cfg,
        head=None,  # type: ignore[arg-type]  # build_manifest reads no head
        normaliser=data.normaliser,
        slices={"train": data.train, "validation": data.validation},
        seeds={"train": cfg.seed},
        provenance={"producer": "trainer.study", "policy": policy.kind},
    )
    manifest = msgspec.structs.replace(build_manifest(inputs, version), policy=spec)
    folder = write_artifact(root, manifest, onnx_bytes, overwrite=True)
    model = StatefulOnnxPolicy(
        onnx_bytes,
        spec,
        data.normaliser,
        FeatureConfig.from_dict(cfg.features),
        list(data.train.env_config.action_targets),
        version,
    )
    return model, folder


# ----------------------------------------------------------------------------- the study


def run_study(
    study: StudyConfig,
    output_dir: str | Path = ".",
    *,
    seeds: list[int] | None = None,
    symbols: list[str] | None = None,
) -> Path:
    """Train and score every variant x seed; write the table, plot and JSON; returns the folder."""
    from shared.data import load_bars
    from shared.loaded_model import load_artifact
    from trainer.ensemble import build_ensemble
    from trainer.train import prepare_data

    t0 = time.perf_counter()
    if seeds:
        study = msgspec.structs.replace(study, seeds=list(seeds))
    if symbols:  # one pooled policy per variant x seed, scored on each symbol
        base = {**study.base, "symbol": symbols[0], "symbols": list(symbols)}
        study = msgspec.structs.replace(study, base=base)
    out = Path(output_dir) / "optimization_results" / study.name
    artifacts = out / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    ledger = Path(output_dir) / "best_models" / "holdout_ledger.json"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    scores: list[SeedScore] = []
    folders: dict[str, list[Path]] = {}
    for variant in study.variants:
        if variant.ensemble_of:
            continue
        cfg0 = study.train_config(variant, study.seeds[0])
        data = prepare_data(cfg0)  # the same slices and normaliser for every seed
        bars = {s: load_bars(cfg0.source, s) for s in cfg0.symbol_list}
        for seed in study.seeds:
            cfg = study.train_config(variant, seed)
            version = f"{study.name}_{variant.name}_seed{seed}"
            if variant.policy.kind == "mlp":
                model, folder = _train_mlp(cfg, data, artifacts, version)
            else:
                model, folder = _train_stateful(cfg, variant.policy, data, artifacts, version)
            folders.setdefault(variant.name, []).append(folder)
            validation, holdout, extra = _score_symbols(model, cfg, version, ledger, bars)
            scores.append(
                SeedScore(variant.name, seed, version, validation, holdout, str(folder), extra)
            )
            say("study", f"{version}: validation sharpe {validation['model']['sharpe']:.3f}")
    for variant in study.variants:
        if not variant.ensemble_of:
            continue
        cfg = study.train_config(variant, study.seeds[0])
        version = f"{study.name}_{variant.name}"
        folder = build_ensemble(
            folders[variant.ensemble_of],
            artifacts,
            version=version,
            k=variant.top_k or None,
            by=f"fold_mean_{cfg.metric}",
        )
        model = load_artifact(folder, FeaturePipeline(FeatureConfig.from_dict(cfg.features)))
        bars = {s: load_bars(cfg.source, s) for s in cfg.symbol_list}
        validation, holdout, extra = _score_symbols(model, cfg, version, ledger, bars)
        members = model.manifest.policy.members if model.manifest.policy else []
        scores.append(
            SeedScore(
                variant.name,
                None,
                version,
                validation,
                holdout,
                str(folder),
                {"members": members, **extra},
            )
        )
    from trainer.selection import holdout_count

    first = study.train_config(study.variants[0], study.seeds[0])
    start, end = _hold_key(first)
    looks = holdout_count(ledger, first.source, first.symbol, start, end)
    write_results(study, scores, out, looks=looks, seconds=time.perf_counter() - t0)
    say("study", f"{study.name}: {len(scores)} models scored in {time.perf_counter() - t0:.0f}s")
    return out


def _hold_key(cfg: TrainConfig) -> tuple[str, str]:
    from trainer.export_scoring import inclusive_days

    start, end = inclusive_days(cfg.test_start, cfg.test_end)
    return start, str(end)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--study", default="smoke", help=f"one of {sorted(STUDIES)}")
    parser.add_argument("--output-dir", default=".")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the study's)")
    parser.add_argument(
        "--symbols",
        default="",
        help="comma-separated symbols: one pooled policy per variant x seed, scored on each "
        "(numbers are the mean over symbols); default: the study's (AAPL)",
    )
    parser.add_argument("--list", action="store_true", help="list the studies and exit")
    parser.add_argument("--json", action="store_true", help="JSON log lines")
    args = parser.parse_args(argv)
    if args.list:
        for name, s in STUDIES.items():
            print(f"{name}: {s.description} ({', '.join(v.name for v in s.variants)})")
        return 0
    if args.study not in STUDIES:
        raise SystemExit(f"STUDY={args.study!r} is not a study; choose one of {sorted(STUDIES)}")
    setup(args.json)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or None
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] or None
    out = run_study(STUDIES[args.study], args.output_dir, seeds=seeds, symbols=symbols)
    print((out / "results.md").read_text())
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
