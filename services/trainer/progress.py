"""Progress output a person can watch: one short line per event, or JSON lines (``--json``).

The CLIs (``trainer.train``, ``trainer.tune``, ``trainer.pipeline``) print readable lines;
with ``--json`` (or when run by the trainer service) every line is a ``shared.logs`` JSON object.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from typing import Any

from shared.logs import configure, event

_log = logging.getLogger("trainer")
_json = False


def setup(json_lines: bool = False) -> None:
    """Choose the output form and quieten Ray's start-up chatter."""
    global _json
    _json = json_lines or os.environ.get("TRAINER_JSON_LOGS", "") == "1"
    if _json:
        configure("trainer")
    else:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    quiet_ray()


def quiet_ray() -> None:
    # RLlib's deprecation warnings repeat per module build; they say nothing about the run.
    for name in ("ray", "ray.rllib", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's console tables (verbose=0 is quiet)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def say(name: str, text: str = "", *, level: str = "info", **fields: Any) -> None:
    """One progress event: ``name`` plus a sentence and/or fields (text line or JSON line)."""
    if _json:
        if text:
            fields = {"msg": text, **fields}
        event(_log, name, getattr(logging, level.upper(), logging.INFO), **fields)
        return
    parts = [text] if text else []
    parts += [f"{k}={_fmt(v)}" for k, v in fields.items()]
    flag = "" if level == "info" else f"{level.upper()}: "
    print(f"[trainer] {name:<10} {flag}{'  '.join(parts)}", flush=True)
