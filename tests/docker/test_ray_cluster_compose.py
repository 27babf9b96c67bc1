"""The ``cluster`` compose profile: a Ray head (0 CPUs) and two Ray workers from the trainer image.
A tiny Tune run from a trainer container that joins as a 0-CPU node (``ray start
--address=ray-head:6379 --num-cpus=0``, then ``RAY_ADDRESS=ray-head:6379``, as the README says)
places its trials on the workers, never on the head or on the trainer's own container.

Slow (the trainer image, three Ray nodes): marked ``slow`` and ``docker``. Its own compose project
(``rltrader-ray-<random>``), torn down with ``down -v`` whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from test_compose import LOCAL_BASE_IMAGE, Stack, _ensure_engine, _wait

pytestmark = [pytest.mark.docker, pytest.mark.slow]

UP_LIMIT_S = 300
TUNE_LIMIT_S = 300

# Run inside a one-off trainer container: 4 trials of 1 CPU each; each reports the node it ran on.
TUNE_PROBE = """
import json, os, socket
import ray
from ray import tune
ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
head = ray.get_runtime_context().gcs_address
def trial(config):
    ctx = ray.get_runtime_context()
    tune.report({"score": config["x"] * 2, "node": ctx.get_node_id(), "host": socket.gethostname()})
tuner = tune.Tuner(
    tune.with_resources(trial, {"cpu": 1}),
    param_space={"x": tune.grid_search([1, 2, 3, 4])},
    run_config=tune.RunConfig(storage_path="/data/results/ray-cluster-test", verbose=0),
)
results = tuner.fit()
nodes = [{"node": n["NodeID"], "cpus": n["Resources"].get("CPU", 0), "alive": n["Alive"],
          "host": n["NodeManagerHostname"]} for n in ray.nodes()]
print(json.dumps({"trials": [{"node": r.metrics["node"], "host": r.metrics["host"],
                              "score": r.metrics["score"]} for r in results],
                  "nodes": nodes, "driver_host": socket.gethostname()}))
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Stack]:
    _ensure_engine()
    env = dict(os.environ)
    if "BASE_IMAGE" not in env:
        local = subprocess.run(
            ["docker", "image", "inspect", LOCAL_BASE_IMAGE], capture_output=True
        )
        env["BASE_IMAGE"] = LOCAL_BASE_IMAGE if local.returncode == 0 else "python:3.11-slim"
    env["RLTRADER_TAG"] = os.environ.get("RLTRADER_TAG", "test")
    env.pop("COMPOSE_PROJECT_NAME", None)
    s = Stack(f"rltrader-ray-{uuid.uuid4().hex[:8]}", env)
    try:
        s.compose("build", "trainer", timeout=1800)
        s.compose(
            "--profile", "cluster", "up", "-d", "--wait", "--wait-timeout", str(UP_LIMIT_S),
            "ray-head", "ray-worker", timeout=UP_LIMIT_S + 60,
        )  # fmt: skip
        yield s
    except BaseException:
        logs = s.compose("--profile", "cluster", "logs", "--no-color", "--tail", "80", check=False)
        print(logs.stdout)
        raise
    finally:
        s.compose(
            "--profile", "cluster", "down", "-v", "--remove-orphans", "-t", "10",
            timeout=300, check=False,
        )  # fmt: skip


def test_cluster_profile_has_a_head_and_two_workers_and_no_published_port(cluster: Stack) -> None:
    rows = cluster.containers()
    workers = [r for r in rows if r["Service"] == "ray-worker" and r["State"] == "running"]
    heads = [r for r in rows if r["Service"] == "ray-head" and r["State"] == "running"]
    assert len(heads) == 1 and len(workers) == 2, rows
    for row in rows:  # the dashboard is published only with RAY_DASHBOARD=1 (another file)
        assert not [p for p in row.get("Publishers") or [] if p.get("PublishedPort")], row


def test_a_tiny_tune_places_its_trials_on_the_workers(cluster: Stack) -> None:
    def run() -> dict:
        out = cluster.compose(
            "--profile", "cluster", "run", "--rm", "--no-deps",
            "-e", "RAY_ADDRESS=ray-head:6379", "-e", "RAY_AUTH_MODE=disabled",
            "--entrypoint", "sh", "trainer", "-c",
            'ray start --address=ray-head:6379 --num-cpus=0 --disable-usage-stats >/dev/null'
            ' && exec python -c "$0"', TUNE_PROBE, timeout=TUNE_LIMIT_S,
        ).stdout  # fmt: skip
        result: dict = json.loads(out.strip().splitlines()[-1])
        return result

    result = _wait("a tiny Tune on the cluster", TUNE_LIMIT_S, run, every_s=5)
    trials = result["trials"]
    assert sorted(t["score"] for t in trials) == [2, 4, 6, 8]
    nodes = {n["node"]: n for n in result["nodes"] if n["alive"]}
    workers = {nid for nid, n in nodes.items() if n["cpus"] > 0}
    assert len(nodes) == 4 and len(workers) == 2, nodes  # head and driver offer no CPU
    placed = {t["node"] for t in trials}
    assert placed <= workers, (placed, nodes)
    assert result["driver_host"] not in {t["host"] for t in trials}  # not on the trainer
    print(json.dumps({"trials_per_node": {n: sum(t["node"] == n for t in trials) for n in placed}}))
