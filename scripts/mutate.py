"""Mutation testing of the money paths with mutmut (issue 17 item 1).

Usage:
    python scripts/mutate.py                 # every money-path module -> docs/mutation-report.md
    python scripts/mutate.py --quick         # CI: changed money-path modules (vs the merge base
                                             # with origin/main, else HEAD~1), or the fixed sample
                                             # shared/costs.py + shared/accounting.py; fails under
                                             # the goal; writes no report
    python scripts/mutate.py shared/costs.py # one module (a repo path from MODULES)

Each module runs separately with its own targeted tests and a wall-clock limit, so a run on a
loaded 2-core machine stays bounded; a module that hits its limit is reported as not finished.

This file is the command line and the order of a run. The rest, by reason to change:
scripts/mutate_config.py (the modules, their tests and SCOPE, the CI gate's settings, the
report's notes), mutate_run.py (staging under ``var/mutate/<module>/`` and running mutmut: why
a staging copy is needed is in its docstring), mutate_judged.py (which survivors are equivalent,
``--record-judged``), mutate_report.py (docs/mutation-report.md), mutate_merge.py (merging a
re-run into a row), mutate_quick.py (the CI sample), mutate_history.py (``--rebuild-history``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mutate_history
import mutate_merge  # scripts/ is on sys.path when run as a script
import mutate_quick
from mutate_config import (
    GOAL,
    MODULES,
    QUICK_BUDGET_S,
    QUICK_ELIGIBLE,
    QUICK_MAX_MUTANTS,
    QUICK_NOT_GATED,
    QUICK_SAMPLE,
    QUICK_STAGE_ROOT,
    REPO,
    REPORT,
    SCOPE,
    STAGE_ROOT,
)
from mutate_judged import equivalence, judged_diffs, record_judged
from mutate_report import write_json, write_report
from mutate_run import (
    changed_modules,
    changed_since_run,
    import_path,
    quick_sample,
    run_module,
    scope_patterns,
)


def rebuild_history(ref: str) -> int:
    """var/mutate/history.json and each row's staged source from docs/mutation-report.md, the
    sources taken from commit ``ref`` (the one the report is current with); then the report is
    written again from them to a scratch file and must equal the committed one (its time aside)."""
    history = STAGE_ROOT / "history.json"
    if history.exists():
        print(f"[mutate] {history.relative_to(REPO)} exists; remove it to rebuild it")
        return 1
    report = REPORT.read_text()
    rows = mutate_history.rebuild(report, MODULES)
    recorded = judged_diffs()
    for module, row in rows.items():
        for name, sv in row["survivors"].items():
            sv["reason"] = equivalence(name, sv["diff"], recorded)
        row["equivalent"] = sum(1 for sv in row["survivors"].values() if sv["reason"])
        net = row["judged"] - row["equivalent"]
        row["score_net"] = 100.0 * row["killed"] / net if net > 0 else 0.0
        shown = subprocess.run(
            ["git", "show", f"{ref}:{module}"], cwd=REPO, capture_output=True, text=True
        )
        if shown.returncode != 0:
            print(f"[mutate] {module}: not in {ref}; row kept without a stage")
            continue
        source = shown.stdout
        prefix = import_path(module).removesuffix(".py").replace("/", ".")
        stems = SCOPE.get(module) or list(mutate_merge.function_sources(source))
        names = mutate_quick.mutants_of(import_path(module), source, stems)
        names = [f"{prefix}.{n}" for n in names]
        statuses = mutate_merge.statuses_from_counts(row, names)
        if not statuses:
            print(
                f"[mutate] {module}: {len(names)} mutants at {ref}, the row has {row['total']}: "
                "row kept without a stage (--changed-only refuses it; run it in full)"
            )
            continue
        row["statuses"] = statuses
        row["source_sha256"] = hashlib.sha256(source.encode()).hexdigest()
        staged = STAGE_ROOT / module.replace("/", "_").removesuffix(".py") / import_path(module)
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_text(source)
        print(f"[mutate] {module}: {row['total']} mutants, staged from {ref}")
    history.parent.mkdir(parents=True, exist_ok=True)
    history.write_text(json.dumps(rows, indent=2))
    with tempfile.TemporaryDirectory(prefix="mutate-report-") as tmp:
        again = Path(tmp) / "report.md"
        write_report([], again, GOAL)
        strip = [ln for ln in report.splitlines() if not ln.startswith("Written by `make mutate`")]
        got = [ln for ln in again.read_text().splitlines() if not ln.startswith("Written by")]
    if got != strip:
        a, b = [*strip, ""], [*got, ""]
        bad = next(i for i in range(min(len(a), len(b))) if a[i] != b[i])
        print(f"[mutate] FAIL: the rebuilt history writes another report (line {bad + 1}):")
        print(f"  committed: {a[bad]}\n  rebuilt:   {b[bad]}")
        history.unlink()
        return 1
    print(f"[mutate] {len(rows)} rows -> {history.relative_to(REPO)} (the report reads the same)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("modules", nargs="*", help="repo paths of modules (default: all)")
    ap.add_argument("--quick", action="store_true", help="CI mode: changed modules or the sample")
    ap.add_argument("--limit", type=float, default=None, help="seconds per module")
    ap.add_argument("--children", type=int, default=2, help="parallel mutant runs (2 cores)")
    ap.add_argument("--goal", type=float, default=GOAL)
    ap.add_argument("--no-report", action="store_true", help="do not rewrite the report")
    ap.add_argument(
        "--record-judged",
        action="store_true",
        help="write the diff of every listed equivalent from var/mutate/history.json to "
        "scripts/mutation_equivalents.json (after judging new survivors); names no longer "
        "listed in scripts/mutation_equivalents.py are dropped from it",
    )
    ap.add_argument(
        "--survivors-only",
        action="store_true",
        help="re-run only the last full run's survivors against the current tests and merge "
        "(valid while the module is unchanged since that run; its sha256 is checked when known)",
    )
    ap.add_argument(
        "--report-only", action="store_true", help="rewrite the report from var/mutate/history.json"
    )
    ap.add_argument(
        "--rebuild-history",
        action="store_true",
        help="rebuild var/mutate/ (history.json, each row's staged source from --source-ref, "
        "default HEAD) from docs/mutation-report.md, e.g. in a fresh checkout",
    )
    ap.add_argument(
        "--changed-only",
        action="store_true",
        help="mutate only the functions changed since the module's last full run (its stage "
        "folder is the old source) and merge: the other functions' mutants keep their status",
    )
    ap.add_argument(
        "--source-ref",
        default=None,
        help="stage the packages and tests from this commit (git archive) instead of the "
        "working tree: a reproducible row while others edit the module",
    )
    args = ap.parse_args()

    if args.record_judged:
        record_judged()
        return 0
    if args.report_only:
        write_report([], REPORT, args.goal)
        return 0
    if args.rebuild_history:
        return rebuild_history(args.source_ref or "HEAD")
    samples: dict[str, list[str]] = {}
    if args.quick:
        # bounded: the changed modules whose full run fits CI's budget in full, the other
        # changed ones as a sample of their changed functions' mutants; nothing changed: the
        # fixed sample (costs + accounting in full)
        changed = args.modules or changed_modules()
        modules = [m for m in changed if m in QUICK_ELIGIBLE]
        for m in changed:
            if m in QUICK_NOT_GATED:
                print(f"[mutate] {m}: changed, not gated: {QUICK_NOT_GATED[m]}")
            elif m in MODULES and m not in QUICK_ELIGIBLE:
                names = quick_sample(m, QUICK_MAX_MUTANTS)
                if names:
                    samples[m] = names
                    modules.append(m)
        modules = modules or QUICK_SAMPLE
        limit = args.limit or 120.0
    else:
        modules = args.modules or list(MODULES)
        limit = args.limit or 1800.0
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        ap.error(f"not a money-path module: {unknown}; known: {list(MODULES)}")

    results = []
    deadline = time.monotonic() + QUICK_BUDGET_S if args.quick else math.inf
    for k, module in enumerate(modules):
        # an even share of what is left, so one slow module cannot starve the ones after it
        budget = max(10.0, min(limit, (deadline - time.monotonic()) / (len(modules) - k)))
        only = samples.get(module) or scope_patterns(module)
        what = (
            f"{len(only)} mutants of its changed functions"
            if module in samples
            else f"the mutants of {len(only)} functions"
            if only
            else "every mutant"
        )
        print(f"[mutate] {module}: {what} (limit {budget:.0f} s) ...", flush=True)
        prev = None
        if args.survivors_only:
            history = STAGE_ROOT / "history.json"
            prev = json.loads(history.read_text()).get(module) if history.exists() else None
            current = (
                (REPO / module).read_bytes()
                if args.source_ref is None
                else subprocess.run(
                    ["git", "show", f"{args.source_ref}:{module}"],
                    cwd=REPO,
                    capture_output=True,
                    check=True,
                ).stdout
            )
            sha = hashlib.sha256(current).hexdigest()
            if prev is None or prev.get("source_sha256", sha) != sha or not prev["survivors"]:
                ap.error(f"{module}: no full run of this source to re-run the survivors of")
            only = list(prev["survivors"])
            print(f"[mutate] {module}: re-running the {len(only)} survivors of the last run")
        changed: list[str] = []
        old_statuses: dict[str, str] = {}
        if args.changed_only:
            history = STAGE_ROOT / "history.json"
            last = json.loads(history.read_text()).get(module) if history.exists() else None
            if last is None:
                ap.error(f"{module}: no full run to update")
            new_source = (
                (REPO / module).read_text()
                if args.source_ref is None
                else subprocess.run(
                    ["git", "show", f"{args.source_ref}:{module}"],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            changed, old_statuses = changed_since_run(module, last, new_source)
            # functions no longer in the module (moved to another module, or removed) or out
            # of SCOPE now: their mutants leave the row instead of keeping their old statuses
            old_stems = {mutate_merge.stem_of(n) for n in old_statuses}
            gone = old_stems - set(mutate_merge.function_sources(new_source))
            if module in SCOPE:
                changed = [c for c in changed if c in SCOPE[module]]
                gone |= old_stems - set(SCOPE[module])
            dropped = sorted(gone)
            changed = [c for c in changed if c not in gone]
            prefix = import_path(module).removesuffix(".py").replace("/", ".")
            names = mutate_quick.mutants_of(import_path(module), new_source, changed)
            only = [f"{prefix}.{n}" for n in names]
            print(f"[mutate] {module}: changed since the last run: {changed} ({len(only)} mutants)")
            if dropped:
                print(f"[mutate] {module}: moved out or out of SCOPE, mutants leave: {dropped}")
                stem = mutate_merge.stem_of
                old_statuses = {n: s for n, s in old_statuses.items() if stem(n) not in dropped}
                last = {
                    **last,
                    "survivors": {
                        n: sv for n, sv in last["survivors"].items() if stem(n) not in dropped
                    },
                }
            if not only and dropped:
                # nothing else changed: the row without those mutants, nothing re-run; the stage
                # now holds this source (the other functions' source is the same)
                commit = mutate_merge.source_commit(REPO, module, args.source_ref)
                staged = STAGE_ROOT / module.replace("/", "_").removesuffix(".py")
                (staged / import_path(module)).write_text(new_source)
                r = mutate_merge.without_functions(
                    last, old_statuses, dropped, new_source, commit, equivalence
                )
                results.append(r)
                print(
                    f"[mutate] {module}: {r['total']} mutants left, score {r['score']:.1f} %, "
                    f"without the {r['equivalent']} listed equivalents {r['score_net']:.1f} %"
                )
                continue
            if not only:
                continue
        under = QUICK_STAGE_ROOT if args.quick else STAGE_ROOT
        r = run_module(module, budget, args.children, only, args.source_ref, under)
        if (prev is not None or args.changed_only) and not r["finished"]:
            # merged, an unfinished re-run would overwrite the recorded row with "not checked"
            # mutants and no survivors (then --survivors-only has nothing left to re-run)
            print(f"[mutate] FAIL {module}: the re-run did not finish; row kept (log {r['log']})")
            return 1
        if prev is not None:
            r = mutate_merge.merge_rerun(prev, r)
        if args.changed_only:
            r = mutate_merge.merge_changed(last, old_statuses, r, changed, equivalence)
        results.append(r)
        print(
            f"[mutate] {module}: score {r['score']:.1f} % ({r['killed']}/{r['judged']}), "
            f"without the {r['equivalent']} listed equivalents {r['score_net']:.1f} %, "
            f"counts {r['counts']}, {r['seconds']} s, finished={r['finished']}",
            flush=True,
        )
        for name, s in r["survivors"].items():
            print(f"  {s['status']}: {name}")
    print(f"[mutate] results: {write_json(results).relative_to(REPO)}")
    # the gate: every mutant judged, and the score without the listed equivalents >= goal; a
    # quick sample is judged on what its share of the budget judged (none judged: a warning)
    failed = []
    for r in results:
        if r["module"] in samples:
            if r["judged"] == 0:
                print(f"[mutate] WARNING {r['module']}: no sampled mutant judged in the CI budget")
            elif r["score_net"] < args.goal:
                failed.append(r)
        elif not r["finished"] or r["score_net"] < args.goal:
            failed.append(r)
    if not args.quick and not args.no_report:
        write_report(results, REPORT, args.goal)
        print(f"[mutate] report: {REPORT.relative_to(REPO)}")
    if failed:
        for r in failed:
            why = "did not finish" if not r["finished"] else f"score {r['score_net']:.1f} % < goal"
            print(f"[mutate] FAIL {r['module']}: {why} (log {r['log']})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
