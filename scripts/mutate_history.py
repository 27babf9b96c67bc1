"""Rebuild scripts/mutate.py's work state (``var/mutate/history.json`` and each row's staged
source) from the committed report, docs/mutation-report.md (``--rebuild-history``).

``var/mutate/`` is not in the repository, so a fresh checkout cannot merge a run into the report
(the report is written from history.json: rows missing there would read "not run") nor run
``--changed-only`` (it needs the last run's staged source and per-mutant statuses). The report
holds what those need: each row's counts, time and source commit, and every survivor with its
status and changed lines (all that a survivor's judgement is checked against). Per-mutant
statuses are rebuilt as ``--changed-only`` rebuilds those of old rows: a survivor's own status,
every other mutant of the row's functions killed, refused when the mutants of the source at
``ref`` do not add up to the row's counts (then the row is kept without a stage).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROW = re.compile(
    r"^\| (?P<module>\S+\.py) \| (?P<total>\d+) \| (?P<killed>\d+) \| (?P<survived>\d+) \| "
    r"(?P<other>[^|]+) \| (?P<score>[\d.]+) %(?P<unfinished> \(did not finish\))? \| "
    r"[\d.]+ % \| (?P<time>[^|]+) \| (?P<tests>[^|]*) \|$"
)
SECONDS = re.compile(r"^(?P<seconds>[\d.]+) s")
RERUN = re.compile(
    r" \(\+ (?P<mutants>\d+) (?P<kind>.+?) re-run (?P<when>.+?): (?P<seconds>[\d.]+) s\)"
)
SURVIVOR = re.compile(r"^- `(?P<name>[^`]+)` \((?P<status>[^)]+)\): ")


def parse_rows(report: str) -> dict[str, dict]:
    """module -> the table row's numbers, as ``run_module`` records them (survivors empty)."""
    rows: dict[str, dict] = {}
    for line in report.splitlines():
        m = ROW.match(line)
        if not m:
            continue
        other = {} if m["other"].strip() == "-" else ast.literal_eval(m["other"].strip())
        counts = {"killed": int(m["killed"]), "survived": int(m["survived"]), **other}
        counts = {k: v for k, v in counts.items() if v}
        time_cell = m["time"].strip()
        seconds = SECONDS.match(time_cell)
        rerun = RERUN.search(time_cell)
        source = time_cell.split("; source ", 1)[1] if "; source " in time_cell else None
        row: dict = {
            "module": m["module"],
            "tests": [t.strip().strip("`") for t in m["tests"].split(",") if t.strip()],
            "counts": counts,
            "total": int(m["total"]),
            "killed": int(m["killed"]) + counts.get("caught by type check", 0),
            "judged": sum(n for s, n in counts.items() if s not in ("not checked", "skipped")),
            "score": float(m["score"]),
            "finished": m["unfinished"] is None,
            "seconds": float(seconds["seconds"]) if seconds else 0.0,
            "survivors": {},
            "log": "",
        }
        if rerun:
            kind = rerun["kind"]
            row["rerun"] = {
                "mutants": int(rerun["mutants"]),
                "seconds": float(rerun["seconds"]),
                "when": rerun["when"],
                **({} if kind == "survivors" else {"kind": kind}),
            }
        if source is not None:
            row["source_commit"] = source
        rows[row["module"]] = row
    return rows


def parse_survivors(report: str) -> dict[str, dict[str, dict]]:
    """module -> survivor name -> {status, diff}: the diff as the report shows it (its changed
    lines, which is what a judgement is checked against)."""
    out: dict[str, dict[str, dict]] = {}
    section = report.split("\n## Survivors\n", 1)[1] if "\n## Survivors\n" in report else ""
    module = None
    current: dict | None = None
    in_diff = False
    for line in section.splitlines():
        if line.startswith("### "):
            module = line[4:].strip()
            out[module] = {}
            continue
        m = SURVIVOR.match(line)
        if m and module is not None:
            current = {"status": m["status"], "diff": ""}
            out[module][m["name"]] = current
            continue
        if line.strip() == "```diff":
            in_diff = True
            continue
        if line.strip() == "```":
            in_diff = False
            continue
        if in_diff and current is not None:
            text = line[2:] if line.startswith("  ") else line
            current["diff"] += ("\n" if current["diff"] else "") + text
    return out


def rebuild(report: str, tests_of: dict[str, list[str]]) -> dict[str, dict]:
    """history.json's content from the report: every row with its survivors; ``tests_of`` maps
    a module to its selection (repo paths), so the row's test file names get their paths."""
    rows = parse_rows(report)
    survivors = parse_survivors(report)
    for module, row in rows.items():
        row["survivors"] = survivors.get(module, {})
        listed = {}
        for sv in row["survivors"].values():
            listed[sv["status"]] = listed.get(sv["status"], 0) + 1
        not_killed = {s: n for s, n in row["counts"].items() if s != "killed"}
        if listed != not_killed:
            raise ValueError(f"{module}: survivors listed {listed}, the row counts {not_killed}")
        paths = {Path(t).name: t for t in tests_of.get(module, [])}
        row["tests"] = [paths.get(name, f"tests/unit/{name}") for name in row["tests"]]
    return rows
