"""How scripts/mutate.py reports: var/mutate/results.json of a run, and docs/mutation-report.md
(score per module, every survivor with its diff and why it is equivalent, or open), with the
rows not run this time kept from var/mutate/history.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mutate_config import MODULES, NOTES, QUICK_ELIGIBLE, QUICK_MAX_MUTANTS, STAGE_ROOT
from mutate_judged import changed_lines_of, equivalence, judged_diffs


def mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def write_json(results: list[dict]) -> Path:
    path = STAGE_ROOT / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    return path


def write_report(results: list[dict], path: Path, goal: float) -> None:
    """docs/mutation-report.md: score per module, every survivor with its diff and reason.

    Modules not run this time keep their previous section (merged from results.json history)."""
    history = STAGE_ROOT / "history.json"
    known: dict[str, dict] = json.loads(history.read_text()) if history.exists() else {}
    for r in results:
        known[r["module"]] = r
    history.write_text(json.dumps(known, indent=2))
    recorded = judged_diffs()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [
        "# Mutation report (money paths)",
        "",
        f"Written by `make mutate` (scripts/mutate.py, mutmut {mutmut_version()}) on {when}.",
        f"Goal: mutation score >= {goal:.0f} % per module. Score = killed / (killed + survived +",
        "timeouts + suspicious + mutants no test reaches). A survivor is either killed by a test",
        "in `tests/unit/test_mutation_kills_<module>.py` or listed below with the reason it is",
        "equivalent (or accepted). Score with equivalents = killed / (judged - equivalent).",
        "",
        "| module | mutants | killed | survived | other | score | score w/o equivalents | "
        "run time; source | tests |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for module in MODULES:
        r = known.get(module)
        if r is None:
            out.append(f"| {module} | - | - | - | - | not run | - | - | - |")
            continue
        c = r["counts"]
        other = {k: v for k, v in c.items() if k not in ("killed", "survived")}
        eq = sum(1 for n, sv in r["survivors"].items() if equivalence(n, sv["diff"], recorded))
        adj = 100.0 * r["killed"] / (r["judged"] - eq) if r["judged"] - eq > 0 else 0.0
        status = "" if r["finished"] else " (did not finish)"
        tests = ", ".join(f"`{Path(t).name}`" for t in r["tests"])
        seconds = f"{r['seconds']} s"
        if r.get("rerun"):
            re = r["rerun"]
            kind = re.get("kind", "survivors")
            seconds += f" (+ {re['mutants']} {kind} re-run {re['when']}: {re['seconds']} s)"
        if r.get("source_commit"):
            seconds += f"; source {r['source_commit']}"
        out.append(
            f"| {module} | {r['total']} | {r['killed']} | {c.get('survived', 0)} | "
            f"{other or '-'} | {r['score']:.1f} %{status} | {adj:.1f} % | {seconds} | "
            f"{tests} |"
        )
    out += [
        "",
        "How to run: `make mutate` (every module above, one at a time, 30 min cap each; rewrites",
        "this file), `.venv/bin/python scripts/mutate.py <module> ...` for some (merged into this",
        "report), `make mutate QUICK=1` for the CI gate (300 s cap): the changed modules among "
        + ", ".join(f"`{m}`" for m in QUICK_ELIGIBLE)
        + f" in full, and of every other changed module at most {QUICK_MAX_MUTANTS} mutants of "
        "the functions the change touched (scripts/mutate_quick.py); nothing changed: both "
        "small modules in full. It fails when a module is not fully judged or its score without",
        "the listed equivalents is under the goal. Work folders: `var/mutate/<module>/`",
        "(`mutmut results`, `mutmut show <name>` work there; the CI gate's: `var/mutate/quick/`).",
    ]
    if NOTES:
        out += ["", "## Notes", ""] + [f"- {n}" for n in NOTES]
    out += ["", "## Survivors", ""]
    for module in MODULES:
        r = known.get(module)
        if r is None or not r["survivors"]:
            continue
        out += [f"### {module}", ""]
        for name, s in r["survivors"].items():
            reason = equivalence(name, s["diff"], recorded) or "**not yet killed or judged** (open)"
            out += [
                f"- `{name}` ({s['status']}): {reason}",
                "",
                "  ```diff",
                *("  " + line for line in changed_lines_of(s["diff"]).splitlines()),
                "  ```",
                "",
            ]
    path.write_text("\n".join(out).rstrip() + "\n")
