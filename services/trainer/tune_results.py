"""After a Tune search: the trial table, the plots, the best trial, its seed spread, the summary.

These write ``optimization_results/<run>/`` (``trainer.tune`` lists the files) from the trial
rows the search returned; they change when the report does, not when the search does.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from trainer.config import TrainConfig

if TYPE_CHECKING:
    from trainer.tune import TuneSettings


DETERMINISTIC_COLUMNS = (
    "trial",
    "rounds",
    "iterations",
    "env_steps",
    "objective",
    "best_objective",
    "episode_return_mean",
    "val_total_return",
    "val_trades",
    "completed",
    "status",
)


def write_trial_table(rows: list[dict[str, Any]], out_dir: Path) -> None:
    """``trials.csv`` + ``trials.json`` (deterministic) and ``trial_timings.csv`` (wall clock)."""
    table = []
    for r in rows:
        flat = {k: r[k] for k in DETERMINISTIC_COLUMNS if k != "trial"}
        flat = {
            "trial": r["trial"],
            **{
                f"param_{k}": json.dumps(v) if isinstance(v, list) else v
                for k, v in r["params"].items()
            },
            **flat,
        }
        table.append(flat)
    pd.DataFrame(table).to_csv(out_dir / "trials.csv", index=False, float_format="%.12g")
    stable = [{k: v for k, v in r.items() if k not in ("seconds", "tune_trial_id")} for r in rows]
    (out_dir / "trials.json").write_text(json.dumps(stable, indent=2) + "\n")
    timings = [
        {
            "trial": r["trial"],
            "tune_trial_id": r["tune_trial_id"],
            "seconds": r["seconds"],
            "env_steps_per_s": (r["env_steps"] / r["seconds"]) if r["seconds"] else None,
        }
        for r in rows
    ]
    pd.DataFrame(timings).to_csv(out_dir / "trial_timings.csv", index=False)


def plot_results(
    rows: list[dict[str, Any]], spec: dict[str, Any], out_dir: Path, metric: str
) -> list[Path]:
    """Parameter-vs-objective scatter per searched field, and the learning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    scored = [r for r in rows if r["objective"] is not None]
    for name, dist in spec.items():
        fig, ax = plt.subplots(figsize=(5, 3.5))
        values = [r["params"][name] for r in scored]
        ys = [r["objective"] for r in scored]
        if "choice" in dist:
            labels = [json.dumps(v) for v in dist["choice"]]
            xs: list[float] = [float(labels.index(json.dumps(v))) for v in values]
            ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        else:
            xs = [float(v) for v in values]
            if "loguniform" in dist:
                ax.set_xscale("log")
        colors = ["tab:blue" if r["completed"] else "tab:gray" for r in scored]
        ax.scatter(xs, ys, c=colors)
        ax.set_xlabel(name)
        ax.set_ylabel(f"validation {metric}")
        ax.set_title(f"{name} vs validation {metric} (grey: stopped by ASHA)", fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = plots / f"param_{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        curve_path = out_dir / "curves" / f"{r['trial']}.csv"
        if not curve_path.exists() or curve_path.stat().st_size < 5:
            continue
        curve = pd.read_csv(curve_path)
        if curve.empty or "env_steps" not in curve:
            continue
        a1.plot(curve["env_steps"], curve["objective"], marker="o", ms=3, label=r["trial"])
        if "episode_return_mean" in curve:
            a2.plot(curve["env_steps"], curve["episode_return_mean"], marker="o", ms=3)
    a1.set_xlabel("env steps")
    a1.set_ylabel(f"validation {metric}")
    a1.set_title("validation objective")
    a1.legend(fontsize=7)
    a2.set_xlabel("env steps")
    a2.set_ylabel("episode return mean (training)")
    a2.set_title("training return")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    path = plots / "learning_curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written


def pick_best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Best final objective among trials that ran the full budget (else among all)."""
    ok = [r for r in rows if r["status"] == "ok" and r["objective"] is not None]
    if not ok:
        raise RuntimeError("no trial produced a validation objective")
    pool = [r for r in ok if r["completed"]] or ok
    return max(pool, key=lambda r: (r["objective"], -int(r["trial"].split("_")[-1])))


def seed_spread(
    cfg: TrainConfig, seeds: list[int], out_dir: Path, first: float | None = None
) -> dict[str, Any]:
    """Re-run ``cfg`` on ``seeds``; the spread includes the trial's own objective (``first``)."""
    from trainer.train import train

    results = [
        train(cfg.replace(seed=seed), out_dir / f"seed_{seed}", label=f"seed {seed}")
        for seed in seeds
    ]
    runs = [
        {"seed": seed, "objective": r.objective, "run": str(r.out_dir)}
        for seed, r in zip(seeds, results, strict=True)
    ]
    values: list[float] = [float(r.objective) for r in results]
    values += [first] if first is not None else []
    return {
        "runs": runs,
        "objectives": values,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def write_summary(out_dir: Path, best: dict[str, Any], metric: str, settings: TuneSettings) -> None:
    spread = best.get("seed_spread") or {}
    lines = [
        f"# Tune run {out_dir.name}",
        "",
        f"Objective: mean {metric} over the walk-forward validation folds, net of costs and exit "
        "costs (greedy policy, backtester); the final hold-out is never read.",
        f"Trials: {settings.num_samples}, search seed {settings.seed}, ASHA grace "
        f"{settings.grace_period}, reduction {settings.reduction_factor}.",
        "",
        f"## Best trial: {best['trial']} (objective {best['objective']:.4f})",
        "",
        "| parameter | value |",
        "|---|---|",
        *[f"| {k} | {json.dumps(v)} |" for k, v in best["params"].items()],
        "",
    ]
    if spread:
        lines += [
            "## Seed spread of the best config",
            "",
            f"objectives {', '.join(f'{v:.3f}' for v in spread['objectives'])}: mean "
            f"{spread['mean']:.3f}, std {spread['std']:.3f}, min {spread['min']:.3f}, max "
            f"{spread['max']:.3f}",
            "",
        ]
    lines += ["Plots: plots/param_*.png, plots/learning_curves.png; table: trials.csv.", ""]
    (out_dir / "summary.md").write_text("\n".join(lines))
