"""shared.feature_bank without its compiled kernel: numba missing (ImportError) or installed but
failing to load (any other error at import: a broken LLVM, an unsupported CPU). Either way the
bank runs its numpy pass; the second case also warns, so the slower path is visible. Run in a
fresh interpreter: the kernel's import happens once, when shared.feature_bank is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib.abc, sys, warnings

class Failing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "shared.feature_kernel":
            raise {error}("the kernel cannot load here")
        return None

sys.meta_path.insert(0, Failing())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import shared.feature_bank as bank
from shared.feature_config import FeatureConfig
assert bank.feature_kernel is None
assert bank.FeatureBank(FeatureConfig()).compiled is None
print("|".join(str(w.message) for w in caught))
"""


@pytest.mark.parametrize(
    ("error", "warned"), [("ImportError", False), ("RuntimeError", True)], ids=["missing", "broken"]
)
def test_the_bank_falls_back_to_its_numpy_pass(error: str, warned: bool) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(error=error)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    if warned:
        assert "shared.feature_kernel did not load (RuntimeError(" in message
        assert "the numpy pass runs" in message
    else:
        assert message == ""
