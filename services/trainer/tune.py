"""Hyperparameter search with Ray Tune (the seed's hyperparameter_optimization).

    python -m trainer.tune --profile quick                      # small space, minutes
    python -m trainer.tune --profile full --samples 48          # the long search
    python -m trainer.tune --narrow-from optimization_results/<run>   # second round, narrowed

The search
    Every trial is one ``trainer.train.train`` run of a ``TrainConfig`` whose searched fields come
    from the space (``SPACES``): environment (training fee scale, episode length, position-change
    penalty, risk fraction, reward variant), model (hidden sizes, activation) and optimisation
    (learning rate, batch size, discount). Each trial reports its VALIDATION objective (the
    greedy policy's Sharpe net of real costs on 2018-2019 by default, ``TrainConfig.metric``)
    every ``eval_every`` iterations; never the training return. ASHA stops weak trials at those
    reports.

Reproducibility
    Configurations are drawn by Tune's ``BasicVariantGenerator(random_state=seed)``; each trial
    trains with the run's seed. With ``max_concurrent=1`` (the default) trials run in order and
    ASHA sees results in that order, so the same seed and data give the same trial table
    (``trials.csv``/``trials.json``; wall-clock columns live in ``trial_timings.csv``). More
    concurrency is faster on bigger machines, but ASHA's decisions then depend on which trial
    reports first.

After the search
    The best trial (highest final objective among the trials that ran the full budget) is re-run
    on ``--spread-seeds`` other seeds; the objectives' mean, std, min and max are the spread.

Output: ``optimization_results/<run>/``
    ``trials.csv``, ``trials.json``  the trial table (params, rounds, objective, status)
    ``trial_timings.csv``            seconds and env steps/s per trial
    ``curves/<trial>.csv``           each trial's learning curve (validation objective, return)
    ``plots/param_<name>.png``       each searched parameter against the objective
    ``plots/learning_curves.png``    objective and episode return against env steps, all trials
    ``best_trial.json``, ``summary.md``  the best trial, its config and the seed spread
    ``search_space.json``, ``settings.json``  what was searched and how (input of --narrow-from)
    ``seeds/seed_<n>/``              the spread re-runs (``trainer.train`` run folders)

The search is here; the space and its narrowing are ``trainer.tune_space``'s, and the table,
plots, best-trial pick, seed spread and summary written after the search ``trainer.tune_results``'s.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from trainer.config import (
    TrainConfig,
    add_source_args,
    cli_data_overrides,
    parse_key_values,
)
from trainer.progress import say, setup
from trainer.tune_results import (
    pick_best,
    plot_results,
    seed_spread,
    write_summary,
    write_trial_table,
)
from trainer.tune_space import SPACES, narrow_space, to_tune_space


class TuneSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the search runs (the trials' own hyperparameters are ``TrainConfig`` fields)."""

    name: str = ""  # optimization_results/<name>; "" = <profile>-<UTC time>
    profile: str = "quick"
    space: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)  # {} = SPACES[profile]
    num_samples: int = 8
    max_concurrent: int = 1  # 1 = reproducible trial table (see module doc)
    seed: int = 0  # search seed (config sampling) and every trial's training seed
    grace_period: int = 2  # ASHA: reports (validation rounds) before a trial can be stopped
    reduction_factor: float = 2.0
    spread_seeds: int = 2  # extra seeds the best config is re-run on
    # The trials' training budget (overrides of the profile's TrainConfig).
    trial_overrides: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def search_space(self) -> dict[str, dict[str, Any]]:
        return self.space or SPACES[self.profile]


TUNE_PROFILES: dict[str, dict[str, Any]] = {
    # quick: small enough that `make train` (this search, then 3 seeds of the chosen config on
    # 6 symbols, then the export) stays under 15 minutes on 2 shared cores.
    "quick": {
        "num_samples": 4,
        "grace_period": 1,
        "spread_seeds": 2,
        "trial_overrides": {"iterations": 4, "eval_every": 2},
    },
    "full": {
        "num_samples": 40,
        "grace_period": 3,
        "spread_seeds": 4,
        "trial_overrides": {"iterations": 120, "eval_every": 10, "checkpoint_every": 0},
    },
}


def tune_settings(profile: str, **changes: Any) -> TuneSettings:
    data = {"profile": profile, **TUNE_PROFILES.get(profile, {}), **changes}
    return msgspec.convert(data, TuneSettings)


# ----------------------------------------------------------------------------- the trainable


def _trial_index(trial_id: str) -> int:
    """Tune ids are ``<random>_<index:05d>``: the index is the trial's order (deterministic)."""
    return int(trial_id.rsplit("_", 1)[-1])


def trial_name(index: int) -> str:
    return f"trial_{index:03d}"


def _trainable(params: dict[str, Any], base: dict[str, Any]) -> None:
    """One Tune trial: train ``base`` + ``params`` and report the validation objective."""
    from ray import tune

    from trainer.progress import quiet_ray
    from trainer.train import train

    quiet_ray()
    cfg = TrainConfig.from_dict(base).with_overrides(params)

    def report(row: dict[str, Any]) -> None:
        tune.report(
            {
                "objective": float(row["val_metric"]),
                "iteration": int(row["iteration"]),
                "env_steps": int(row["env_steps"]),
                "episode_return_mean": _jsonable(row["episode_return_mean"]),
                "val_total_return": _jsonable(row.get("val_total_return")),
                "val_trades": _jsonable(row.get("val_trades")),
            }
        )

    train(cfg, None, report=report, label="trial")


def _jsonable(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def progress_callback(metric: str) -> Any:
    """A Tune callback printing one line per trial report and per finished trial (driver side).

    Built on call so that importing this module does not import Ray.
    """
    from ray.tune import Callback

    class Printer(Callback):
        def on_trial_result(
            self,
            iteration: int,
            trials: list[Any],
            trial: Any,
            result: dict[str, Any],
            **info: Any,
        ) -> None:
            say(
                "tune",
                f"{trial_name(_trial_index(trial.trial_id))} "
                f"round {result['training_iteration']}"
                f"  steps {result.get('env_steps', 0):>8,}  val {metric} "
                f"{result.get('objective', math.nan):.3f}  return "
                f"{_fmt(result.get('episode_return_mean'))}",
            )

        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            last = trial.last_result or {}
            say(
                "tune",
                f"{trial_name(_trial_index(trial.trial_id))} finished after "
                f"{last.get('training_iteration', 0)} rounds: val {metric} "
                f"{last.get('objective', math.nan):.3f}",
            )

        def on_trial_error(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            say("tune", f"{trial_name(_trial_index(trial.trial_id))} failed", level="error")

    return Printer()


def _fmt(value: Any) -> str:
    v = _jsonable(value)
    return "   -" if v is None else f"{v:.3f}"


# ----------------------------------------------------------------------------- the search


def run_search(
    settings: TuneSettings,
    base: TrainConfig,
    out_dir: Path,
) -> list[dict[str, Any]]:
    """Run Tune; return the trial table rows (sorted by trial order) and write curves."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from trainer.train import init_ray

    init_ray()
    spec = settings.search_space
    max_rounds = max(1, math.ceil(base.iterations / base.eval_every))
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_rounds,
        grace_period=min(settings.grace_period, max_rounds),
        reduction_factor=settings.reduction_factor,
        brackets=1,
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, base=base.to_dict()),
        {"cpu": 1 + base.num_env_runners},
    )
    tuner = tune.Tuner(
        trainable,
        param_space=to_tune_space(spec),
        tune_config=tune.TuneConfig(
            metric="objective",
            mode="max",
            scheduler=scheduler,
            # max_concurrent here: Tune ignores max_concurrent_trials for this generator.
            search_alg=BasicVariantGenerator(
                random_state=settings.seed, max_concurrent=settings.max_concurrent
            ),
            num_samples=settings.num_samples,
            reuse_actors=True,  # one trial process after another: no actor start-up per trial
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str((out_dir / "ray").resolve()),
            verbose=0,
            callbacks=[progress_callback(base.metric)],
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False, num_to_keep=1),
        ),
    )
    say(
        "tune",
        f"{settings.num_samples} trials x up to {base.iterations} iterations "
        f"({max_rounds} validation rounds), ASHA grace {settings.grace_period}, "
        f"space {sorted(spec)}",
    )
    grid = tuner.fit()

    curves_dir = out_dir / "curves"
    curves_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for result in list(grid):  # type: ignore[call-overload]
        trial_id = str(result.metrics.get("trial_id") or _id_from_path(result.path))
        index = _trial_index(trial_id)
        name = trial_name(index)
        frame = result.metrics_dataframe
        cols = [
            "training_iteration",
            "iteration",
            "env_steps",
            "objective",
            "episode_return_mean",
            "val_total_return",
            "val_trades",
            "time_total_s",
        ]
        curve = (
            frame[[c for c in cols if c in frame.columns]] if frame is not None else pd.DataFrame()
        )
        curve.to_csv(curves_dir / f"{name}.csv", index=False)
        params = {k: _plain(result.config[k]) for k in spec}
        last = result.metrics or {}
        finite = curve["objective"].dropna() if "objective" in curve else pd.Series(dtype=float)
        rows.append(
            {
                "trial": name,
                "tune_trial_id": trial_id,
                "params": params,
                "rounds": int(last.get("training_iteration", 0) or 0),
                "iterations": int(last.get("iteration", 0) or 0),
                "env_steps": int(last.get("env_steps", 0) or 0),
                "objective": _jsonable(last.get("objective")),
                "best_objective": _jsonable(finite.max()) if len(finite) else None,
                "episode_return_mean": _jsonable(last.get("episode_return_mean")),
                "val_total_return": _jsonable(last.get("val_total_return")),
                "val_trades": _jsonable(last.get("val_trades")),
                "completed": int(last.get("training_iteration", 0) or 0) >= max_rounds,
                "status": "error" if result.error else "ok",
                "seconds": _jsonable(last.get("time_total_s")),
            }
        )
    rows.sort(key=lambda r: r["trial"])
    return rows


def _id_from_path(path: str) -> str:
    """A trial that never reported has no metrics: its folder ``<trainable>_<id>_<n>_...``."""
    found = re.search(r"_([0-9a-f]{5}_\d{5})_", Path(path).name)
    if not found:
        raise RuntimeError(f"cannot tell the trial id of {path}")
    return found.group(1)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def tune_run(
    settings: TuneSettings,
    base: TrainConfig | None = None,
    output_dir: str | Path = ".",
    *,
    spread: bool = True,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """The whole search: trials, table, plots, best trial, seed spread. Returns (folder, best)."""
    base = (base or TrainConfig.profile(settings.profile)).with_overrides(
        {"seed": settings.seed, **settings.trial_overrides}
    )
    name = settings.name or f"{settings.profile}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    out_dir = Path(output_dir) / "optimization_results" / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    spec = settings.search_space
    (out_dir / "search_space.json").write_text(json.dumps(spec, indent=2) + "\n")
    (out_dir / "settings.json").write_text(
        json.dumps(
            {**msgspec.to_builtins(settings), "name": name, "base_config": base.to_dict()}, indent=2
        )
        + "\n"
    )
    t0 = time.perf_counter()
    rows = run_search(settings, base, out_dir)
    write_trial_table(rows, out_dir)
    plot_results(rows, spec, out_dir, base.metric)
    best = pick_best(rows)
    best_cfg = base.with_overrides(best["params"])
    say(
        "tune",
        f"best: {best['trial']} val {base.metric} {best['objective']:.3f} params {best['params']}",
    )
    summary: dict[str, Any] = {
        "run": name,
        "trial": best["trial"],
        "trial_id": f"{name}/{best['trial']}",
        "objective": best["objective"],
        "metric": base.metric,
        "search_seed": settings.seed,
        "params": best["params"],
        "config": best_cfg.to_dict(),
        "search_seconds": round(time.perf_counter() - t0, 1),
    }
    if spread and settings.spread_seeds > 0:
        seeds = [settings.seed + k for k in range(1, settings.spread_seeds + 1)]
        summary["seed_spread"] = seed_spread(best_cfg, seeds, out_dir / "seeds", best["objective"])
        s = summary["seed_spread"]
        say(
            "tune",
            f"seed spread of {best['trial']}: mean {s['mean']:.3f} std {s['std']:.3f} "
            f"min {s['min']:.3f} max {s['max']:.3f} over seeds {[settings.seed, *seeds]}",
        )
    (out_dir / "best_trial.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_summary(
        out_dir, {**best, "seed_spread": summary.get("seed_spread")}, base.metric, settings
    )
    shutil.rmtree(out_dir / "ray", ignore_errors=True)  # Tune's own state; the table is above
    if on_done is not None:
        on_done(summary)
    say("tune", f"results in {out_dir}")
    return out_dir, summary


def settings_from_narrow(run: Path, **changes: Any) -> tuple[TuneSettings, TrainConfig]:
    """Second round: the previous run's space narrowed around its best trial, same budget."""
    old = json.loads((run / "settings.json").read_text())
    spec = json.loads((run / "search_space.json").read_text())
    trials = json.loads((run / "trials.json").read_text())
    best = json.loads((run / "best_trial.json").read_text())
    base = TrainConfig.from_dict(best["config"])
    fields = {k: old[k] for k in TuneSettings.__struct_fields__ if k in old and k != "name"}
    fields.update(space=narrow_space(spec, trials), **changes)
    return msgspec.convert(fields, TuneSettings), base


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.tune", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--profile", default="quick", choices=sorted(TUNE_PROFILES))
    parser.add_argument("--name", default="", help="run folder name under optimization_results/")
    parser.add_argument("--samples", type=int, default=None, help="number of trials")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-concurrent", type=int, default=None)
    parser.add_argument("--spread-seeds", type=int, default=None)
    parser.add_argument("--narrow-from", default=None, help="optimization_results/<run> to narrow")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="TrainConfig override for every trial (JSON value), repeatable",
    )
    parser.add_argument("--output-dir", default=".")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--source", default=None, help="packaged name | file | barstore")
    parser.add_argument("--symbols", default=None, help="comma-separated, e.g. AAPL,AMZN")
    add_source_args(parser)
    args = parser.parse_args(argv)
    setup(args.json)
    changes: dict[str, Any] = {"seed": args.seed}
    if args.name:
        changes["name"] = args.name
    if args.samples is not None:
        changes["num_samples"] = args.samples
    if args.max_concurrent is not None:
        changes["max_concurrent"] = args.max_concurrent
    if args.spread_seeds is not None:
        changes["spread_seeds"] = args.spread_seeds
    overrides = parse_sets(args.set)
    overrides = cli_data_overrides(args, overrides)
    if args.narrow_from:
        settings, base = settings_from_narrow(Path(args.narrow_from), **changes)
        base = base.with_overrides(overrides)
    else:
        settings = tune_settings(args.profile, **changes)
        base = TrainConfig.profile(args.profile, **overrides)
    if overrides:
        settings = msgspec.structs.replace(
            settings, trial_overrides={**settings.trial_overrides, **overrides}
        )
    out_dir, best = tune_run(settings, base, args.output_dir)
    print(
        json.dumps(
            {
                "results": str(out_dir),
                "best_trial": best["trial_id"],
                "objective": best["objective"],
            }
        )
    )
    return 0


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` overrides (values parsed as JSON when they can be)."""
    return parse_key_values(items, "--set")


if __name__ == "__main__":
    raise SystemExit(main())
