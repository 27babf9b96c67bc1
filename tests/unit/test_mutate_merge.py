"""scripts/mutate_merge.py: a row without the mutants of functions moved out of its module."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import mutate_merge  # noqa: E402

pytestmark = pytest.mark.unit


def test_moved_functions_leave_the_row_and_the_rest_keep_their_statuses() -> None:
    prev = {
        "module": "shared/a.py",
        "counts": {"killed": 4, "survived": 2},
        "total": 6,
        "survivors": {
            "shared.a.x_stay__mutmut_2": {"status": "survived", "diff": "-a\n+b"},
            "shared.a.x_moved__mutmut_1": {"status": "survived", "diff": "-c\n+d"},
        },
        "source_commit": "abc1234",
        "seconds": 9.0,
    }
    statuses = {
        "shared.a.x_stay__mutmut_1": "killed",
        "shared.a.x_stay__mutmut_2": "survived",
        "shared.a.x_stay__mutmut_3": "killed",
        "shared.a.x_moved__mutmut_1": "survived",
        "shared.a.x_moved__mutmut_2": "killed",
        "shared.a.x_moved__mutmut_3": "killed",
    }
    r = mutate_merge.without_functions(
        prev, statuses, ["x_moved"], "def stay(): ...\n", "def5678", lambda n, d: "equivalent"
    )
    assert r["counts"] == {"killed": 2, "survived": 1}
    assert (r["total"], r["killed"], r["judged"], r["equivalent"]) == (3, 2, 3, 1)
    assert r["score_net"] == 100.0 and round(r["score"], 1) == 66.7
    assert list(r["survivors"]) == ["shared.a.x_stay__mutmut_2"]
    assert set(r["statuses"]) == {f"shared.a.x_stay__mutmut_{i}" for i in (1, 2, 3)}
    assert r["source_sha256"] == hashlib.sha256(b"def stay(): ...\n").hexdigest()
    assert r["source_commit"] == "abc1234; 1 functions moved out at def5678"
    assert r["seconds"] == 9.0  # the recorded run's time stands: nothing was re-run
