"""RLlib training throughput: env steps sampled AND trained per second, default vs tuned setup.

Both runs train PPO (new API stack, ``num_env_runners=0``: sampling and learning in one process)
on the real trading env (``shared.env``, AAPL daily bars <= 2017, costs on) and count the env
steps of whole ``algo.train()`` iterations (sampling + SGD) after one warm-up iteration.

* baseline ``rllib_default``: the setup measured in RLLIB-NOTES (one env per runner, 4000-step
  batches, 500-step minibatches, 4 epochs, RLlib's default 256x256 MLP);
* ``rllib_steps_per_s``: ``trainer.config.TrainConfig()`` defaults: 32 envs stepped in one numpy
  call (``VectorTradingEnv`` via ``gym_env_vectorize_mode="vector_entry_point"``), 8000-step
  batches of 2000-step minibatches, 4 epochs, 64x64 MLP;
* ``rllib_steps_per_s_mlp256``: the tuned sampling/batching with the default 256x256 MLP, so the
  network-size share of the speed-up is visible.

Each configuration runs in a fresh child process (its own Ray), alternating, ``repeats`` times;
the value is the median rate, the note gives the best one and the rate per CPU-second of the
process (less sensitive to other load on a shared machine).

    python -m bench.bench_rllib [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import rate_row

GOAL = ">= 4,000 env steps/s sampled+trained on 2 cores (default ~1,300)"

SETUPS: dict[str, dict[str, Any]] = {
    "rllib_default": {
        "num_envs_per_env_runner": 1,
        "vectorize_mode": "sync",
        "train_batch_size": 4000,
        "minibatch_size": 500,
        "num_epochs": 4,
        "hiddens": [256, 256],
        "default_model": True,
    },
    "rllib_steps_per_s": {},  # TrainConfig() as is
    "rllib_steps_per_s_mlp256": {"hiddens": [256, 256]},
}


def _child(name: str, steps: int) -> dict[str, Any]:
    """Runs inside the child process: build, warm up, time whole iterations."""
    from trainer.config import TrainConfig
    from trainer.progress import quiet_ray
    from trainer.train import build_algo_config, init_ray, prepare_data

    quiet_ray()
    overrides = dict(SETUPS[name])
    default_model = overrides.pop("default_model", False)
    cfg = TrainConfig().with_overrides({**overrides, "seed": 0})
    init_ray()
    data = prepare_data(cfg)
    config = build_algo_config(cfg, data.train.env_config)
    if default_model:
        from ray.rllib.algorithms.ppo import PPOConfig

        # exactly the RLLIB-NOTES setup: PPO defaults apart from the four named fields
        config = (
            PPOConfig()
            .environment(config.env, env_config=config.env_config)
            .env_runners(num_env_runners=0)
            .training(train_batch_size_per_learner=4000, minibatch_size=500, num_epochs=4, lr=3e-4)
            .debugging(seed=0)
        )
    algo = config.build_algo()
    algo.train()  # warm-up: module build, first episodes
    done = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while done < steps:
        result = algo.train()
        done += int(result["env_runners"]["num_env_steps_sampled"])
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    algo.stop()
    return {"name": name, "steps": done, "wall_s": wall, "cpu_s": cpu}


def _measure(name: str, steps: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_rllib", "--child", name, "--steps", str(steps)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=1800,
    )
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"{name}: child failed (rc {out.returncode}): {out.stderr[-600:]}")


def bench_rllib(quick: bool) -> list[dict[str, Any]]:
    """Rows for the tuned setups, each with the default setup measured in the same run."""
    repeats = 1 if quick else 3
    steps = {"rllib_default": 12_000 if quick else 40_000}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SETUPS}
    for _ in range(repeats):
        for name in SETUPS:  # alternate, so slow phases of a shared machine hit every setup
            runs[name].append(_measure(name, steps.get(name, 48_000 if quick else 160_000)))

    def rates(name: str) -> tuple[float, float, float]:
        wall = [r["steps"] / r["wall_s"] for r in runs[name]]
        cpu = [r["steps"] / r["cpu_s"] for r in runs[name] if r["cpu_s"] > 0]
        return statistics.median(wall), max(wall), statistics.median(cpu) if cpu else 0.0

    base, base_best, base_cpu = rates("rllib_default")
    baseline = {"name": "rllib_default", "value": round(base, 1)}
    rows = []
    for name in ("rllib_steps_per_s", "rllib_steps_per_s_mlp256"):
        value, best, per_cpu = rates(name)
        rows.append(
            rate_row(
                name,
                value,
                "env steps/s",
                sum(r["steps"] for r in runs[name]),
                baseline=baseline,
                goal=GOAL if name == "rllib_steps_per_s" else "",
                note=(
                    f"median of {repeats}; best {best:,.0f}/s (default best {base_best:,.0f}/s); "
                    f"per CPU-second {per_cpu:,.0f} vs default {base_cpu:,.0f}"
                ),
            )
        )
    return rows


def bench_rllib_rows(bus_env: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    """``python -m bench`` entry point (the bus is not used)."""
    return bench_rllib(quick)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_rllib")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=48_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.steps)), flush=True)
        return 0
    for row in bench_rllib(args.quick):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
