"""The CI sample of scripts/mutate.py --quick: the mutants of the functions a change touched.

A full run of a large money-path module (features, backtest, inference) takes many minutes on a
2-core runner, over CI's 5-minute step. So for those modules the quick gate mutates only the
functions whose lines differ from the merge base (the working tree included), and of those at
most ``limit`` mutants, spread evenly over the changed functions in file order. The names are
mutmut's own (generated in-process with mutmut's mutator, the same code ``mutmut run`` uses), so
they can be handed to ``mutmut run NAME ...``.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", re.M)


def diff_base(repo: Path) -> str:
    """The merge base with origin/main (else main), or HEAD~1 when HEAD is that base."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    for ref in ("origin/main", "main"):
        r = subprocess.run(
            ["git", "merge-base", "HEAD", ref], cwd=repo, capture_output=True, text=True
        )
        if r.returncode == 0 and r.stdout.strip() != head.stdout.strip():
            return r.stdout.strip()
    return "HEAD~1"


def changed_files(repo: Path, base: str) -> set[str]:
    r = subprocess.run(
        ["git", "diff", "--name-only", base], cwd=repo, capture_output=True, text=True
    )
    return set(r.stdout.split()) if r.returncode == 0 else set()


def changed_lines(repo: Path, base: str, path: str) -> set[int]:
    """Line numbers (in the working tree's file) added or changed since ``base``; a pure
    deletion counts as the line after it."""
    r = subprocess.run(
        ["git", "diff", "-U0", base, "--", path], cwd=repo, capture_output=True, text=True
    )
    lines: set[int] = set()
    for m in HUNK.finditer(r.stdout):
        start, count = int(m.group(1)), int(m.group(2) if m.group(2) is not None else 1)
        lines.update(range(start, start + max(count, 1)))
    return lines


def changed_functions(source: str, lines: set[int]) -> list[str]:
    """mutmut's name stems (``x_func``, ``xǁClassǁmethod``) of the module-level functions and
    methods of module-level classes that contain a changed line, in file order."""
    stems: list[str] = []

    def touched(node: ast.AST) -> bool:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        return any(first <= ln <= (node.end_lineno or node.lineno) for ln in lines)

    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and touched(node):
            stems.append(f"x_{node.name}")
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and touched(item):
                    stems.append(f"xǁ{node.name}ǁ{item.name}")
    return stems


def mutants_of(stage_path: str, source: str, stems: list[str]) -> list[str]:
    """mutmut's mutant names (without the module prefix) of the functions ``stems``."""
    from mutmut.mutation.file_mutation import mutate_file_contents

    names = mutate_file_contents(stage_path, source).mutant_names
    order = {s: i for i, s in enumerate(stems)}
    picked = [n for n in names if n.rsplit("__mutmut_", 1)[0] in order]
    return sorted(
        picked,
        key=lambda n: (order[n.rsplit("__mutmut_", 1)[0]], int(n.rsplit("__mutmut_", 1)[1])),
    )


def spread(names: list[str], limit: int) -> list[str]:
    """At most ``limit`` of ``names``, evenly spaced (deterministic: same change, same sample)."""
    if len(names) <= limit:
        return list(names)
    step = len(names) / limit
    return [names[int(i * step)] for i in range(limit)]
