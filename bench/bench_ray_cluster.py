"""Tune trials per hour and RLlib env steps/s: the compose ``cluster`` profile beside local Ray.

Opt-in (``BENCH_CLUSTER=1 python -m bench`` or ``make bench BENCH_CLUSTER=1``): it needs the
Docker engine and the trainer image, and it loads every core for minutes. Without it the rows say
how to run them.

Both sides run the same probe (``PROBE`` below): a Tune grid of ``TRIALS`` trials, 1 CPU each,
each a PPO of ``trainer.config.TrainConfig()`` (the trainer's own settings, seeded) trained for
``ITERATIONS`` iterations on the real trading env. Measured: the wall time of ``Tuner.fit`` ->
trials per hour, and the env steps sampled+trained by all trials per wall second.

* local: the probe on this machine, ``ray.init(num_cpus=2)`` (two trials at a time);
* cluster: ``docker compose -p rlt-raybench --profile cluster`` (a 0-CPU Ray head and two 1-CPU
  workers from the trainer image), the probe in a one-off trainer container that joins as a 0-CPU
  node, as the README describes; two trials at a time, one per worker.

Honest reading: the "cluster" is three containers on the SAME machine, so it has the same cores as
local mode and pays Ray's cross-node scheduling, object transfer and container overhead on top; the
rows show that overhead and that trials really run on the workers (the note counts trials per
node), not a speed-up. On real separate machines the workers' cores add up.

    BENCH_CLUSTER=1 python -m bench.bench_ray_cluster
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import not_possible, rate_row

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "rlt-raybench"
TRIALS = 4
ITERATIONS = 2
ROWS = ["tune_trials_per_hour_cluster", "rllib_steps_per_s_cluster"]

PROBE = """
import json, os, socket, sys, time
import ray
from ray import tune
TRIALS, ITERATIONS = int(sys.argv[1]), int(sys.argv[2])
from trainer.train import init_ray
init_ray(num_cpus=2)  # RAY_ADDRESS set: join the cluster; else a private local Ray
def trial(config):
    from trainer.config import TrainConfig
    from trainer.train import build_algo_config, init_ray, prepare_data
    init_ray()
    cfg = TrainConfig().with_overrides({"seed": config["seed"]})
    data = prepare_data(cfg)
    algo = build_algo_config(cfg, data.train.env_config).build_algo()
    steps, t0 = 0, time.perf_counter()
    for _ in range(ITERATIONS):
        steps += int(algo.train()["env_runners"]["num_env_steps_sampled"])
    train_s = time.perf_counter() - t0
    algo.stop()
    tune.report({"steps": steps, "train_s": train_s, "host": socket.gethostname(),
                 "node": ray.get_runtime_context().get_node_id()})
t0 = time.perf_counter()
results = tune.Tuner(
    tune.with_resources(trial, {"cpu": 1}),
    param_space={"seed": tune.grid_search(list(range(TRIALS)))},
    run_config=tune.RunConfig(storage_path=os.environ.get("PROBE_STORAGE", "/tmp/ray-probe"),
                              verbose=0),
).fit()
wall = time.perf_counter() - t0
rows = [r.metrics for r in results if r.metrics and "steps" in r.metrics]
print(json.dumps({"wall_s": wall, "trials": len(rows),
                  "steps": sum(r["steps"] for r in rows),
                  "train_s": sum(r["train_s"] for r in rows),
                  "hosts": sorted(r["host"] for r in rows), "driver": socket.gethostname(),
                  "errors": [str(r.error)[-600:] for r in results if r.error]}))
"""


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"no result line in: {text[-800:]}")


def run_local(trials: int = TRIALS, iterations: int = ITERATIONS) -> dict[str, Any]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PROBE_STORAGE": "/tmp/ray-probe-local"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(trials), str(iterations)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"local probe failed: {out.stderr[-800:]}")
    return _last_json(out.stdout)


def _compose(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-p", PROJECT, "--profile", "cluster", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False,
    )  # fmt: skip


def run_cluster(trials: int = TRIALS, iterations: int = ITERATIONS) -> dict[str, Any]:
    """Up the profile (head + 2 workers), run the probe from a trainer container, always down."""
    env = {**os.environ, "RLTRADER_TAG": os.environ.get("RLTRADER_TAG", "raybench")}
    try:
        up = _compose(
            "up", "-d", "--wait", "--wait-timeout", "300", "ray-head", "ray-worker",
            env=env, timeout=420,
        )  # fmt: skip
        if up.returncode != 0:
            raise RuntimeError(f"cluster up failed: {up.stderr[-800:]}")
        run = _compose(
            "run", "--rm", "--no-deps", "-e", "RAY_ADDRESS=ray-head:6379",
            "-e", "RAY_AUTH_MODE=disabled", "-e", "PROBE_STORAGE=/data/results/ray-probe",
            "--entrypoint", "sh", "trainer", "-c",
            "ray start --address=ray-head:6379 --num-cpus=0 --disable-usage-stats >/dev/null"
            ' && exec python -c "$0" "$1" "$2"', PROBE, str(trials), str(iterations),
            env=env, timeout=3600,
        )  # fmt: skip
        if run.returncode != 0:
            raise RuntimeError(f"cluster probe failed: {(run.stderr or run.stdout)[-800:]}")
        return _last_json(run.stdout)
    finally:
        _compose("down", "-v", "--remove-orphans", "-t", "10", env=env, timeout=300)


def _rates(result: dict[str, Any]) -> tuple[float, float]:
    return result["trials"] / result["wall_s"] * 3600.0, result["steps"] / result["wall_s"]


def bench_ray_cluster(quick: bool) -> list[dict[str, Any]]:
    if os.environ.get("BENCH_CLUSTER", "") != "1":
        why = "opt-in: BENCH_CLUSTER=1 (Docker engine + trainer image; minutes of every core)"
        return [not_possible(name, why) for name in ROWS]
    started = time.monotonic()
    local = run_local()
    cluster = run_cluster()
    if cluster["trials"] != TRIALS or local["trials"] != TRIALS:
        raise RuntimeError(f"trials missing: local {local}, cluster {cluster}")
    local_tph, local_sps = _rates(local)
    tph, sps = _rates(cluster)
    workers = sorted(set(cluster["hosts"]))
    placed = ", ".join(f"{h}: {cluster['hosts'].count(h)}" for h in workers)
    where = (
        f"ONE {os.cpu_count()}-core machine: Ray head (0 CPU) + 2 workers (1 CPU) as containers,"
        f" trials per node {placed}, none on the driver ({cluster['driver'] not in workers})"
    )
    common = f"{TRIALS} PPO trials x {ITERATIONS} iterations, 1 CPU each; {where}"
    return [
        rate_row(
            "tune_trials_per_hour_cluster", tph, "trials/h", TRIALS,
            baseline={"name": "local Ray, num_cpus=2", "value": round(local_tph, 1)},
            note=f"{common}; Tuner.fit {cluster['wall_s']:.0f} s vs local {local['wall_s']:.0f} s",
        ),
        rate_row(
            "rllib_steps_per_s_cluster", sps, "env steps/s", int(cluster["steps"]),
            baseline={"name": "local Ray, num_cpus=2", "value": round(local_sps, 1)},
            note=(
                f"all trials' env steps sampled+trained / Tuner.fit wall; per trial while "
                f"training {cluster['steps'] / cluster['train_s']:,.0f}/s vs local "
                f"{local['steps'] / local['train_s']:,.0f}/s; whole run "
                f"{time.monotonic() - started:.0f} s"
            ),
        ),
    ]  # fmt: skip


def bench_ray_cluster_rows(bus_env: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    """``python -m bench`` entry point (the bus is not used)."""
    return bench_ray_cluster(quick)


if __name__ == "__main__":
    for row in bench_ray_cluster("--quick" in sys.argv):
        print(json.dumps(row))
