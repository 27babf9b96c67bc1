"""python -m bench [--quick] — run every benchmark, write bench/results.json, refresh README table.

Each benchmark returns rows (see ``bench.common``); one that cannot run yet, or fails, becomes a
row that says why instead of stopping the others.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ibsim.process import free_ports

from bench.common import not_possible

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

# (module, function, row names it produces) — the function takes (bus_env, quick).
BENCHMARKS: list[tuple[str, str, list[str]]] = [
    ("bench.bench_bus", "bench_bus_publish", ["bus_publish"]),
    (
        "bench.bench_inference",
        "bench_inference",
        [
            "bar_to_signal_1",
            "bar_to_signal_100",
            "inference_throughput",
            "onnx_call",
            "inference_rss_mb",
        ],
    ),
    (
        "bench.bench_sharding",
        "bench_sharding",
        [f"sharding_{n}_{kind}" for n in (1, 2, 3) for kind in ("burst", "throughput")],
    ),
    ("bench.bench_execution", "bench_execution", ["signal_to_order_ack"]),
    (
        "bench.bench_live_data",
        "bench_live_data",
        ["live_bar_to_order_ack", "sim_bar_to_marketdata_publish"],
    ),
    (
        "bench.bench_env_eval",
        "bench_env_eval",
        ["env_step", "eval_2500_daily", "eval_175k_intraday"],
    ),
    ("bench.bench_rllib", "bench_rllib_rows", ["rllib_steps_per_s"]),
    # opt-in (BENCH_CLUSTER=1): the compose `cluster` profile beside local Ray
    (
        "bench.bench_ray_cluster",
        "bench_ray_cluster_rows",
        ["tune_trials_per_hour_cluster", "rllib_steps_per_s_cluster"],
    ),
    (
        "bench.bench_policies",
        "bench_policies",
        ["onnx_call_lstm", "onnx_call_attention", "onnx_call_ensemble"],
    ),
]


# Measured a second time on a plain forwarder (BUS_CURVE=0), everything else equal: each CURVE-on
# row above then takes its CURVE-off twin as its baseline, so its ratio is the cost of CURVE.
CURVE_OFF: list[tuple[str, str, str]] = [
    ("bench.bench_bus", "bench_bus_publish", "bus_publish"),
    ("bench.bench_inference", "bench_bar_to_signal_1", "bar_to_signal_1"),
]
CURVE_OFF_SUFFIX = "_curve_off"


@contextlib.contextmanager
def private_bus(curve: bool = True) -> Iterator[dict[str, str]]:
    """A forwarder process on fresh ports, with its own secret and CURVE keys, for the
    benchmarks' services. ``curve`` sets ``BUS_CURVE`` (on: the production forwarder, a Python
    poll loop admitting known keys; off: the plain C ``zmq.proxy``, plaintext)."""
    state = ROOT / "var" / "bench"
    state.mkdir(parents=True, exist_ok=True)
    # one call for every port (below the ephemeral range, distinct: ibsim.process.free_ports)
    services = ("marketdata", "inference", "execution", "trainer", "monitor")
    pub_port, sub_port, *cmd_ports = free_ports(2 + len(services))
    env = {
        "BUS_PUB_ENDPOINT": f"tcp://127.0.0.1:{pub_port}",
        "BUS_SUB_ENDPOINT": f"tcp://127.0.0.1:{sub_port}",
        "BUS_SECRET_FILE": str(state / "bus.key"),
        "BUS_KEYS_DIR": str(state / "curve"),
        "BUS_CURVE": "1" if curve else "0",
    }
    for service, port in zip(services, cmd_ports, strict=True):
        env[f"{service.upper()}_CMD_ENDPOINT"] = f"tcp://127.0.0.1:{port}"
    if curve:
        from shared.keys import ensure_keys

        ensure_keys(env["BUS_KEYS_DIR"])  # before any process starts: no race on first start
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.busproxy"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        if proc.poll() is not None:
            raise RuntimeError(f"the bus forwarder exited with {proc.returncode}")
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages = {}
    for name in (
        "pyzmq",
        "msgspec",
        "numpy",
        "onnxruntime",
        "numba",
        "torch",
        "ray",
        "ib_async",
        "gymnasium",
        "pandas",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            packages[name] = importlib.metadata.version(name)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
    }


def _print_row(row: dict[str, Any]) -> None:
    print(
        f"  {row['name']}: {row['value']} {row['unit']}"
        + (f" (p99 {row['p99']})" if "p99" in row else "")
        + (
            f" vs {row['baseline']['name']} {row['baseline']['value']}"
            if row.get("baseline")
            else ""
        ),
        flush=True,
    )


def _call(
    module_name: str, func_name: str, names: list[str], env: dict[str, str], quick: bool
) -> list[dict[str, Any]]:
    started = time.monotonic()
    print(f"bench: {module_name}.{func_name} (BUS_CURVE={env['BUS_CURVE']}) ...", flush=True)
    try:
        module = importlib.import_module(module_name)
        func: Callable[[dict[str, str], bool], list[dict[str, Any]]] = getattr(module, func_name)
    except (ImportError, AttributeError) as exc:
        return [not_possible(n, f"{module_name} unavailable ({exc})") for n in names]
    try:
        new_rows = func(env, quick)
    except Exception as exc:  # one broken benchmark must not hide the others
        traceback.print_exc()
        return [not_possible(n, f"failed: {exc!r}"[:200]) for n in names]
    for row in new_rows:
        _print_row(row)
    print(f"  ({time.monotonic() - started:.1f}s)", flush=True)
    return new_rows


def _curve_cost(rows: list[dict[str, Any]], off_rows: list[dict[str, Any]]) -> None:
    """Give each CURVE-on row its CURVE-off twin as baseline (ratio = on / off); the row's own
    baseline (JSON, bare round trip; measured with CURVE on) moves into its note."""
    off = {r["name"]: r for r in off_rows}
    for row in rows:
        twin = off.get(row["name"] + CURVE_OFF_SUFFIX)
        if twin is None or row.get("value") is None or twin.get("value") is None:
            continue
        own = row.get("baseline")
        if own:
            row["note"] = f"{row['note']}; {own['name']} (CURVE on) {own['value']}"
        row["baseline"] = {"name": "same, CURVE off (plain zmq.proxy)", "value": twin["value"]}
        row["ratio"] = round(float(row["value"]) / float(twin["value"]), 3)
        if "p99" in row and "p99" in twin:
            row["note"] += f"; CURVE off p99 {twin['p99']}"


def run(quick: bool, only: set[str] | None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    off_rows: list[dict[str, Any]] = []
    # CURVE off first (its own forwarder), then everything on the production CURVE bus
    with private_bus(curve=False) as env:
        for module_name, func_name, name in CURVE_OFF:
            if only and name not in only:
                continue
            for row in _call(module_name, func_name, [name], env, quick):
                row["name"] += CURVE_OFF_SUFFIX
                off_rows.append(row)
    with private_bus(curve=True) as env:
        for module_name, func_name, names in BENCHMARKS:
            if only and not (only & set(names)):
                continue
            if only and only & set(names) == {"bar_to_signal_1"}:
                func_name = "bench_bar_to_signal_1"  # not the other inference rows
            rows.extend(_call(module_name, func_name, names, env, quick))
    _curve_cost(rows, off_rows)
    for name in [n for _, _, n in CURVE_OFF]:  # each off row right after its CURVE-on row
        at = next((i for i, r in enumerate(rows) if r["name"] == name), len(rows) - 1)
        twin = [r for r in off_rows if r["name"] == name + CURVE_OFF_SUFFIX]
        rows[at + 1 : at + 1] = twin
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "machine": machine(),
        "rows": rows,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Measured {results['date']} ({results['mode']} mode) on {m['cpu']}, "
        f"{m['cores']} cores, Python {m['python']}; `bench/results.json` has every field.",
        "",
        "| benchmark | value | p99 | unit | n | baseline (same run) | ratio | goal | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        base = r.get("baseline") or {}
        base_text = f"{base.get('name')}: {_fmt(base.get('value'))}" if base else "—"
        lines.append(
            f"| {r['name']} | {_fmt(r['value'])} | {_fmt(r.get('p99'))} | {r['unit']} "
            f"| {r['n']} | {base_text} | {_fmt(r.get('ratio'))} | {r.get('goal', '')} "
            f"| {r.get('note', '')} |"
        )
    return "\n".join(lines)


def update_readme(results: dict[str, Any]) -> None:
    if not README.exists():
        return
    text = README.read_text()
    if START not in text or END not in text:
        return
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{table(results)}\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI smoke mode (< 2 minutes)")
    parser.add_argument("--only", help="comma-separated row names to run")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    results = run(args.quick, only)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    if not args.no_readme and not only:
        update_readme(results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
