"""Test helper: a paper-vs-backtest report whose sessions satisfy the execution live guard."""

from __future__ import annotations

import json
import time
from pathlib import Path


def write_passing_track_record(root: Path, sessions: int = 20) -> Path:
    """``root/paper-vs-backtest-test/report.json`` with ``sessions`` sessions within bound."""
    folder = root / "paper-vs-backtest-test"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "session": f"2024-{1 + i // 28:02d}-{1 + i % 28:02d}",
            "deviation": 0.0,
            "within_bound": True,
        }
        for i in range(sessions)
    ]
    path = folder / "report.json"
    path.write_text(json.dumps({"generated_ns": time.time_ns(), "sessions": rows}))
    return path
