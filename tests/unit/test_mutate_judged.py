"""scripts/mutate_judged.py: which survivors are equivalent, and the judged diffs stored."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import mutate_judged  # noqa: E402

pytestmark = pytest.mark.unit

DIFF = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-    y = a + b\n+    y = a - b\n"
LINES = "-    y = a + b\n+    y = a - b"


def test_changed_lines_of_keeps_the_plus_and_minus_lines_without_the_file_header():
    assert mutate_judged.changed_lines_of(DIFF) == LINES


def test_a_listed_survivor_is_equivalent_only_on_the_diff_it_was_judged_on(monkeypatch):
    monkeypatch.setattr(mutate_judged, "EQUIVALENT", {"m.x_f__mutmut_1": "equivalent: why"})
    name = "m.x_f__mutmut_1"
    assert mutate_judged.equivalence(name, DIFF, {name: LINES}) == "equivalent: why"
    assert mutate_judged.equivalence(name, DIFF, {name: "-    other\n+    line"}) is None
    assert mutate_judged.equivalence(name, DIFF, {}) == "equivalent: why"  # not recorded yet
    assert mutate_judged.equivalence("m.x_f__mutmut_2", DIFF, {}) is None


def test_record_keeps_listed_diffs_updates_survivors_and_drops_names_no_longer_listed():
    listed = {"m.x_f__mutmut_1": "eq", "m.x_f__mutmut_7": "eq", "m.x_g__mutmut_3": "eq"}
    recorded = {
        "m.x_f__mutmut_1": "-    old\n+    judged",  # listed, survived again: re-recorded
        "m.x_g__mutmut_3": "-    kept\n+    as is",  # listed, not in this history: kept
        "m.x_f__mutmut_2": "-    renumbered\n+    away",  # no longer listed: an orphan
    }
    history = {
        "m.py": {
            "survivors": {
                "m.x_f__mutmut_1": {"diff": DIFF},
                "m.x_f__mutmut_7": {"diff": DIFF},  # newly listed
                "m.x_f__mutmut_9": {"diff": DIFF},  # open: not listed, not recorded
                "m.x_g__mutmut_3": {"diff": "(diff unavailable: gone)"},
            }
        }
    }
    judged, dropped = mutate_judged.judged_after_run(recorded, history, listed)
    assert judged == {
        "m.x_f__mutmut_1": LINES,
        "m.x_f__mutmut_7": LINES,
        "m.x_g__mutmut_3": "-    kept\n+    as is",
    }
    assert list(judged) == sorted(judged)
    assert dropped == ["m.x_f__mutmut_2"]


def test_every_stored_judged_diff_belongs_to_a_listed_equivalent():
    """Every stored diff belongs to a listed equivalent (no orphan left by a renumbering)."""
    recorded = mutate_judged.judged_diffs()
    assert set(recorded) <= set(mutate_judged.EQUIVALENT)
