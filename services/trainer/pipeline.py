"""``make train``: search -> pick -> train the best -> export -> evaluate -> gate -> push.

    python -m trainer.pipeline --profile quick          # minutes on 2 cores (make train)
    python -m trainer.pipeline --profile full           # the long run (PROFILE=full make train)
    python -m trainer.pipeline --skip-tune [--set lr=1e-3]      # train one config, no search
    python -m trainer.pipeline --from-tune optimization_results/<run>   # reuse a finished search

1. Tune (``trainer.tune``): the profile's small (quick) or wide (full) space, ASHA, validation
   objective; writes ``optimization_results/<run>/`` with the trial table, plots and the seed
   spread of the best config.
2. The best config is trained with the profile's full training budget (``<run>/final/``).
3. Export (``trainer.export``): ONNX + parity check, ``best_models/<version>/`` with manifest and
   evaluation reports (validation folds; the final hold-out when promoted), ``paper_trading/``.
4. Gate (``trainer.gate.fold_gate``): promoted only if the model's mean AND worst walk-forward
   validation fold beat both benchmarks on the same folds (``--force`` overrides: logged and
   recorded in the manifest and report). The final hold-out (the ``test`` slice) is then scored
   once for a promoted model and counted in ``best_models/holdout_ledger.json``; it never
   selects anything (see ``trainer.selection``).
   ``paper_trading/paper_trading_config.json`` only ever gains the model's symbol; every changed
   key is printed (and listed as ``paper_config_changes`` in the summary).
5. Push, when promoted and a stack is reachable: through the trainer service
   (``TRAINER_CMD_ENDPOINT``) if it answers, else directly (copy into ``TRAINER_MODEL_DIR`` +
   signed ``model.updated`` on the bus) if inference answers; otherwise the model stays in
   ``best_models/`` and the last line says how to push it later.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import msgspec

from trainer.config import TrainConfig, add_source_args, cli_data_overrides, trainer_settings
from trainer.progress import say, setup


def _reachable(service: str, timeout_s: float = 1.5) -> bool:
    from shared.auth import load_or_create_key
    from shared.command_channel import CommandError, call
    from shared.config import bus_settings, command_endpoint

    secret = Path(bus_settings().secret_file)
    if not secret.exists():  # no service has ever started here: nothing to reach
        return False
    try:
        key = load_or_create_key(secret)
        call(command_endpoint(service), "status", {}, key, timeout_s=timeout_s, sender="pipeline")
    except (CommandError, OSError):
        return False
    return True


def push_if_possible(version: str, output_dir: Path, *, force: bool) -> dict[str, Any]:
    """Push through the trainer service, or directly when only inference is up, or not at all.

    The service finds the artifact by path when it shares this filesystem, else by version under
    its own ``TRAINER_OUTPUT_DIR``.
    """
    from shared.auth import load_or_create_key
    from shared.command_channel import call
    from shared.config import bus_settings, command_endpoint

    settings = trainer_settings()
    bus = bus_settings()
    if _reachable("trainer"):
        key = load_or_create_key(bus.secret_file)
        artifact = (output_dir / "best_models" / version).resolve()
        result = call(
            command_endpoint("trainer"),
            "push_model",
            {"version": version, "path": str(artifact), "force": force},
            key,
            timeout_s=settings.push_timeout_s,
            sender="pipeline",
        )
        say("push", f"{version} pushed through the trainer service: {(result or {}).get('serves')}")
        return {"pushed": True, "via": "trainer", **(result or {})}
    if _reachable("inference"):
        import zmq

        from shared.bus import Publisher, producer_id, security_from_env
        from trainer.registry import push_model

        ctx: zmq.Context[Any] = zmq.Context()
        publisher = Publisher(
            ctx,
            bus.pub_endpoint,
            producer_id("trainer-pipeline"),
            security=security_from_env("trainer"),  # only the trainer identity may push
        )
        time.sleep(0.5)  # PUB/SUB slow joiner: let the connection to the forwarder settle
        try:
            result = push_model(
                version,
                source_root=output_dir / "best_models",
                model_dir=Path(settings.model_dir),
                key=load_or_create_key(bus.secret_file),
                publish=publisher.publish,
                force=force,
            )
            time.sleep(0.2)
        finally:
            publisher.close()
            ctx.destroy(linger=500)
        say("push", f"{version} copied to {result['path']} and announced: {result['serves']}")
        return {"pushed": True, "via": "bus", **result}
    say(
        "push",
        f"no running stack reachable: {version} stays in best_models/. Push it later with "
        f"`make push MODEL=best_models/{version}` (stack from `make run`) or "
        f"`make docker-push MODEL=best_models/{version}` (stack from `make up`).",
    )
    return {"pushed": False, "via": None}


def run_pipeline(
    profile: str = "quick",
    *,
    output_dir: str | Path = ".",
    skip_tune: bool = False,
    from_tune: str | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    push: bool = True,
    tune_changes: dict[str, Any] | None = None,
    plots: bool = True,
    seeds: int | None = None,
    per_symbol: bool = False,
) -> dict[str, Any]:
    """``seeds`` (``--seeds``; default ``PROFILE_SEEDS``: quick 3, full 5): the chosen config is
    trained with the full budget on that many seeds and the MEDIAN one is exported and gated
    (``trainer.seed_spread``). ``per_symbol`` (``--per-symbol``): one pipeline, so one policy,
    per symbol of the config instead of one policy for all of them."""
    from trainer.config import PROFILE_SEEDS
    from trainer.export import export_model
    from trainer.export_manifest import ExportInputs
    from trainer.seed_spread import SeedRuns, results_table
    from trainer.train import prepare_data
    from trainer.train_data import load_slice
    from trainer.tune import tune_run, tune_settings

    if per_symbol:
        base = TrainConfig.profile(profile, **(overrides or {}))
        return {
            "per_symbol": {
                sym: run_pipeline(
                    profile,
                    output_dir=output_dir,
                    skip_tune=skip_tune,
                    from_tune=from_tune,
                    overrides={**(overrides or {}), "symbol": sym, "symbols": [sym]},
                    force=force,
                    push=push,
                    tune_changes=tune_changes,
                    plots=plots,
                    seeds=seeds,
                )
                for sym in base.symbol_list
            }
        }
    n_seeds = seeds if seeds is not None else PROFILE_SEEDS.get(profile, 3)

    t0 = time.perf_counter()
    out = Path(output_dir)
    overrides = dict(overrides or {})
    timings: dict[str, float] = {}
    trial_id = ""
    seed_record: dict[str, int] = {}

    # 1. search (or reuse one)
    if from_tune:
        opt_dir = Path(from_tune)
        best = json.loads((opt_dir / "best_trial.json").read_text())
        if "search_seed" in best:
            seed_record["tune_search"] = int(best["search_seed"])
        say("pipeline", f"using the search in {opt_dir}: {best['trial_id']}")
    elif not skip_tune:
        say("pipeline", f"profile {profile}: step 1/4 hyperparameter search")
        settings = tune_settings(profile, **(tune_changes or {}))
        if overrides:
            settings = msgspec.structs.replace(
                settings, trial_overrides={**settings.trial_overrides, **overrides}
            )
        # spread=False: the seed spread below retrains the chosen config with the full budget.
        opt_dir, best = tune_run(
            settings, TrainConfig.profile(profile, **overrides), out, spread=False
        )
        seed_record["tune_search"] = settings.seed
        timings["tune_s"] = time.perf_counter() - t0
    else:
        opt_dir, best = None, None

    # 2. pick and train the best config with the profile's full budget
    t1 = time.perf_counter()
    if best is not None:
        cfg = TrainConfig.profile(profile, **{**overrides, **best["params"]})
        cfg = cfg.replace(seed=int(best["config"].get("seed", cfg.seed)))
        trial_id = best["trial_id"]
        run_dir = Path(opt_dir) / "final"  # type: ignore[arg-type]
    else:
        cfg = TrainConfig.profile(profile, **overrides)
        run_dir = out / "runs" / f"{profile}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    seed_list = [cfg.seed + k for k in range(max(1, n_seeds))]
    say(
        "pipeline",
        f"step 2/4 train {trial_id or 'the configured policy'} on {len(cfg.symbol_list)} "
        f"symbol(s) {cfg.symbol_list}, seeds {seed_list} -> {run_dir}",
    )
    data = prepare_data(cfg)
    runs = SeedRuns.train(cfg, seed_list, run_dir, data)
    result = runs.best
    cfg = result.config
    timings["train_s"] = time.perf_counter() - t1
    spread = runs.export_info()
    say("pipeline", f"chosen: {spread['chosen_by']}")

    # 3. export + evaluate + gate
    t2 = time.perf_counter()
    say("pipeline", "step 3/4 export, gate on the validation folds, hold-out once if promoted")
    assert result.head is not None
    slices = {
        "train": result.data.train,
        "validation": result.data.validation,
        "test": load_slice(cfg, "test", result.data.normaliser),
    }
    for sym in cfg.symbol_list[1:]:
        slices[f"train:{sym}"] = result.data.trains[sym]
        slices[f"validation:{sym}"] = result.data.validations[sym]
        slices[f"test:{sym}"] = load_slice(cfg, "test", result.data.normaliser, sym)
    exported = export_model(
        ExportInputs(
            cfg=cfg,
            head=result.head,
            normaliser=result.data.normaliser,
            slices=slices,
            seeds={"train": cfg.seed, **seed_record},
            trial_id=trial_id,
            provenance={"run": str(run_dir), "checkpoint": str(result.checkpoint)},
            seed_spread=spread,
        ),
        out,
        force=force,
        plots=plots,
        version_suffix=runs.suffix,
        score_other_seeds=runs.score_holdout,
    )
    runs.stop()
    assert exported.evaluation_dir is not None
    runs.write(exported.evaluation_dir)
    table = results_table(
        runs, exported.manifest.validation_metrics, exported.manifest.test_metrics
    )
    (exported.evaluation_dir / "results.md").write_text(
        f"# {exported.version}: {exported.gate.verdict}\n\n{spread['chosen_by']}\n\n{table}"
    )
    say("pipeline", "results (net of costs):\n" + table)
    timings["export_s"] = time.perf_counter() - t2

    # 4. push
    pushed: dict[str, Any] = {"pushed": False, "via": None}
    if not exported.gate.promoted:
        say("pipeline", f"step 4/4 not pushed: {exported.gate.reason}")
    elif not push:
        say("pipeline", "step 4/4 push skipped (--no-push)")
    else:
        say("pipeline", "step 4/4 push")
        pushed = push_if_possible(exported.version, out, force=force)
    timings["total_s"] = time.perf_counter() - t0
    summary = {
        "profile": profile,
        "version": exported.version,
        "artifact": str(exported.artifact),
        "verdict": exported.gate.verdict,
        "reason": exported.gate.reason,
        "forced": exported.gate.forced,
        "validation_folds": exported.gate.folds,
        "symbols": cfg.symbol_list,
        "chosen_by": spread["chosen_by"],
        "seed_spread": {
            "validation": {
                k: v
                for k, v in exported.manifest.validation_metrics.items()
                if k.startswith("seed_")
            },
            "holdout": {
                k: v for k, v in exported.manifest.test_metrics.items() if k.startswith("seed_")
            },
        },
        "gate_numbers": exported.gate.numbers(),
        "holdout": {
            k: v for k, v in exported.manifest.test_metrics.items() if k.startswith("holdout_")
        }
        | {
            "sharpe": exported.manifest.test_metrics.get("sharpe"),
            "buy_and_hold_sharpe": exported.manifest.test_metrics.get("buy_and_hold_sharpe"),
            "ma_crossover_sharpe": exported.manifest.test_metrics.get("ma_crossover_sharpe"),
        },
        "parity": exported.parity,
        "validation_objective": result.objective,
        "train_steps_per_s": round(result.steps_per_s, 1),
        "tune_run": str(opt_dir) if opt_dir else None,
        "run": str(result.out_dir),  # the promoted seed's run folder (checkpoint)
        "trial_id": trial_id,
        "paper_trading": str(exported.paper_dir) if exported.paper_dir else None,
        "paper_config_changes": exported.paper_changes,
        "push": pushed,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    (run_dir / "pipeline.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    say(
        "pipeline",
        f"done in {timings['total_s'] / 60:.1f} min: {exported.version} "
        f"{exported.gate.verdict}; artifact {exported.artifact}",
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    from trainer.tune import parse_sets

    parser = argparse.ArgumentParser(
        prog="python -m trainer.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    parser.add_argument("--skip-tune", action="store_true", help="train the configured policy only")
    parser.add_argument("--from-tune", default=None, help="reuse optimization_results/<run>")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="TrainConfig override (JSON value), repeatable",
    )
    parser.add_argument("--samples", type=int, default=None, help="Tune trials")
    parser.add_argument("--seed", type=int, default=None, help="search and training seed")
    parser.add_argument(
        "--force", action="store_true", help="promote and push even if the gate fails"
    )
    parser.add_argument("--no-push", action="store_true")
    parser.add_argument(
        "--seeds",
        "--spread-seeds",
        dest="seeds",
        type=int,
        default=None,
        help="train the chosen config on this many seeds, promote the median (quick 3, full 5)",
    )
    parser.add_argument(
        "--per-symbol",
        action="store_true",
        help="one policy per symbol instead of one policy for all the config's symbols",
    )
    parser.add_argument("--symbols", default=None, help="comma-separated, e.g. AAPL,AMZN")
    add_source_args(parser)
    parser.add_argument("--source", default=None, help="packaged name | file | barstore")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--output-dir", default=None, help="default TRAINER_OUTPUT_DIR or .")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    setup(args.json)
    overrides = parse_sets(args.set)
    overrides = cli_data_overrides(args, overrides)
    tune_changes: dict[str, Any] = {}
    if args.samples is not None:
        tune_changes["num_samples"] = args.samples
    if args.seed is not None:
        tune_changes["seed"] = args.seed
        overrides.setdefault("seed", args.seed)
    summary = run_pipeline(
        args.profile,
        output_dir=args.output_dir or trainer_settings().output_dir,
        skip_tune=args.skip_tune,
        from_tune=args.from_tune,
        overrides=overrides,
        force=args.force,
        push=not args.no_push,
        tune_changes=tune_changes,
        plots=not args.no_plots,
        seeds=args.seeds,
        per_symbol=args.per_symbol,
    )
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
