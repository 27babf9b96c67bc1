"""Export a trained policy for serving and paper trading (the seed's export_for_paper_trading).

    python -m trainer.export [--run runs/<run>] [--trial-id ID] [--force] [--no-paper]
    (without --run: the newest run under --output-dir)
    python -m trainer.export --from-tune optimization_results/<run>

Steps:

1. ONNX: the policy's deterministic action head (``trainer.policy_head.PolicyHead``: the RLModule's
   ``forward_inference`` action logits, DQN's Q-values, or a Gaussian's mean) is wrapped in a
   ``torch.nn.Module`` and exported with ``torch.onnx.export(..., dynamo=False)``; input ``obs``
   (batch, features + position), output ``logits`` (batch, actions).
2. Parity: onnxruntime and torch are compared on 1,000 random observations and on every real
   observation of the train and validation slices (at every position; never the hold-out); a
   difference above 1e-5 refuses the export (``ExportError``).
3. Promotion gate (``trainer.gate.fold_gate``): the model and both benchmarks are scored on the
   walk-forward validation folds (``trainer.selection``; bars from ``val_end`` on are not even
   handed over); promoted only when the model's mean AND worst fold beat both benchmarks', or
   with ``--force`` (logged, recorded as ``gate_forced`` and in the verdict's reason).
4. Final hold-out (the ``test`` slice): scored ONCE, only for a promoted model, after the
   decision; the score is appended to ``best_models/holdout_ledger.json`` and the manifest's
   ``test_metrics`` carry it with ``holdout_models_scored`` (how many models have looked at this
   hold-out, this one included). A rejected model never reads the hold-out.
   ``best_models/<version>/``: ``model.onnx`` + ``manifest.json`` (``ModelManifest``:
   observation spec, feature config + normaliser, action meaning, data hashes, seeds, git
   revision, Tune trial id, fold metrics and gate numbers in ``validation_metrics``, hold-out
   numbers in ``test_metrics``, the promotion verdict) and ``evaluation/``: ``folds.json`` and
   ``folds/fold_<k>/`` (each fold's report) and, when scored, the hold-out report
   (``metrics.json``, ``report.html``: model vs Buy-and-Hold vs MA crossover, same bars and
   costs, exit costs at the end).
5. ``paper_trading/models/model_YYYYMMDDHHMMSS/`` (a copy of the artifact) and
   ``paper_trading/paper_trading_config.json`` (``shared.paper_config``): the file execution reads
   today (the existing one, else the example) with the new model folder and the model's symbol
   added, never a symbol removed; every changed key is printed, the old file kept as
   ``paper_trading_config.previous.json``.

The version is ``model_YYYYMMDDHHMMSS`` (UTC) everywhere, so the folder name equals
``manifest.version`` in both places (``shared.loaded_model.load_artifact`` checks it).

Where the steps live: ONNX and parity in ``trainer.onnx_export``, the manifest in
``trainer.export_manifest``, the folds, gate numbers and hold-out in ``trainer.export_scoring``,
the paper-trading copy and config in ``trainer.paper_export``; ``export_model`` below runs them
in this order, top to bottom.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.manifest import ModelManifest, Promotion
from shared.model_store import write_artifact
from trainer.config import TrainConfig
from trainer.export_manifest import ExportInputs, build_manifest, new_version
from trainer.export_scoring import (
    FoldScores,
    HoldoutScores,
    score_folds,
    score_holdout,
    selection_record,
    validation_metrics,
)
from trainer.gate import GateDecision
from trainer.onnx_export import check_parity, export_onnx, parity_observations
from trainer.paper_export import write_paper_trading
from trainer.policy_head import PolicyHead
from trainer.progress import say, setup


@dataclass
class ExportResult:
    version: str
    artifact: Path
    manifest: ModelManifest
    gate: GateDecision
    parity: float
    evaluation_dir: Path | None
    paper_dir: Path | None
    paper_config: Path | None
    paper_changes: list[str] | None = None  # "key: old -> new" for the paper config


def export_model(
    inputs: ExportInputs,
    output_dir: str | Path = ".",
    *,
    force: bool = False,
    paper: bool = True,
    plots: bool = True,
    version_suffix: str = "",
    score_other_seeds: Callable[[str, Path], dict[str, float]] | None = None,
) -> ExportResult:
    """ONNX + parity + evaluation + gate + ``best_models/<version>/`` (+ paper trading copy).

    ``score_other_seeds(version, ledger)``: called only for a promoted model, after the gate
    and the model's own hold-out: scores the other seeds' policies on the hold-out (recording
    each look in the ledger) and returns numbers for the manifest's ``test_metrics``."""
    from trainer.gate import fold_gate
    from trainer.selection import HOLDOUT_WARN, LEDGER_FILE

    cfg = inputs.cfg
    out = Path(output_dir)
    best_root = out / "best_models"
    best_root.mkdir(parents=True, exist_ok=True)
    version = new_version(best_root, suffix=version_suffix)

    # 1. ONNX, refused unless onnxruntime matches torch
    onnx_bytes, parity = checked_onnx(inputs, version)

    # 2. the artifact staged and loaded back exactly as inference would load it
    staging = best_root / ".staging"
    loaded, common = stage_artifact(inputs, version, onnx_bytes, staging)

    # 3. the walk-forward validation folds and the promotion gate on them
    scores = score_folds(cfg, loaded, common, version)
    gate = fold_gate([f.metrics for f in scores.folds], cfg.metric, force=force)
    if gate.forced:
        say("gate", f"{version}: promotion FORCED by --force: {gate.reason}", level="warning")
    else:
        say("gate", f"{version}: {gate.verdict}: {gate.reason}")
    validation_numbers = validation_metrics(cfg, scores, gate, inputs.seed_spread)

    # 4. the final hold-out: scored once, only for a promoted model, after the decision
    hold = score_holdout(
        cfg,
        loaded,
        common,
        scores,
        gate,
        validation_numbers,
        best_root / LEDGER_FILE,
        version,
        score_other_seeds,
    )
    selection = selection_record(cfg, inputs, scores, gate, validation_numbers, hold)
    if hold.looks > HOLDOUT_WARN:
        say("gate", selection["holdout"]["warning"], level="warning")

    # 5. the artifact: best_models/<version>/ (model.onnx + manifest.json), opened back
    manifest = build_manifest(
        inputs,
        version,
        validation_metrics=validation_numbers,
        test_metrics=hold.numbers,
        promotion=Promotion(verdict=gate.verdict, reason=gate.reason),  # type: ignore[arg-type]
    )
    artifact = write_artifact(best_root, manifest, onnx_bytes)
    shutil.rmtree(staging, ignore_errors=True)
    final = load_artifact(artifact, FeaturePipeline(common["feature_config"]))  # it opens
    manifest = final.manifest

    # 6. the reports: every fold, and the hold-out when it was scored
    evaluation_dir = write_evaluation(artifact, version, scores, selection, hold, gate, plots)

    # 7. paper trading: the artifact copied where execution loads it, and its config
    paper_dir = paper_config = None
    paper_changes: list[str] | None = None
    if paper:
        paper_dir, paper_config, paper_changes = write_paper_trading(
            out / "paper_trading", artifact, cfg.symbol_list
        )
    holdout = hold.holdout
    say(
        "export",
        f"{version} written: {artifact}  validation folds mean {cfg.metric}: model "
        f"{gate.model_value:.3f} | "
        + " | ".join(f"{k} {v:.3f}" for k, v in gate.benchmark_values.items())
        + (
            f"; hold-out {cfg.metric} model {holdout.metrics['model'].get(cfg.metric)} "
            f"(models scored on this hold-out: {hold.looks})"
            if holdout is not None
            else "; hold-out not scored (rejected)"
        ),
    )
    return ExportResult(
        version,
        artifact,
        manifest,
        gate,
        parity,
        evaluation_dir,
        paper_dir,
        paper_config,
        paper_changes,
    )


def checked_onnx(inputs: ExportInputs, version: str) -> tuple[bytes, float]:
    """The head as ONNX bytes, and its max |onnxruntime - torch| on 1,000 random observations
    and every real one of the train and validation slices (never the hold-out) at every
    position; ``ExportError`` above the tolerance."""
    cfg = inputs.cfg
    obs_size = inputs.slices["train"].market.obs.shape[1]
    onnx_bytes = export_onnx(inputs.head, obs_size)
    positions = (
        inputs.slices["train"].env_config.action_targets
        if cfg.action_space == "discrete"
        else (-1.0, 0.0, 1.0)
    )
    obs = parity_observations(
        obs_size, [inputs.slices["train"], inputs.slices["validation"]], positions
    )
    parity = check_parity(inputs.head, onnx_bytes, obs)
    say(
        "export",
        f"{version}: ONNX parity vs torch max |diff| = {parity:.2e} on {len(obs):,} observations",
    )
    return onnx_bytes, parity


def stage_artifact(
    inputs: ExportInputs, version: str, onnx_bytes: bytes, staging: Path
) -> tuple[Any, dict[str, Any]]:
    """The artifact written to ``staging`` with a candidate manifest and loaded back, and the
    evaluation arguments every scoring step shares."""
    cfg = inputs.cfg
    shutil.rmtree(staging, ignore_errors=True)
    folder = write_artifact(staging, build_manifest(inputs, version), onnx_bytes)
    feature_config = FeatureConfig.from_dict(cfg.features)
    loaded = load_artifact(folder, FeaturePipeline(feature_config))
    account = inputs.slices["validation"].env_config.account()  # real costs, not the training scale
    common: dict[str, Any] = {
        "source": cfg.source,
        "symbol": cfg.symbol,
        "account": account,
        "feature_config": feature_config,
        "seed": cfg.seed,
    }
    return loaded, common


def write_evaluation(
    artifact: Path,
    version: str,
    scores: FoldScores,
    selection: dict[str, Any],
    hold: HoldoutScores,
    gate: GateDecision,
    plots: bool,
) -> Path:
    """``<artifact>/evaluation/``: ``folds.json``, ``folds/fold_<k>/`` (under the symbol when
    several) and the hold-out report(s), or ``HOLDOUT_NOT_SCORED.txt`` for a rejected model."""
    from trainer.evaluation_report import write_outputs

    symbols, holdout = scores.symbols, hold.holdout
    evaluation_dir = artifact / "evaluation"
    evaluation_dir.mkdir(parents=True, exist_ok=True)
    for sym in symbols:
        sym_dir = evaluation_dir / "folds" / (sym if len(symbols) > 1 else "")
        for k, fold in enumerate(scores.symbol_folds[sym]):
            fold.meta["selection"] = selection
            write_outputs(fold, sym_dir / f"fold_{k}", plots=False)
    (evaluation_dir / "folds.json").write_text(
        json.dumps({"selection": selection}, indent=2, default=str) + "\n"
    )
    if holdout is not None and len(symbols) == 1:
        holdout.meta["run"] = f"{version}_holdout"
        holdout.meta["selection"] = selection
        write_outputs(holdout, evaluation_dir, plots=plots)
    elif holdout is not None:
        from trainer.evaluation_report import pool_symbols

        for sym, scored in hold.holdouts.items():
            scored.meta["run"] = f"{version}_{sym}_holdout"
            scored.meta["selection"] = selection
            write_outputs(scored, evaluation_dir / "holdout" / sym, plots=plots)
        (evaluation_dir / "holdout" / "symbols.json").write_text(
            json.dumps(pool_symbols(hold.holdouts), indent=2, default=str) + "\n"
        )
    else:
        (evaluation_dir / "HOLDOUT_NOT_SCORED.txt").write_text(
            f"{version} was rejected by the gate ({gate.reason}); the final hold-out was not "
            "read for it.\n"
        )
    return evaluation_dir


# ----------------------------------------------------------------------------- CLI


def inputs_from_run(run: Path, trial_id: str = "") -> ExportInputs:
    """Rebuild the export inputs from a ``trainer.train`` run folder (checkpoint + config)."""
    from trainer.policy_head import load_module
    from trainer.train_data import load_slice

    cfg = TrainConfig.from_dict(json.loads((run / "train_config.json").read_text()))
    normaliser = json.loads((run / "normaliser.json").read_text())
    module = load_module(run / "checkpoint")
    head = PolicyHead(module, cfg.algorithm, cfg.action_space == "discrete")
    slices = {
        split: load_slice(cfg, split, normaliser) for split in ("train", "validation", "test")
    }
    # A pipeline's seed runs sit in <search>/final/seed_<n>/, under the search's best_trial.json
    # (trial id, search seed); older final runs sat right next to it.
    found = [p / "best_trial.json" for p in (run.parent, run.parent.parent)]
    best_file = next((f for f in found if f.exists()), None)
    best = json.loads(best_file.read_text()) if best_file is not None else {}
    seeds = {"train": cfg.seed}
    if "search_seed" in best:
        seeds["tune_search"] = int(best["search_seed"])
    return ExportInputs(
        cfg=cfg,
        head=head,
        normaliser=normaliser,
        slices=slices,
        seeds=seeds,
        trial_id=trial_id or best.get("trial_id", ""),
        provenance={"run": str(run)},
    )


def latest_run(output_dir: Path) -> Path:
    """The newest trained run: ``optimization_results/*/final`` or ``runs/*`` with a checkpoint."""
    candidates = [
        p.parent
        for pattern in ("optimization_results/*/final/checkpoint", "runs/*/checkpoint")
        for p in output_dir.glob(pattern)
        if (p.parent / "train_config.json").exists()
    ]
    if not candidates:
        raise SystemExit(
            f"no trained run under {output_dir} (optimization_results/*/final or runs/*): "
            "run `make train` or pass --run"
        )
    return max(candidates, key=lambda p: (p / "train_config.json").stat().st_mtime)


def resolve_run(args: argparse.Namespace) -> tuple[Path, str]:
    if args.run:
        return Path(args.run), args.trial_id or ""
    if not args.from_tune:
        run = latest_run(Path(args.output_dir))
        best = run.parent / "best_trial.json"
        trial = json.loads(best.read_text()).get("trial_id", "") if best.exists() else ""
        return run, args.trial_id or trial
    opt = Path(args.from_tune)
    best = json.loads((opt / "best_trial.json").read_text())
    for candidate in (
        opt / "final",
        Path(best.get("export_run", "")) if best.get("export_run") else None,
    ):
        if candidate is not None and (candidate / "checkpoint").exists():
            return candidate, args.trial_id or best.get("trial_id", "")
    raise SystemExit(f"{opt}: no trained run with a checkpoint (final/ or export_run)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.export", description=__doc__.split("\n")[0]
    )
    src = parser.add_mutually_exclusive_group()
    src.add_argument(
        "--run",
        help="a trainer.train run folder (train_config.json + checkpoint/); "
        "default: the newest run under --output-dir",
    )
    src.add_argument("--from-tune", help="an optimization_results/<run> folder")
    parser.add_argument("--trial-id", default="", help="Tune trial id to record")
    parser.add_argument(
        "--output-dir", default=".", help="where best_models/ and paper_trading/ go"
    )
    parser.add_argument(
        "--force", action="store_true", help="promote even if the gate fails (logged)"
    )
    parser.add_argument("--no-paper", action="store_true", help="skip paper_trading/")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    setup(args.json)
    run, trial_id = resolve_run(args)
    result = export_model(
        inputs_from_run(run, trial_id),
        args.output_dir,
        force=args.force,
        paper=not args.no_paper,
        plots=not args.no_plots,
    )
    print(
        json.dumps(
            {
                "version": result.version,
                "artifact": str(result.artifact),
                "verdict": result.gate.verdict,
                "reason": result.gate.reason,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
