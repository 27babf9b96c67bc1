"""Where an artifact came from: the code revision recorded in manifests and evaluation results."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def git_revision(repo: Path | None = None) -> str:
    """``HEAD`` (with ``-dirty`` when tracked files are modified), or ``unknown`` outside git."""
    cwd = repo or (REPO_ROOT if (REPO_ROOT / ".git").exists() else Path.cwd())
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev
