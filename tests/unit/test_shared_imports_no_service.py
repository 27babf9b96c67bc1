"""The shared library imports no service (not even for a health probe), and the simulator's own
readiness probe says "not ready" when nothing answers on its control port."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.unit

SERVICES = {p.name for p in (REPO_ROOT / "services").iterdir() if (p / "__init__.py").exists()}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_module_of_shared_imports_a_service() -> None:
    assert {"ibsim", "execution", "inference"} <= SERVICES  # the check can see what it guards
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(_imported_roots(path) & SERVICES)
        for path in sorted((REPO_ROOT / "shared").glob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_ibsim_probe_is_not_ready_without_a_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    from ibsim import health

    monkeypatch.setenv("IBSIM_CONTROL_PORT", str(free_port()))
    assert health.main() == 1


def test_ibsim_probe_default_port_is_the_simulators() -> None:
    from ibsim import health
    from ibsim.config import IbsimSettings

    assert IbsimSettings().control_port == health.DEFAULT_CONTROL_PORT


def test_ibsim_probe_imports_no_pandas() -> None:
    """A healthcheck must start fast on a loaded host: standard library only."""
    import subprocess
    import sys

    code = "import sys, ibsim.health; print('pandas' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "False"


def test_no_service_imports_another_service() -> None:
    """Shared logic lives once, in ``shared/``: a service's modules import only their own package
    (and ``shared``), so each service's image and restart stand on their own."""
    # a benchmark harness, not runtime code: it starts the simulator to measure execution
    # against it (bench/bench_execution.py runs it); the execution service never imports it
    allowed = {"services/execution/bench.py": {"ibsim"}}
    offenders: dict[str, list[str]] = {}
    for service in sorted(SERVICES):
        for path in sorted((REPO_ROOT / "services" / service).rglob("*.py")):
            name = str(path.relative_to(REPO_ROOT))
            others = sorted(
                (_imported_roots(path) & SERVICES) - {service} - allowed.get(name, set())
            )
            if others:
                offenders[name] = others
    assert offenders == {}
