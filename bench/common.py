"""Row format and statistics shared by every benchmark.

A row: ``name``, ``unit``, ``value`` (the median for latencies, the rate for throughputs),
``p50``/``p99`` for latencies, ``n`` samples, ``baseline`` {name, value} measured in the same run,
``ratio`` (value / baseline value), ``goal`` (text from the issue) and ``note``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def latency_row(
    name: str,
    samples_s: list[float] | np.ndarray,
    *,
    unit: str = "ms",
    baseline: dict[str, Any] | None = None,
    goal: str = "",
    note: str = "",
) -> dict[str, Any]:
    scale = {"ms": 1e3, "us": 1e6}[unit]
    arr = np.asarray(samples_s, dtype=np.float64) * scale
    p50 = float(np.percentile(arr, 50))
    row = {
        "name": name,
        "unit": unit,
        "value": round(p50, 4),
        "p50": round(p50, 4),
        "p99": round(float(np.percentile(arr, 99)), 4),
        "n": int(arr.size),
        "baseline": baseline,
        "ratio": None,
        "goal": goal,
        "note": note,
    }
    if baseline and baseline.get("value"):
        row["ratio"] = round(p50 / float(baseline["value"]), 3)
    return row


def rate_row(
    name: str,
    value: float,
    unit: str,
    n: int,
    *,
    baseline: dict[str, Any] | None = None,
    goal: str = "",
    note: str = "",
) -> dict[str, Any]:
    row = {
        "name": name,
        "unit": unit,
        "value": round(value, 2),
        "n": n,
        "baseline": baseline,
        "ratio": None,
        "goal": goal,
        "note": note,
    }
    if baseline and baseline.get("value"):
        row["ratio"] = round(value / float(baseline["value"]), 3)
    return row


def not_possible(name: str, why: str) -> dict[str, Any]:
    return {
        "name": name,
        "unit": "",
        "value": None,
        "n": 0,
        "baseline": None,
        "ratio": None,
        "goal": "",
        "note": f"not measured: {why}",
    }
