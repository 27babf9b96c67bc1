"""scripts/mutate_history.py: var/mutate/history.json rebuilt from the mutation report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import mutate_history  # noqa: E402

pytestmark = pytest.mark.unit

TABLE = [
    "| module | mutants | killed | survived | other | score | score w/o equivalents"
    " | run time; source | tests |",
    "|---|---|---|---|---|---|---|---|---|",
    "| shared/a.py | 10 | 8 | 1 | {'segfault': 1} | 80.0 % | 100.0 % | 12.5 s (+ 3 mutants of 1"
    " changed functions re-run 2026-12-01 11:35 UTC: 4.2 s); source abc1234, x_f re-run at"
    " def5678 | `test_a.py`, `test_mutation_kills_a.py` |",
    "| shared/b.py | 5 | 5 | 0 | - | 100.0 % | 100.0 % | 3.0 s (+ 2 survivors re-run 2026-11-30"
    " 22:09 UTC: 1.5 s) | `test_b.py` |",
    "| shared/c.py | - | - | - | - | not run | - | - | - |",
]
SURVIVORS = """## Survivors

### shared/a.py

- `shared.a.x_f__mutmut_3` (survived): equivalent: a reason

  ```diff
  -    return x + 1
  +    return x - 1
  ```

- `shared.a.x_g__mutmut_1` (segfault): detected, not a survivor

  ```diff
  -    a = [1]
  +    a = None
  ```
"""
REPORT = "# Mutation report (money paths)\n\n" + "\n".join(TABLE) + "\n\n" + SURVIVORS


def test_rows_are_read_with_their_counts_time_rerun_and_source() -> None:
    rows = mutate_history.parse_rows(REPORT)
    assert list(rows) == ["shared/a.py", "shared/b.py"]  # a row never run is not history
    a, b = rows["shared/a.py"], rows["shared/b.py"]
    assert a["counts"] == {"killed": 8, "survived": 1, "segfault": 1}
    assert (a["total"], a["killed"], a["judged"], a["score"]) == (10, 8, 10, 80.0)
    assert a["seconds"] == 12.5 and a["finished"]
    assert a["rerun"] == {
        "mutants": 3,
        "seconds": 4.2,
        "when": "2026-12-01 11:35 UTC",
        "kind": "mutants of 1 changed functions",
    }
    assert a["source_commit"] == "abc1234, x_f re-run at def5678"
    assert b["counts"] == {"killed": 5}
    assert b["rerun"] == {"mutants": 2, "seconds": 1.5, "when": "2026-11-30 22:09 UTC"}
    assert "source_commit" not in b


def test_survivors_keep_their_status_and_changed_lines() -> None:
    survivors = mutate_history.parse_survivors(REPORT)["shared/a.py"]
    assert survivors == {
        "shared.a.x_f__mutmut_3": {
            "status": "survived",
            "diff": "-    return x + 1\n+    return x - 1",
        },
        "shared.a.x_g__mutmut_1": {"status": "segfault", "diff": "-    a = [1]\n+    a = None"},
    }


def test_rebuild_gives_test_paths_and_refuses_counts_the_survivors_do_not_match() -> None:
    rows = mutate_history.rebuild(REPORT, {"shared/a.py": ["tests/unit/sub/test_a.py"]})
    assert rows["shared/a.py"]["tests"] == [
        "tests/unit/sub/test_a.py",
        "tests/unit/test_mutation_kills_a.py",
    ]
    assert len(rows["shared/a.py"]["survivors"]) == 2
    broken = REPORT.replace("| 10 | 8 | 1 | {'segfault': 1} |", "| 10 | 7 | 2 | {'segfault': 1} |")
    with pytest.raises(ValueError, match="survivors listed"):
        mutate_history.rebuild(broken, {})


def test_the_committed_report_rebuilds_every_row() -> None:
    report = (REPO / "docs" / "mutation-report.md").read_text()
    table = [
        ln
        for ln in report.splitlines()
        if ln.startswith("| shared/") or ln.startswith("| services/")
    ]
    rows = mutate_history.rebuild(report, {})
    assert len(rows) == len(table) > 0
    for row in rows.values():
        assert row["total"] == sum(row["counts"].values())
