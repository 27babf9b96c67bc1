"""How scripts/mutate.py merges runs of one module: a re-run of the last survivors
(``--survivors-only``), or of the functions changed since the last run (``--changed-only``), into
the last full run's result; and which commit a run's source is from. Kept apart so the runner
stays small."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def stem_of(name: str) -> str:
    """``shared.features.xǁOnlineFeaturesǁupdate__mutmut_3`` -> ``xǁOnlineFeaturesǁupdate``."""
    return name.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[-1]


def function_sources(source: str) -> dict[str, str]:
    """mutmut name stem -> source text of each module-level function and method of a
    module-level class (what mutmut mutates)."""
    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[f"x_{node.name}"] = ast.get_source_segment(source, node) or ""
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out[f"xǁ{node.name}ǁ{item.name}"] = ast.get_source_segment(source, item) or ""
    return out


def changed_functions(old_source: str, new_source: str) -> list[str]:
    """The name stems of the functions added, removed or edited between two sources."""
    old, new = function_sources(old_source), function_sources(new_source)
    return sorted(s for s in old.keys() | new.keys() if old.get(s) != new.get(s))


def statuses_from_counts(prev: dict, names: list[str]) -> dict[str, str]:
    """Every mutant's status in a recorded run without per-mutant statuses: a survivor's own,
    every other one killed. Exact only when the run judged ``names`` and nothing but killed
    mutants and its survivors: anything else is empty (refused by the caller)."""
    survivors = prev["survivors"]
    others = {st: n for st, n in prev["counts"].items() if st != "killed"}
    listed: dict[str, int] = {}
    for sv in survivors.values():
        listed[sv["status"]] = listed.get(sv["status"], 0) + 1
    if len(names) != prev["total"] or others != listed or not set(survivors) <= set(names):
        return {}
    return {n: survivors[n]["status"] if n in survivors else "killed" for n in names}


def scored(
    statuses: dict[str, str],
    survivors: dict[str, dict],
    equivalence: Callable[[str, str], str | None],
) -> dict:
    """A row's counts and scores from its per-mutant ``statuses`` and its ``survivors`` (each
    survivor's equivalence reason looked up again: a listed name whose diff changed is open)."""
    counts: dict[str, int] = {}
    for st in statuses.values():
        counts[st] = counts.get(st, 0) + 1
    killed = counts.get("killed", 0) + counts.get("caught by type check", 0)
    judged = sum(n for st, n in counts.items() if st not in ("not checked", "skipped"))
    for n, sv in survivors.items():
        sv["reason"] = equivalence(n, sv["diff"])
    equivalent = sum(1 for sv in survivors.values() if sv["reason"])
    return {
        "counts": counts,
        "total": len(statuses),
        "killed": killed,
        "judged": judged,
        "score": 100.0 * killed / judged if judged else 0.0,
        "equivalent": equivalent,
        "score_net": 100.0 * killed / (judged - equivalent) if judged > equivalent else 0.0,
        "survivors": survivors,
        "statuses": statuses,
    }


def merge_changed(
    prev: dict,
    old_statuses: dict[str, str],
    rerun: dict,
    changed: list[str],
    equivalence: Callable[[str, str], str | None],
) -> dict:
    """The last full run with the mutants of the ``changed`` functions replaced by ``rerun``
    (those functions mutated again from today's source; the others' mutants are unchanged)."""
    keep = {n: st for n, st in old_statuses.items() if stem_of(n) not in changed}
    statuses = {**keep, **rerun["statuses"]}
    survivors = {n: sv for n, sv in prev["survivors"].items() if stem_of(n) not in changed}
    survivors.update(rerun["survivors"])
    return {
        **prev,
        **scored(statuses, survivors, equivalence),
        "finished": prev["finished"] and rerun["finished"],
        "tests": rerun["tests"],
        "rerun": {
            "kind": f"mutants of {len(changed)} changed functions",
            "mutants": rerun["total"],
            "killed": rerun["killed"],
            "seconds": rerun["seconds"],
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "source_sha256": rerun["source_sha256"],
        "source_commit": f"{prev.get('source_commit', '?')}, {', '.join(changed)} re-run at "
        f"{rerun['source_commit']}",
    }


def without_functions(
    prev: dict,
    old_statuses: dict[str, str],
    dropped: list[str],
    new_source: str,
    commit: str,
    equivalence: Callable[[str, str], str | None],
) -> dict:
    """The last run with the mutants of the ``dropped`` functions (moved to another module, or
    out of SCOPE) taken out and nothing re-run: every other function's source is unchanged, so
    its mutants keep their statuses; the row is now of ``new_source``."""
    statuses = {n: st for n, st in old_statuses.items() if stem_of(n) not in dropped}
    survivors = {n: sv for n, sv in prev["survivors"].items() if stem_of(n) not in dropped}
    return {
        **prev,
        **scored(statuses, survivors, equivalence),
        "source_sha256": hashlib.sha256(new_source.encode()).hexdigest(),
        "source_commit": f"{prev.get('source_commit', '?')}; {len(dropped)} functions moved "
        f"out at {commit}",
    }


def source_commit(repo: Path, module: str, ref: str | None = None) -> str:
    """The last commit of ``module`` at staging time (in ``ref``'s history when staged from a
    commit, then also that commit), with `+ uncommitted edits` when the working tree differed
    from it (the report says which source a row is from)."""
    if ref is not None:
        at = subprocess.run(
            ["git", "log", "-1", "--format=%h", ref, "--", module],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        head = subprocess.run(
            ["git", "rev-parse", "--short", ref], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
        return f"{at} (staged from {head})"
    log = subprocess.run(
        ["git", "log", "-1", "--format=%h", "--", module],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", module], cwd=repo, check=False
    ).returncode
    return log.stdout.strip() + (" + uncommitted edits" if dirty else "")


def merge_rerun(prev: dict, rerun: dict) -> dict:
    """A full run's result with its survivors re-judged by ``rerun`` (the same mutants, run
    again against today's tests): killed mutants stay killed when tests are only added."""
    counts = dict(prev["counts"])
    for sv in prev["survivors"].values():
        counts[sv["status"]] -= 1
    for status, n in rerun["counts"].items():
        counts[status] = counts.get(status, 0) + n
    counts = {k: v for k, v in counts.items() if v}
    killed = counts.get("killed", 0) + counts.get("caught by type check", 0)
    judged = prev["judged"]
    equivalent = sum(1 for sv in rerun["survivors"].values() if sv["reason"])
    return {
        **prev,
        "counts": counts,
        "killed": killed,
        "score": 100.0 * killed / judged if judged else 0.0,
        "equivalent": equivalent,
        "score_net": 100.0 * killed / (judged - equivalent) if judged > equivalent else 0.0,
        "finished": prev["finished"] and rerun["finished"],
        "survivors": rerun["survivors"],
        "statuses": {**prev.get("statuses", {}), **rerun.get("statuses", {})},
        "tests": rerun["tests"],
        "rerun": {
            "mutants": rerun["total"],
            "killed": rerun["killed"],
            "seconds": rerun["seconds"],
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "source_sha256": rerun["source_sha256"],
    }
