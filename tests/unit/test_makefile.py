"""The Makefile is the user's interface: `make help` lists every target, `make reset` clears
runtime state only, and the model-swap verbs run the commands the README documents."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make"),
]

REPO = Path(__file__).resolve().parents[2]
MAKEFILES = [REPO / "Makefile", REPO / "docker" / "docker.mk"]
TARGET = re.compile(r"^([a-zA-Z][\w-]*)\s*:(?![:=])", re.MULTILINE)


def make(*args: str) -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def defined_targets() -> set[str]:
    return {m.group(1) for f in MAKEFILES for m in TARGET.finditer(f.read_text())}


def test_help_lists_every_target_including_the_docker_ones() -> None:
    listed = set(re.findall(r"^  make (\S+)", make("help"), re.MULTILINE))
    targets = defined_targets()
    assert {"up", "down", "logs", "push", "rollback", "reset", "docker-push"} <= targets
    assert targets - listed == set()


def test_reset_clears_runtime_state_and_keeps_the_secret(tmp_path: Path) -> None:
    state = tmp_path / "var"
    for folder in ("ledger", "marketdata", "execution", "ibsim", "secrets/curve"):
        (state / folder).mkdir(parents=True)
    (state / "marketdata" / "cursor-pytimetk.json").write_text('{"cursor": 9}')
    (state / "ledger" / "ledger.sqlite").write_bytes(b"x")
    (state / "secrets" / "bus.key").write_bytes(b"k")
    out = make("reset", f"STATE_DIR={state}")
    assert sorted(p.name for p in state.iterdir()) == ["secrets"]
    assert (state / "secrets" / "bus.key").read_bytes() == b"k"
    assert (state / "secrets" / "curve").is_dir()
    assert "removed:" in out and "cursor" not in out  # names folders, not every file
    assert "nothing to reset" in make("reset", f"STATE_DIR={state}")


def test_push_sends_a_local_folder_by_path_and_a_listed_version_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "best_models" / "model_20260101000000"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    dry = make("-n", "push", f"MODEL={folder}")
    assert f"-m trainer.ctl push_model path={folder}" in dry
    dry = make("-n", "push", "MODEL=baseline/ma-crossover-10-50-v1", "FORCE=1")
    assert "push_model version=baseline/ma-crossover-10-50-v1 force=true" in dry
    assert "-m trainer.ctl rollback" in make("-n", "rollback")


def test_docker_push_copies_the_artifact_into_the_stack_then_pushes(tmp_path: Path) -> None:
    folder = tmp_path / "best_models" / "model_20260101000000"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    dry = make("-n", "docker-push", f"MODEL={folder}")
    copy = f"tar -C {folder.parent}/ -cf - {folder.name} | docker compose exec -T trainer"
    assert copy in dry and '"$TRAINER_OUTPUT_DIR/best_models" -xf -' in dry
    assert dry.index(copy) < dry.index("trainer.ctl push_model")
    assert f"version={folder.name}" in dry
    dry = make("-n", "docker-push", "MODEL=baseline/ma-crossover-10-50-v1")
    assert "tar " not in dry and "version=baseline/ma-crossover-10-50-v1" in dry
    assert "docker compose exec -T trainer python -m trainer.ctl rollback" in make(
        "-n", "docker-rollback"
    )


def test_docker_reset_removes_only_the_runtime_volumes() -> None:
    dry = make("-n", "docker-reset")
    assert "docker volume rm -f rltrader_ledger rltrader_state" in dry
    assert "models" not in dry.split("docker volume rm", 1)[1].splitlines()[0]
