"""Export a trained policy for serving and paper trading (the seed's export_for_paper_trading).

    python -m trainer.export [--run runs/<run>] [--trial-id ID] [--force] [--no-paper]
    (without --run: the newest run under --output-dir)
    python -m trainer.export --from-tune optimization_results/<run>

Steps:

1. ONNX: the policy's deterministic action head (``trainer.train.PolicyHead``: the RLModule's
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
``manifest.version`` in both places (``shared.manifest.load_artifact`` checks it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from shared.backtest_risk import risk_record
from shared.features import FeatureConfig, FeaturePipeline
from shared.manifest import (
    ActionSpace,
    DataSlice,
    ModelManifest,
    ObservationSpec,
    Promotion,
    load_artifact,
    write_artifact,
)
from shared.observation import observation_names
from shared.provenance import git_revision
from trainer.config import TrainConfig
from trainer.gate import GateDecision
from trainer.progress import say, setup
from trainer.train import PolicyHead, SliceData

PARITY_TOLERANCE = 1e-5
ONNX_OPSET = 17


class ExportError(RuntimeError):
    """The export was refused (parity failure, bad artifact); the message says why."""


# ----------------------------------------------------------------------------- ONNX


def _onnx_wrapper(head: PolicyHead) -> Any:
    import torch

    class OnnxPolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = head.module

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = head.forward(obs)
            return out

    return OnnxPolicy().eval()


def _register_nanmean() -> None:
    """RLlib's dueling DQN centres advantages with ``nanmean``, which the TorchScript exporter
    lacks; on finite inputs it is ``ReduceMean`` (our observations are finite, and a non-finite
    output is served as "flat" by inference anyway)."""
    from torch.onnx import register_custom_op_symbolic, symbolic_helper

    def nanmean(g: Any, x: Any, dim: Any, keepdim: Any, dtype: Any) -> Any:
        axes = symbolic_helper._get_const(dim, "is", "dim")
        keep = symbolic_helper._get_const(keepdim, "i", "keepdim")
        return g.op("ReduceMean", x, axes_i=axes, keepdims_i=keep)

    register_custom_op_symbolic("aten::nanmean", nanmean, ONNX_OPSET)


def export_onnx(head: PolicyHead, obs_size: int) -> bytes:
    """ONNX bytes of the head (input ``obs`` [batch, obs_size] -> output ``logits``)."""
    import torch

    _register_nanmean()
    wrapper = _onnx_wrapper(head)
    buffer = io.BytesIO()
    # dynamo=False is deliberate (the TorchScript exporter traces forward_inference as RLlib
    # runs it); silence its deprecation notice.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (torch.zeros(1, obs_size, dtype=torch.float32),),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            dynamo=False,
            input_names=["obs"],
            output_names=["logits"],
            dynamic_axes={"obs": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
    return buffer.getvalue()


def parity_observations(
    obs_size: int, slices: list[SliceData], positions: tuple[float, ...], seed: int = 0
) -> np.ndarray:
    """1,000 random observations plus every valid real one of ``slices`` at every position."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(0.0, 2.0, size=(1000, obs_size)).astype(np.float32)]
    for data in slices:
        base, valid = data.observations
        for pos in positions:
            obs = base[valid].copy()
            obs[:, -1] = pos
            parts.append(obs)
    return np.concatenate(parts).astype(np.float32)


def check_parity(head: PolicyHead, onnx_bytes: bytes, obs: np.ndarray) -> float:
    """Max |onnxruntime - torch| over ``obs``; ``ExportError`` above ``PARITY_TOLERANCE``.

    onnxruntime runs with the options inference serves with (one thread, sequential).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
    )
    got = np.asarray(session.run(["logits"], {"obs": obs})[0], dtype=np.float64)
    want = head.outputs(obs)
    if got.shape != want.shape:
        raise ExportError(f"ONNX output shape {got.shape} != torch {want.shape}")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not math.isfinite(diff) or diff > PARITY_TOLERANCE:
        raise ExportError(
            f"ONNX/torch parity {diff:.3g} exceeds {PARITY_TOLERANCE:g} on {len(obs)} observations"
        )
    return diff


# ----------------------------------------------------------------------------- manifest


def new_version(root: Path, now: dt.datetime | None = None, suffix: str = "") -> str:
    """``model_YYYYMMDDHHMMSS[_<suffix>]`` (UTC; ``suffix`` says how the artifact was chosen,
    e.g. ``median-of-3-seeds``), with ``_2``... if that name is taken under ``root``."""
    now = now or dt.datetime.now(dt.UTC)
    base = f"model_{now:%Y%m%d%H%M%S}" + (f"_{suffix}" if suffix else "")
    version, n = base, 1
    while (root / version).exists():
        n += 1
        version = f"{base}_{n}"
    return version


def _finite(metrics: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        out[k] = float(v) if math.isfinite(float(v)) else None
    return out


@dataclass
class ExportInputs:
    """Everything the manifest records about where the model came from."""

    cfg: TrainConfig
    head: PolicyHead
    normaliser: dict[str, Any]
    # "train", "validation", "test" (the first symbol's); other symbols' as "train:AMZN" ...
    slices: dict[str, SliceData]
    seeds: dict[str, int]
    trial_id: str = ""
    provenance: dict[str, Any] | None = None
    # Tune's re-runs of the chosen config on other seeds (``trainer.tune.seed_spread``): the
    # validation-fold objective per seed; None when no spread was run (e.g. --skip-tune).
    seed_spread: dict[str, Any] | None = None


def build_manifest(
    inputs: ExportInputs,
    version: str,
    *,
    validation_metrics: dict[str, Any] | None = None,
    test_metrics: dict[str, Any] | None = None,
    promotion: Promotion | None = None,
) -> ModelManifest:
    cfg = inputs.cfg
    feature_config = FeatureConfig.from_dict(cfg.features)
    pipeline = FeaturePipeline(feature_config)
    names = observation_names(pipeline)
    env_cfg = inputs.slices["train"].env_config
    if cfg.action_space == "discrete":
        space = ActionSpace(kind="discrete", action_values=list(env_cfg.action_targets))
        meaning = (
            f"argmax over the {cfg.algorithm} policy's "
            f"{'Q-values' if cfg.algorithm == 'DQN' else 'action logits'} -> target position "
            f"{list(env_cfg.action_targets)} (fraction of the allowed size), decided at a bar's "
            "close, filled at the next open"
        )
    else:
        low = -1.0 if cfg.allow_short else 0.0
        space = ActionSpace(kind="continuous", low=low, high=1.0, action_values=[])
        meaning = f"Gaussian mean clipped to [{low}, 1] = target position (fraction of size)"
    slices = [
        DataSlice(
            role=role.split(":")[0],
            source=cfg.source,
            symbol=data.env_config.symbol,
            **{
                k: v
                for k, v in data.describe().items()
                if k in ("start", "end", "rows", "content_hash")
            },
        )
        for role, data in inputs.slices.items()
    ]
    provenance = {
        "producer": "trainer.export",
        "train_config": cfg.to_dict(),
        # the rules evaluation, the gate and the hold-out score it under (shared.backtest_risk)
        **({"env_risk_rules": risk_record(env_cfg.risk)} if env_cfg.risk is not None else {}),
        **(inputs.provenance or {}),
    }
    return ModelManifest(
        version=version,
        created_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        algorithm=cfg.algorithm,
        onnx_sha256="",  # write_artifact fills it from the bytes
        observation=ObservationSpec(names=names, size=len(names)),
        feature_config=feature_config,
        pipeline_fingerprint=pipeline.fingerprint,
        normaliser=inputs.normaliser,
        action_space=space,
        action_meaning=meaning,
        symbols=cfg.symbol_list,
        timeframe="1d",
        training_data=slices,
        seeds=dict(inputs.seeds),
        git_revision=git_revision(),
        promotion=promotion or Promotion(verdict="candidate", reason="not evaluated yet"),
        tune_trial_id=inputs.trial_id,
        validation_metrics=_finite(validation_metrics or {}),
        test_metrics=_finite(test_metrics or {}),
        provenance=json.dumps(provenance, sort_keys=True, default=str),
        regime_caps=list(cfg.regime_caps),  # shared.regime_gate: every decision of the model
    )


# ----------------------------------------------------------------------------- paper trading


def write_paper_trading(
    root: Path, artifact: Path, symbol: str | list[str]
) -> tuple[Path, Path, list[str]]:
    """Copy the artifact to ``paper_trading/models/<version>/`` and update the config file.

    The config never narrows what execution trades: the new one starts from the file execution
    reads today (``paper_trading_config.json``, else the example next to it, as
    ``execution.config`` does) and only adds the model's symbol and the new ``model_dir``. Each
    changed key is printed and returned (``"symbols: [...] -> [...]"``); a replaced file is kept
    as ``paper_trading_config.previous.json``.
    """
    from shared.config import ConfigError
    from shared.paper_config import (
        PaperTradingConfig,
        dump_paper_config,
        load_paper_config,
    )

    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    target = models / artifact.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(artifact, target)
    config_path = root / "paper_trading_config.json"
    example_path = root / "paper_trading_config.example.json"
    model_dir = (
        str(target.relative_to(root.parent)) if root.parent in target.parents else str(target)
    )
    before: PaperTradingConfig | None = None
    source = config_path if config_path.exists() else example_path
    if source.exists():
        try:
            before = load_paper_config(source)
        except ConfigError as exc:
            if source == config_path:
                backup = config_path.with_suffix(".json.invalid")
                shutil.copyfile(config_path, backup)
                say("export", f"existing {config_path} is invalid ({exc}); kept as {backup}")
    wanted = [symbol] if isinstance(symbol, str) else list(symbol)
    if before is None:
        config = PaperTradingConfig(symbols=wanted, model_dir=model_dir)
    else:
        symbols = [*before.symbols, *(s for s in wanted if s not in before.symbols)]
        config = msgspec.structs.replace(before, symbols=symbols, model_dir=model_dir)
    changes = paper_config_changes(before, config)
    if config_path.exists() and changes:
        shutil.copyfile(config_path, root / "paper_trading_config.previous.json")
    config_path.write_bytes(dump_paper_config(config))
    origin = source.name if before is not None else "defaults"
    if changes:
        say(
            "export",
            f"{config_path} written from {origin}; what execution trades changes at its next "
            "start: " + "; ".join(changes),
        )
    else:
        say("export", f"{config_path}: unchanged")
    return target, config_path, changes


def paper_config_changes(before: Any, after: Any) -> list[str]:
    """``"key: old -> new"`` for every top-level key that differs (all keys when no ``before``)."""
    new = msgspec.to_builtins(after)
    old = msgspec.to_builtins(before) if before is not None else {}
    return [
        f"{key}: {json.dumps(old.get(key))} -> {json.dumps(value)}"
        for key, value in new.items()
        if old.get(key) != value
    ]


# ----------------------------------------------------------------------------- the export


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
    from trainer.evaluate import evaluate_model, write_outputs

    cfg = inputs.cfg
    out = Path(output_dir)
    best_root = out / "best_models"
    best_root.mkdir(parents=True, exist_ok=True)
    version = new_version(best_root, suffix=version_suffix)
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

    # Evaluate the artifact exactly as inference would load it (a staging copy, then the final).
    staging = best_root / ".staging"
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
    from shared.data import load_bars
    from trainer.evaluate import evaluate_folds, fold_summary
    from trainer.gate import fold_gate
    from trainer.selection import (
        HOLDOUT_WARN,
        LEDGER_FILE,
        holdout_count,
        record_holdout,
        selection_plan,
    )

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
    # Several symbols: every (symbol, fold) pair is one fold of the gate, so the model's mean
    # is the pooled mean and its worst fold the worst of any symbol.
    folds = [f for sym in symbols for f in symbol_folds[sym]]
    bars, plan = bars_of[symbols[0]], plans[symbols[0]]
    summary = fold_summary(folds, cfg.metric)
    gate = fold_gate([f.metrics for f in folds], cfg.metric, force=force)
    if gate.forced:
        say("gate", f"{version}: promotion FORCED by --force: {gate.reason}", level="warning")
    else:
        say("gate", f"{version}: {gate.verdict}: {gate.reason}")

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
        for sym in symbols:
            sym_summary = fold_summary(symbol_folds[sym], cfg.metric)[name]
            validation_numbers[f"{sym}:{prefix}fold_mean_{cfg.metric}"] = sym_summary["mean"]
            validation_numbers[f"{sym}:{prefix}fold_worst_{cfg.metric}"] = sym_summary["worst"]
    validation_numbers.update(gate.numbers())
    spread = inputs.seed_spread
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

    ledger = best_root / LEDGER_FILE
    hold_start, hold_end = _inclusive(cfg.test_start, cfg.test_end)
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
    selection: dict[str, Any] = {
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
            "slice": f"{cfg.source}/{','.join(symbols)} {hold_start} -> {hold_end or 'last bar'}",
            "scored": holdout is not None,
            "models_scored_on_it": looks,
            "ledger": str(ledger),
            "warning": f"the hold-out has been scored for {looks} models: its numbers are "
            "optimistic for the ones that are reported"
            if looks > HOLDOUT_WARN
            else "",
        },
    }
    if looks > HOLDOUT_WARN:
        say("gate", selection["holdout"]["warning"], level="warning")
    manifest = build_manifest(
        inputs,
        version,
        validation_metrics=validation_numbers,
        test_metrics=test_numbers,
        promotion=Promotion(verdict=gate.verdict, reason=gate.reason),  # type: ignore[arg-type]
    )
    artifact = write_artifact(best_root, manifest, onnx_bytes)
    shutil.rmtree(staging, ignore_errors=True)
    final = load_artifact(artifact, FeaturePipeline(feature_config))  # the written one opens
    manifest = final.manifest

    evaluation_dir = artifact / "evaluation"
    evaluation_dir.mkdir(parents=True, exist_ok=True)
    for sym in symbols:
        sym_dir = evaluation_dir / "folds" / (sym if len(symbols) > 1 else "")
        for k, fold in enumerate(symbol_folds[sym]):
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
        from trainer.evaluate import pool_symbols

        for sym, scored in holdouts.items():
            scored.meta["run"] = f"{version}_{sym}_holdout"
            scored.meta["selection"] = selection
            write_outputs(scored, evaluation_dir / "holdout" / sym, plots=plots)
        (evaluation_dir / "holdout" / "symbols.json").write_text(
            json.dumps(pool_symbols(holdouts), indent=2, default=str) + "\n"
        )
    else:
        (evaluation_dir / "HOLDOUT_NOT_SCORED.txt").write_text(
            f"{version} was rejected by the gate ({gate.reason}); the final hold-out was not "
            "read for it.\n"
        )
    paper_dir = paper_config = None
    paper_changes: list[str] | None = None
    if paper:
        paper_dir, paper_config, paper_changes = write_paper_trading(
            out / "paper_trading", artifact, cfg.symbol_list
        )
    say(
        "export",
        f"{version} written: {artifact}  validation folds mean {cfg.metric}: model "
        f"{gate.model_value:.3f} | "
        + " | ".join(f"{k} {v:.3f}" for k, v in gate.benchmark_values.items())
        + (
            f"; hold-out {cfg.metric} model {holdout.metrics['model'].get(cfg.metric)} "
            f"(models scored on this hold-out: {looks})"
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


def _inclusive(start: str | None, end: str | None) -> tuple[str, str | None]:
    """TrainConfig slices are [start, end); trainer.evaluate takes inclusive days."""
    if end is None:
        return start or "1970-01-01", None
    last = (dt.date.fromisoformat(end[:10]) - dt.timedelta(days=1)).isoformat()
    return start or "1970-01-01", last


# ----------------------------------------------------------------------------- CLI


def inputs_from_run(run: Path, trial_id: str = "") -> ExportInputs:
    """Rebuild the export inputs from a ``trainer.train`` run folder (checkpoint + config)."""
    from trainer.train import load_module, load_slice

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
