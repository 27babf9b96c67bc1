"""The opt-in Ray cluster benchmark rows: without BENCH_CLUSTER=1 they say how to get them (no
Docker, no Ray started); with results, the rows carry the local run as baseline."""

from __future__ import annotations

import pytest

from bench import bench_ray_cluster
from bench.bench_ray_cluster import ROWS
from bench.bench_ray_cluster import bench_ray_cluster as rows_for

pytestmark = pytest.mark.unit


def test_rows_are_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_CLUSTER", raising=False)
    rows = rows_for(quick=True)
    assert [r["name"] for r in rows] == ROWS
    assert all(r["value"] is None and "BENCH_CLUSTER=1" in r["note"] for r in rows)


def test_rows_from_both_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CLUSTER", "1")
    local = {"wall_s": 60.0, "trials": 4, "steps": 64_000, "train_s": 40.0, "hosts": ["h"] * 4,
             "driver": "h"}  # fmt: skip
    cluster = {"wall_s": 90.0, "trials": 4, "steps": 64_000, "train_s": 60.0,
               "hosts": ["w1", "w2", "w1", "w2"], "driver": "d"}  # fmt: skip
    monkeypatch.setattr(bench_ray_cluster, "run_local", lambda: local)
    monkeypatch.setattr(bench_ray_cluster, "run_cluster", lambda: cluster)
    trials, steps = rows_for(quick=False)
    assert trials["value"] == 160.0 and trials["baseline"]["value"] == 240.0  # 4 per 90 s / 60 s
    assert steps["value"] == pytest.approx(711.11) and steps["ratio"] == pytest.approx(0.667)
    assert "w1: 2, w2: 2" in trials["note"] and "ONE" in trials["note"]


def test_missing_trials_fail_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CLUSTER", "1")
    ok = {"wall_s": 1.0, "trials": 4, "steps": 1, "train_s": 1.0, "hosts": [], "driver": "d"}
    monkeypatch.setattr(bench_ray_cluster, "run_local", lambda: ok)
    monkeypatch.setattr(bench_ray_cluster, "run_cluster", lambda: {**ok, "trials": 2})
    with pytest.raises(RuntimeError, match="trials missing"):
        rows_for(quick=False)
