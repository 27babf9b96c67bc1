"""The Tune search space: the profiles' spaces, their Ray Tune form, and the second-round narrowing.

A space is plain JSON (``field -> {"choice": [...]} | {"loguniform": [lo, hi]} |
{"uniform": [lo, hi]}``, every field a ``TrainConfig`` field), so a run records what it searched
(``search_space.json``) and ``--narrow-from`` can shrink it around the best trials.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

from trainer.config import TrainConfig

# Space spec: field -> {"choice": [...]} | {"loguniform": [lo, hi]} | {"uniform": [lo, hi]}.
# Plain JSON, so a run records what it searched and --narrow-from can shrink it.
SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "lr": {"loguniform": [1e-4, 1e-3]},
        "hiddens": {"choice": [[64, 64], [128, 128]]},
        "activation": {"choice": ["tanh", "relu"]},
        "gamma": {"choice": [0.9, 0.99]},
        "reward": {"choice": ["log_return", "diff_sharpe"]},
        "position_change_penalty": {"choice": [0.0, 0.05]},
    },
    "full": {
        "lr": {"loguniform": [3e-5, 3e-3]},
        "hiddens": {"choice": [[64, 64], [128, 128], [256, 256], [128, 64, 32]]},
        "activation": {"choice": ["tanh", "relu", "silu"]},
        "gamma": {"choice": [0.9, 0.95, 0.99, 0.995]},
        "train_batch_size": {"choice": [4000, 8000, 16000]},
        "entropy_coeff": {"loguniform": [1e-4, 3e-2]},
        "train_cost_multiplier": {"choice": [0.5, 1.0, 2.0, 4.0]},
        "episode_length": {"choice": [63, 126, 252, 504]},
        "position_change_penalty": {"choice": [0.0, 0.01, 0.05, 0.2]},
        "risk_fraction": {"choice": [0.5, 1.0]},
        "reward": {"choice": ["pnl", "log_return", "diff_sharpe", "drawdown"]},
    },
}


def to_tune_space(spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for name, dist in spec.items():
        if name not in TrainConfig.__struct_fields__:
            raise ValueError(f"search space field {name!r} is not a TrainConfig field")
        ((kind, args),) = dist.items()
        if kind == "choice":
            space[name] = tune.choice(list(args))
        elif kind == "loguniform":
            space[name] = tune.loguniform(float(args[0]), float(args[1]))
        elif kind == "uniform":
            space[name] = tune.uniform(float(args[0]), float(args[1]))
        else:
            raise ValueError(f"{name}: unknown distribution {kind!r}")
    return space


def narrow_space(
    spec: dict[str, dict[str, Any]],
    trials: list[dict[str, Any]],
    keep: int = 2,
    shrink: float = 0.5,
) -> dict[str, dict[str, Any]]:
    """A second-round space around the best region of ``trials`` (rows of ``trials.json``).

    Continuous ranges are centred on the best trial's value and shrunk by ``shrink`` (in log
    space for ``loguniform``), within the old bounds; choices keep the ``keep`` values with the
    best mean objective (the best trial's value always stays).
    """
    scored = [t for t in trials if t.get("objective") is not None and math.isfinite(t["objective"])]
    if not scored:
        raise ValueError("no trial with a finite objective to narrow around")
    best = max(scored, key=lambda t: t["objective"])
    out: dict[str, dict[str, Any]] = {}
    for name, dist in spec.items():
        ((kind, args),) = dist.items()
        value = best["params"][name]
        if kind == "choice":
            means: dict[str, list[float]] = {}
            for t in scored:
                means.setdefault(json.dumps(t["params"][name]), []).append(t["objective"])
            ranked = sorted(means, key=lambda k: -statistics.fmean(means[k]))
            kept = [json.dumps(value)] + [k for k in ranked if k != json.dumps(value)]
            kept = kept[: max(1, keep)]
            out[name] = {"choice": [v for v in args if json.dumps(v) in kept]}
        else:
            lo, hi = float(args[0]), float(args[1])
            if kind == "loguniform":
                llo, lhi, lv = math.log(lo), math.log(hi), math.log(float(value))
                half = (lhi - llo) * shrink / 2
                a, b = max(llo, lv - half), min(lhi, lv + half)
                out[name] = {"loguniform": [math.exp(a), math.exp(b)]}
            else:
                half = (hi - lo) * shrink / 2
                out[name] = {
                    "uniform": [max(lo, float(value) - half), min(hi, float(value) + half)]
                }
    return out
