"""The integration tier N times in a row: the stability record of issue 17.

    python scripts/stability.py --runs 20 --workers 3      # what `make stability` runs

Each run is ``pytest -m "integration and not slow" -n <workers>`` (pytest-xdist; the real-training
tests are in the ``slow`` tier, which `make test` runs once); its output goes to
``var/stability/run_<i>.log`` and one line per run to ``var/stability/summary.txt``: run number,
exit code, wall seconds, pytest's last line, the 1-minute load average at the end, the commit. The
loop stops at the first failed run, since the record is a number of green runs *in a row*; the
exit code is that run's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=3, help="pytest-xdist workers (-n)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "stability")
    args = ap.parse_args()
    if args.runs < 1 or args.workers < 1:
        ap.error("--runs and --workers must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = args.out / "summary.txt"
    commit = _commit()
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "integration and not slow",
        "-n",
        str(args.workers),
        "-p",
        "no:cacheprovider",
    ]
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with summary.open("a") as fh:
        fh.write(f"# {started} commit {commit}: {' '.join(command[1:])} x {args.runs}\n")
    for run in range(1, args.runs + 1):
        log = args.out / f"run_{run}.log"
        t0 = time.monotonic()
        with log.open("w") as fh:
            rc = subprocess.run(
                command, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT
            ).returncode
        secs = time.monotonic() - t0
        lines = log.read_text().strip().splitlines()
        last = lines[-1] if lines else "(no output)"
        line = (
            f"run {run} rc={rc} secs={secs:.0f} load1={os.getloadavg()[0]:.1f} "
            f"commit={commit} {last}"
        )
        print(line, flush=True)
        with summary.open("a") as fh:
            fh.write(line + "\n")
        if rc != 0:
            print(f"run {run} failed: see {log}", file=sys.stderr)
            return rc
    print(f"{args.runs} runs in a row green (commit {commit}); record in {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
