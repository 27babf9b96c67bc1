"""`make example-model`: the committed example model, rebuilt by anyone from a clean tree.

    python scripts/make_example_model.py [--profile quick] [--keep-work]

1. ``git clone`` of this repository's HEAD into a temporary folder: the run never sees
   uncommitted edits, so the manifest's ``git_revision`` is a clean commit (no ``-dirty``).
2. ``python -m trainer.pipeline --profile quick --no-push --force`` there (the `make train`
   quick profile: search, the chosen config on 3 seeds and the 6 packaged daily stocks, the
   median seed exported, the validation-fold gate). ``--force``: the example exists to publish
   its numbers, so its final hold-out is scored whatever the gate decides; when the gate fails,
   the manifest and every report say so (``FORCED:`` verdict, ``gate_forced``, ``forced``), and
   the hold-out ledger of the run counts every seed's look.
3. ``models/example/<version>/``: ``model.onnx``, ``manifest.json`` (git revision, data hashes,
   seeds, gate and hold-out numbers), ``evaluation/`` (fold and hold-out reports,
   ``seed_spread.json``, ``results.md``: the table the README quotes) and ``pipeline.json``
   (the run's summary and timings). Older example versions are replaced.

Re-score it with ``make evaluate MODEL=models/example/<version>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ROOT = REPO / "models" / "example"


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary clone")
    args = parser.parse_args(argv)
    revision = git("rev-parse", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        print(f"note: uncommitted edits here are NOT used; building from HEAD {revision[:12]}")
    work = Path(tempfile.mkdtemp(prefix="rlt-example-"))
    src, out = work / "src", work / "out"
    git("clone", "--quiet", str(REPO), str(src))
    git("checkout", "--quiet", revision, cwd=src)
    env = {
        **os.environ,
        # the clone's code, not this checkout's (the venv's editable install points here)
        "PYTHONPATH": os.pathsep.join([str(src / "services"), str(src)]),
    }
    command = [
        sys.executable,
        "-m",
        "trainer.pipeline",
        "--profile",
        args.profile,
        "--no-push",
        "--force",  # score the hold-out even if the gate fails (recorded as FORCED)
        "--no-plots",  # the reports' CSV and JSON only: a few MB in the repository, not tens
        "--output-dir",
        str(out),
    ]
    print(f"building in {src} (HEAD {revision[:12]}): {' '.join(command[1:])}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(command, cwd=src, env=env, check=True)
    minutes = (time.perf_counter() - t0) / 60
    runs = sorted(out.glob("optimization_results/*/final/pipeline.json")) or sorted(
        out.glob("runs/*/pipeline.json")
    )
    summary = json.loads(runs[-1].read_text())
    artifact = Path(summary["artifact"])
    manifest = json.loads((artifact / "manifest.json").read_text())
    if manifest["git_revision"] != revision:
        raise SystemExit(f"manifest git_revision {manifest['git_revision']} != HEAD {revision}")
    if EXAMPLE_ROOT.exists():
        shutil.rmtree(EXAMPLE_ROOT)
    target = EXAMPLE_ROOT / artifact.name
    shutil.copytree(artifact, target)
    summary["built_by"] = {
        "command": "make example-model",
        "git_revision": revision,
        "wall_minutes": round(minutes, 1),
        "cpus": os.cpu_count(),
    }
    (target / "pipeline.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    print(f"example model: {target.relative_to(REPO)} ({minutes:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
