"""How scripts/mutate.py stages a module and runs mutmut on it.

Why a staging copy: the services are installed under import names that differ from their folders
(``services/execution`` is imported as ``execution``). mutmut names every mutant after the file's
path and matches it with the module name seen at run time, so it is run in a staged tree,
``var/mutate/<module>/``, where the packages sit at their import names (``shared/``,
``execution/``, ``inference/``) next to a copy of ``tests/`` and a ``pyproject.toml`` whose
``[tool.mutmut]`` section is the repository's own, plus the one module to mutate and its test
selection. mutmut then copies that stage into ``mutants/`` and never touches the working tree.

Also here: which mutants a run asks for (SCOPE's patterns, the CI gate's sample of the changed
functions, the functions changed since a module's last run) and reading their statuses back.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import mutate_merge  # scripts/ is on sys.path when run as a script
import mutate_quick
from mutate_config import MODULES, PACKAGES, REPO, SCOPE, STAGE_ROOT
from mutate_judged import equivalence, judged_diffs


def import_path(repo_path: str) -> str:
    """``services/execution/risk.py`` -> ``execution/risk.py`` (its path in the stage)."""
    for folder, name in PACKAGES.items():
        if repo_path.startswith(folder + "/"):
            return name + repo_path[len(folder) :]
    raise ValueError(f"{repo_path} is not in a staged package")


def stage(module: str, tests: list[str], src: Path = REPO, under: Path = STAGE_ROOT) -> Path:
    """Build var/mutate/<module>/ with the packages at their import names and the tests, copied
    from ``src`` (the working tree, or a commit's tree: --source-ref). ``under``: the quick
    gate's own folder, so a sample never replaces the stage of a module's last recorded run
    (--changed-only compares against that stage's source)."""
    root = under / module.replace("/", "_").removesuffix(".py")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder, name in PACKAGES.items():
        shutil.copytree(src / folder, root / name, ignore=ignore)
    shutil.copytree(src / "tests", root / "tests", ignore=ignore)
    # A few tests import a service by its folder (``services.execution.risk``), which would load
    # a second, unmutated copy of the module; in the stage they import it by its package name.
    for test in (root / "tests").rglob("*.py"):
        text = test.read_text()
        fixed = re.sub(r"\bservices\.(execution|inference)\b", r"\1", text)
        if fixed != text:
            test.write_text(fixed)
    # the shipped models: tests that serve a policy load the baseline from the repository root,
    # and the regime tests check the committed example's fingerprint
    for shipped in ("baseline", "example"):
        if (src / "models" / shipped).is_dir():
            shutil.copytree(src / "models" / shipped, root / "models" / shipped, ignore=ignore)
    # test_manifest.py runs scripts/make_baseline_model.py from the repository root
    shutil.copytree(src / "scripts", root / "scripts", ignore=ignore)
    cfg = tomllib.loads((src / "pyproject.toml").read_text())
    mm = dict(cfg["tool"]["mutmut"])
    mm["also_copy"] = [*mm.get("also_copy", []), "models", "scripts"]
    mm["only_mutate"] = [import_path(module)]
    mm["pytest_add_cli_args_test_selection"] = [t for t in tests if (src / t).exists()]
    pytest_opts = cfg["tool"]["pytest"]["ini_options"]
    lines = ["[tool.mutmut]"]
    for key, value in mm.items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines.append("")
    lines.append("[tool.pytest.ini_options]")
    for key, value in pytest_opts.items():
        lines.append(f"{key} = {json.dumps(value)}")
    (root / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return root


SHOW_ALL = """
import json, sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = get_diff_for_mutant(name, path=find_mutant(name).path)
    except Exception as exc:  # keep going: one bad diff must not lose the others
        out[name] = f"(diff unavailable: {exc})"
print(json.dumps(out))
"""

STATUS_RE = re.compile(r"^\s+(\S+): (.+)$")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL what is left after 5 s."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_module(
    module: str,
    limit_s: float,
    children: int,
    only: list[str] | None = None,
    ref: str | None = None,
    under: Path = STAGE_ROOT,
) -> dict:
    """mutmut over ``module`` (every mutant, or just the names in ``only``), judged and scored;
    staged (under ``under``) from the working tree, or from commit ``ref``."""
    tests = MODULES[module]
    if ref is None:
        root = stage(module, tests, under=under)
    else:
        with tempfile.TemporaryDirectory(prefix="mutate-src-") as tmp:
            archive = subprocess.run(
                ["git", "archive", ref], cwd=REPO, capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            kept = [t for t in tests if (Path(tmp) / t).exists()]
            root = stage(module, kept, Path(tmp), under)
    commit = mutate_merge.source_commit(
        REPO, module, ref
    )  # at staging: the source the mutants are made from
    tests = [t for t in tests if (root / t).exists()]  # the selection mutmut was given
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    mutmut = [sys.executable, "-m", "mutmut"]
    t0 = time.monotonic()
    timed_out = False
    log = root / "mutmut-run.log"
    with log.open("w") as out:
        # its own process group: on the time limit the forked mutant workers go too
        proc = subprocess.Popen(
            [*mutmut, "run", "--max-children", str(children), *(only or [])],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            timed_out, rc = True, None
            stop_group(proc)
    elapsed = time.monotonic() - t0
    statuses = read_statuses(root)
    if only is not None:  # a sample or a scope: judge only the mutants that were asked for
        asked = {n: s for n, s in statuses.items() if any(fnmatch.fnmatch(n, p) for p in only)}
        asked.update({n: "not checked" for n in only if "*" not in n and n not in statuses})
        statuses = asked
    open_names = [
        n
        for n, s in statuses.items()
        if s not in ("killed", "caught by type check", "not checked", "skipped")
    ]
    # one process for every diff (`mutmut show` per mutant costs a second each)
    diffs = subprocess.run(
        [sys.executable, "-c", SHOW_ALL, *open_names],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        diff_by_name = json.loads(diffs.stdout.strip().splitlines()[-1]) if open_names else {}
    except (IndexError, json.JSONDecodeError):
        diff_by_name = {}
    survivors = {
        n: {"status": statuses[n], "diff": diff_by_name.get(n, "(diff unavailable)")}
        for n in open_names
    }
    recorded = judged_diffs()
    # counts, scores, survivors and the per-mutant statuses (what --changed-only keeps for
    # unchanged functions), computed as for a merged row
    row = mutate_merge.scored(statuses, survivors, lambda n, d: equivalence(n, d, recorded))
    finished = (
        not timed_out and rc == 0 and row["counts"].get("not checked", 0) == 0 and row["judged"] > 0
    )
    return {
        "module": module,
        "tests": tests,
        **row,
        "finished": finished,
        "timed_out": timed_out,
        "rc": rc,
        "seconds": round(elapsed, 1),
        "log": str(log.relative_to(REPO)),
        "sampled": None if only is None else len(only),
        # what was mutated: the staged copy (the working tree may have changed during the run)
        "source_sha256": hashlib.sha256((root / import_path(module)).read_bytes()).hexdigest(),
        "source_commit": commit,
    }


def read_statuses(root: Path) -> dict[str, str]:
    """Every mutant's status in the stage ``root`` (``mutmut results --all true``)."""
    res = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=root,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        capture_output=True,
        text=True,
        check=False,
    )
    statuses: dict[str, str] = {}
    for line in res.stdout.splitlines():
        m = STATUS_RE.match(line)
        if m:
            statuses[m.group(1)] = m.group(2).strip()
    return statuses


def changed_since_run(module: str, prev: dict, new_source: str) -> tuple[list[str], dict[str, str]]:
    """The function stems whose source differs from the last full run's staged copy, and that
    run's status of every mutant (from history, else from its stage folder)."""
    root = STAGE_ROOT / module.replace("/", "_").removesuffix(".py")
    old_path = root / import_path(module)
    if not old_path.exists():
        raise SystemExit(f"{module}: the last run's stage {root} is gone; run it in full")
    old_source = old_path.read_text()
    recorded = prev.get("source_sha256")
    # a run recorded before the sha was kept: the rebuild below refuses a stage whose mutants
    # do not add up to the run's counts and survivors
    if recorded is not None and hashlib.sha256(old_source.encode()).hexdigest() != recorded:
        raise SystemExit(f"{module}: the stage is not the last recorded run's source")
    statuses = prev.get("statuses")
    if not statuses:
        # a run recorded before per-mutant statuses were kept: its stage folder cannot say
        # (a --survivors-only re-run restages it, leaving every other mutant "not checked"),
        # so rebuild them from the run's own source, its survivors and its counts
        prefix = import_path(module).removesuffix(".py").replace("/", ".")
        stems = SCOPE.get(module) or list(mutate_merge.function_sources(old_source))
        names = [
            f"{prefix}.{n}" for n in mutate_quick.mutants_of(import_path(module), old_source, stems)
        ]
        statuses = mutate_merge.statuses_from_counts(prev, names)
    if not statuses:
        raise SystemExit(f"{module}: no per-mutant statuses of the last run")
    return mutate_merge.changed_functions(old_source, new_source), statuses


def changed_modules() -> list[str]:
    """Money-path modules changed vs the merge base (origin/main, else HEAD~1), working tree too."""
    names = mutate_quick.changed_files(REPO, mutate_quick.diff_base(REPO))
    return [m for m in MODULES if m in names]


def scope_patterns(module: str) -> list[str] | None:
    """mutmut name patterns of the functions in SCOPE[module], or None (the whole module)."""
    if module not in SCOPE:
        return None
    prefix = import_path(module).removesuffix(".py").replace("/", ".")
    return [f"{prefix}.{stem}__mutmut_*" for stem in SCOPE[module]]


def quick_sample(module: str, limit: int) -> list[str]:
    """Full mutant names of (at most ``limit``) mutants in the functions changed in ``module``."""
    base = mutate_quick.diff_base(REPO)
    lines = mutate_quick.changed_lines(REPO, base, module)
    source = (REPO / module).read_text()
    stems = mutate_quick.changed_functions(source, lines)
    if module in SCOPE:
        stems = [s for s in stems if s in SCOPE[module]]
    names = mutate_quick.mutants_of(import_path(module), source, stems)
    prefix = import_path(module).removesuffix(".py").replace("/", ".")
    return [f"{prefix}.{n}" for n in mutate_quick.spread(names, limit)]
