"""How scripts/mutate.py judges a surviving mutant: listed as equivalent (or accepted) in
scripts/mutation_equivalents.py, held to the diff it was judged on
(scripts/mutation_equivalents.json, written by ``--record-judged``), or equivalent by a rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from mutate_config import REPO, STAGE_ROOT
from mutation_equivalents import EQUIVALENT

# Surviving mutants judged equivalent (or accepted), with reasons: scripts/mutation_equivalents.py;
# the changed lines each was judged on: scripts/mutation_equivalents.json (--record-judged)
JUDGED_FILE = REPO / "scripts" / "mutation_equivalents.json"

SQL_WORD = re.compile(r"\b(SELECT|INSERT|UPDATE|PRAGMA|BEGIN|FROM|VALUES|WHERE)\b", re.I)


def judged_diffs() -> dict[str, str]:
    """The changed lines each listed equivalent was judged on, as last recorded (read anew)."""
    return json.loads(JUDGED_FILE.read_text()) if JUDGED_FILE.exists() else {}


def changed_lines_of(diff: str) -> str:
    """The + and - lines of a mutant's diff, without its file header: what a judgement holds to."""
    keep = [
        line
        for line in diff.splitlines()
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    return "\n".join(keep)


def equivalence(name: str, diff: str, judged: Mapping[str, str] | None = None) -> str | None:
    """Why a surviving mutant is equivalent (or accepted), or None when it is open. ``judged``:
    the recorded diffs (judged_diffs(), read once by a caller that judges many mutants)."""
    if name in EQUIVALENT:
        # mutmut numbers mutants within a function: once the function changes, a name may
        # denote another mutation, so a judgement holds only for the diff it was made on
        judged_on = (judged_diffs() if judged is None else judged).get(name)
        if judged_on is not None and judged_on != changed_lines_of(diff):
            return None
        return EQUIVALENT[name]
    minus = [ln[1:] for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    if (
        minus
        and len(minus) == len(plus)
        and all(a != b and a.lower() == b.lower() for a, b in zip(minus, plus, strict=True))
        and all(SQL_WORD.search(a) for a in minus)
    ):
        return (
            "equivalent (rule): only the letter case of SQL changed; SQLite keywords, "
            "identifiers and pragma values are case-insensitive"
        )
    if (
        len(minus) == len(plus) == 1
        and "zip(names, row, strict=True)" in minus[0]
        and re.sub(r"zip\(names, row, [^)]*\)", "Z", minus[0])
        == re.sub(r"zip\(names, row, [^)]*\)", "Z", plus[0])
    ):
        return (
            "equivalent (rule): `names` are the same query's columns, so zip never sees "
            "unequal lengths and `strict` cannot matter"
        )
    return None


def judged_after_run(
    recorded: Mapping[str, str], history: Mapping[str, dict], listed: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The judged diffs to store: the changed lines of every survivor in ``history`` that is
    ``listed`` (EQUIVALENT), the other listed names' ``recorded`` diffs kept; and the recorded
    names no longer listed, which are dropped (equivalence() reads a diff only for a listed
    name, so such an entry is an orphan: a judgement taken back, or a name mutmut renumbered
    and judged again under its new name)."""
    judged = {n: d for n, d in recorded.items() if n in listed}
    for r in history.values():
        for name, sv in r["survivors"].items():
            if name in listed and "unavailable" not in sv["diff"]:
                judged[name] = changed_lines_of(sv["diff"])
    return dict(sorted(judged.items())), sorted(set(recorded) - set(listed))


def record_judged() -> None:
    """Store the changed lines of every survivor listed in EQUIVALENT, as last run; drop the
    stored diffs of names no longer listed."""
    history = json.loads((STAGE_ROOT / "history.json").read_text())
    judged, dropped = judged_after_run(judged_diffs(), history, EQUIVALENT)
    JUDGED_FILE.write_text(json.dumps(judged, indent=1, ensure_ascii=False) + "\n")
    for name in dropped:
        print(f"[mutate] dropped (not in EQUIVALENT): {name}")
    print(f"[mutate] {len(judged)} judged diffs -> {JUDGED_FILE.relative_to(REPO)}")
