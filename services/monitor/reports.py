"""The paper-versus-backtest reports the monitor links to, reads and serves (read-only).

``make compare`` writes ``<reports_dir>/paper-vs-backtest-<period>/report.{html,json}`` (plots
beside them). The monitor only reads that tree (``MONITOR_REPORTS_DIR``, default
``evaluation_results``; compose mounts it read-only):

* ``find_reports``: every report folder, newest ``report.json`` first;
* ``report_file``: one file of one report folder for ``GET /reports/<period>/<name>``, or None.
  Path-traversal safe: the period and the name are single plain path components (letters,
  digits, ``.-_``, no leading dot), the name has an allowed extension, and the resolved file must
  still lie inside the reports directory (a symlink pointing out is refused);
* ``summary``: from the newest ``report.json``, the verdict's ``max_deviation`` (the alert's
  input) and the backtest's equity curve for the dashboard.

The JSON is another service's output: every field is optional here and a report that does not
parse is shown as such, never raised. The backtest curve is looked for at
``curves.backtest_equity`` (what ``monitor.compare_report`` writes), ``backtest.equity`` or
``equity.backtest``, and the report's paper curve (``curves.paper_equity``, drawn with it when it
has the same bars), as ``{"t": [...], "equity": [...]}``, a list
of ``[t, equity]`` pairs or a list of ``{"ts"|"t", "equity"}`` objects; ``t`` in seconds,
milliseconds or nanoseconds since the epoch (scaled to seconds), or an ISO date.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PREFIX = "paper-vs-backtest-"
SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
SERVED = {
    ".html": "text/html",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".csv": "text/csv",
}
MAX_REPORTS = 200  # listed at most
MAX_POINTS = 5_000  # backtest points sent to the dashboard
MAX_JSON_BYTES = 20_000_000
# Reports are another program's HTML: no script runs, nothing loads from outside.
REPORT_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; sandbox"
)


def find_reports(root: str | Path) -> list[dict[str, Any]]:
    """Report folders under ``root``: period, files present, mtime; newest first."""
    base = Path(root)
    found: list[dict[str, Any]] = []
    try:
        folders = [p for p in base.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    except OSError:
        return []
    for folder in folders:
        period = folder.name[len(PREFIX) :]
        if not SAFE.match(period):
            continue
        files = {n: (folder / n).is_file() for n in ("report.html", "report.json")}
        if not any(files.values()):
            continue
        stamp = max((folder / n).stat().st_mtime for n, ok in files.items() if ok)
        found.append(
            {
                "period": period,
                "html": f"/reports/{period}/report.html" if files["report.html"] else None,
                "json": f"/reports/{period}/report.json" if files["report.json"] else None,
                "mtime": stamp,
            }
        )
    found.sort(key=lambda r: (-float(r["mtime"]), str(r["period"])))
    return found[:MAX_REPORTS]


def report_file(root: str | Path, period: str, name: str) -> tuple[Path, str] | None:
    """The file and its content type, or None when it must not be served."""
    if not (SAFE.match(period) and SAFE.match(name)) or ".." in period or ".." in name:
        return None
    content_type = SERVED.get(Path(name).suffix.lower())
    if content_type is None:
        return None
    try:
        base = Path(root).resolve(strict=True)
        path = (base / f"{PREFIX}{period}" / name).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path, content_type


def _seconds(t: Any) -> float | None:
    if isinstance(t, str):
        try:
            stamp = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return None
    value = float(t)
    for scale in (1e9, 1e6, 1e3):  # ns, us, ms -> s (anything past year ~5000 in seconds)
        if abs(value) > 1e11 * scale / 1e3:
            return value / scale
    return value


def _points(raw: Any) -> list[tuple[float, float]]:
    pairs: list[tuple[Any, Any]] = []
    if isinstance(raw, dict):
        times = raw.get("t", raw.get("ts"))
        values = raw.get("equity")
        if isinstance(times, list) and isinstance(values, list):
            pairs = list(zip(times, values, strict=False))
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, list | tuple) and len(item) == 2:
                pairs.append((item[0], item[1]))
            elif isinstance(item, dict):
                pairs.append((item.get("ts", item.get("t")), item.get("equity")))
    out = []
    for t, v in pairs:
        ts = _seconds(t)
        if ts is None or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(v):
            out.append((ts, float(v)))
    out.sort()
    step = max(1, math.ceil(len(out) / MAX_POINTS))
    return out[::step]


def _find(data: dict[str, Any], *paths: tuple[str, str]) -> Any:
    for outer, inner in paths:
        node = data.get(outer)
        if isinstance(node, dict) and inner in node:
            return node[inner]
    return None


def summary(root: str | Path) -> dict[str, Any]:
    """The newest report: its period, links, ``verdict.max_deviation`` and backtest curve."""
    reports = find_reports(root)
    latest = next((r for r in reports if r["json"]), None)
    out: dict[str, Any] = {
        "reports": reports,
        "latest": None,
        "max_deviation": None,
        "backtest": None,
        "note": "no comparison yet: run make compare",
    }
    if latest is None:
        return out
    out["latest"] = latest["period"]
    path = Path(root) / f"{PREFIX}{latest['period']}" / "report.json"
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ValueError(f"larger than {MAX_JSON_BYTES} bytes")
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        out["note"] = f"report {latest['period']}: report.json unreadable ({exc})"[:300]
        return out
    verdict = data.get("verdict")
    deviation = verdict.get("max_deviation") if isinstance(verdict, dict) else None
    if isinstance(deviation, int | float) and not isinstance(deviation, bool):
        out["max_deviation"] = float(deviation) if math.isfinite(deviation) else None
    curve = _points(
        _find(data, ("curves", "backtest_equity"), ("backtest", "equity"), ("equity", "backtest"))
    )
    if curve:
        times = [t for t, _ in curve]
        out["backtest"] = {"t": times, "equity": [round(v, 2) for _, v in curve], "paper": None}
        paper = _points(_find(data, ("curves", "paper_equity"), ("paper", "equity")))
        if [t for t, _ in paper] == times:  # the same bars: drawn on the same axis
            out["backtest"]["paper"] = [round(v, 2) for _, v in paper]
        out["note"] = f"backtest of the bars of {latest['period']} (report.json)"
    else:
        out["note"] = f"report {latest['period']} has no backtest equity curve"
    return out
