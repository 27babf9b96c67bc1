"""The trainer's shadow verbs: run a candidate beside the live model, then promote or drop it.

* ``shadow {version | path}``: verify the candidate as a push would (``registry.verify``), copy it
  into the model root (versions are immutable), record it in ``<model root>/shadow.json`` (a
  restarted or newly scaled inference replica loads it at start) and publish a signed
  ``model.updated`` with action ``shadow``: every replica loads it as its second session and
  publishes its would-be targets on ``shadow.<SYM>``. The promotion verdict is not required: a
  shadow never trades, watching a doubtful candidate is what it is for.
* ``promote_shadow {force?}``: a plain ``registry.push_model`` of the shadow's version (push
  history, the verdict check with ``force``, the signed ``model.updated`` push): inference swaps
  through its usual path, keeps the old model for ``rollback``, and drops its shadow because it
  is now live. The record is removed.
* ``drop_shadow``: remove the record and publish ``model.updated`` with action ``drop_shadow``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.shadow_record import SHADOW_FILE, read_shadow_record
from trainer import registry


def _write_record(model_dir: Path, record: dict[str, Any]) -> None:
    tmp = model_dir / f".{SHADOW_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, model_dir / SHADOW_FILE)


def load_shadow(
    version: str,
    *,
    source_root: Path,
    model_dir: Path,
    key: bytes,
    publish: Callable[[Any], None] | None,
) -> dict[str, Any]:
    src, in_root = registry.locate(version, source_root, model_dir)
    model = registry.verify(src)
    sha = model.manifest.onnx_sha256
    if in_root:
        announced = src.relative_to(model_dir.resolve()).as_posix()
    else:
        dst = registry._copy_in(src, model_dir, sha)  # same immutable copy as a push
        registry.verify(dst, sha256=sha)
        announced = model.version
    record = {
        "version": announced,
        "sha256": sha,
        "verdict": model.manifest.promotion.verdict,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_record(model_dir, record)
    if publish is not None:
        publish(registry.model_updated(announced, sha, key, "shadow"))
    return {**record, "published": publish is not None, "live": registry.current_version(model_dir)}


def promote_shadow(
    *,
    model_dir: Path,
    key: bytes,
    publish: Callable[[Any], None] | None,
    force: bool = False,
    log: Any = None,
) -> dict[str, Any]:
    record = read_shadow_record(model_dir)
    if record is None:
        raise registry.PushError("no shadow model to promote (load one with the shadow verb)")
    result = registry.push_model(
        str(record["version"]),
        source_root=model_dir,
        model_dir=model_dir,
        key=key,
        publish=publish,
        force=force,
        log=log,
    )
    (model_dir / SHADOW_FILE).unlink(missing_ok=True)
    return {**result, "promoted_shadow": record["version"]}


def drop_shadow(
    *, model_dir: Path, key: bytes, publish: Callable[[Any], None] | None
) -> dict[str, Any]:
    record = read_shadow_record(model_dir)
    (model_dir / SHADOW_FILE).unlink(missing_ok=True)
    version = str(record["version"]) if record is not None else ""
    if publish is not None:
        publish(registry.model_updated(version, "", key, "drop_shadow"))
    return {"dropped": version or None, "published": publish is not None}


def shadow_status(model_dir: Path) -> dict[str, Any] | None:
    return read_shadow_record(model_dir)
