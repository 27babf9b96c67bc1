"""Model pushes and rollbacks: ``best_models/<version>`` -> shared model root + ``model.updated``.

A push

1. opens the candidate with ``shared.loaded_model.load_artifact`` against the pipeline inference
   serves it with (its own manifest's feature config, checked): a corrupted file (checksum), a
   manifest that does not match that pipeline (fingerprint, observation names, normaliser) or an
   ONNX graph that does not load is refused here, before anything is copied;
2. refuses a model the promotion gate rejected unless ``force`` (logged);
3. copies the folder into the model root (temp folder + rename; an existing version must be
   byte-identical: versions are immutable) and opens the copy again with the expected sha256;
4. appends to ``<model root>/pushes.json`` (the push history) and publishes a signed
   ``model.updated`` (``shared.auth.sign``; inference verifies the HMAC and hot-swaps).

A version that is not in ``best_models/`` but already in the model root (the shipped baseline, a
model copied in by ``make docker-push``) is verified and announced by its path there, so every
version ``list_models`` shows can be pushed. The reply names the symbols the model was trained on.

A rollback re-announces the version pushed before the current one (or the shipped baseline when
there is none), after checking it with ``load_artifact`` as well.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from shared.auth import sign
from shared.features import FeaturePipeline
from shared.loaded_model import LoadedModel, load_artifact, pipeline_from_manifest
from shared.manifest import ArtifactError, read_manifest, sha256_file
from shared.messages import ModelUpdated
from shared.model_store import (
    PUSH_HISTORY_FILE,
    current_pushed_version,
    list_versions,
    read_push_history,
    resolve_artifact,
)

HISTORY_FILE = PUSH_HISTORY_FILE


class PushError(Exception):
    """A push or rollback was refused; the message says why."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_history(model_dir: Path) -> list[dict[str, Any]]:
    return read_push_history(model_dir)


def _write_history(model_dir: Path, history: list[dict[str, Any]]) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".{HISTORY_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(history, indent=2) + "\n")
    os.replace(tmp, model_dir / HISTORY_FILE)


def current_version(model_dir: Path) -> str | None:
    return current_pushed_version(model_dir)


def verify(
    folder: Path, pipeline: FeaturePipeline | None = None, sha256: str | None = None
) -> LoadedModel:
    """``load_artifact`` as inference will run it; ``PushError`` with the reason otherwise."""
    try:
        # inference opens each artifact with the pipeline of its own feature config
        own = pipeline or pipeline_from_manifest(read_manifest(folder))
        return load_artifact(folder, own, expected_sha256=sha256)
    except ArtifactError as exc:
        raise PushError(f"refused {folder.name}: {exc}") from None


def _copy_in(src: Path, model_dir: Path, sha256: str) -> Path:
    """Copy ``src`` to ``model_dir/<name>`` atomically; an existing copy must be identical."""
    dst = model_dir / src.name
    if dst.exists():
        try:
            same = sha256_file(dst / "model.onnx") == sha256 and (
                (dst / "manifest.json").read_bytes() == (src / "manifest.json").read_bytes()
            )
        except OSError:
            same = False
        if not same:
            raise PushError(f"{dst} exists with different content: versions are immutable")
        return dst
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{src.name}.", dir=model_dir))
    try:
        for name in ("model.onnx", "manifest.json"):
            shutil.copy2(src / name, tmp / name)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def model_updated(version: str, sha256: str, key: bytes, action: str = "push") -> ModelUpdated:
    """A signed ``model.updated``; ``path`` is relative to the shared model root."""
    message = ModelUpdated(
        version=version,
        path=version,
        onnx_sha256=sha256,
        action=action,  # type: ignore[arg-type]
        ts_event=time.time_ns(),
    )
    signed: ModelUpdated = sign(message, key)
    return signed


def push_model(
    version: str,
    *,
    source_root: Path,
    model_dir: Path,
    key: bytes,
    publish: Any = None,
    force: bool = False,
    pipeline: FeaturePipeline | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Verify, copy and announce ``version``.

    ``version`` is looked up in ``source_root`` (``best_models/``) first, then in the model root
    itself (the baseline, a version pushed before, one copied in by hand): every version that
    :func:`list_models` shows can be pushed. One already in the model root is announced by its
    path there (like a rollback) and not copied.
    """
    src, in_root = locate(version, source_root, model_dir)
    model = verify(src, pipeline)
    verdict = model.manifest.promotion.verdict
    forced = False
    if verdict not in ("promoted", "baseline"):
        if not force:
            raise PushError(
                f"refused {model.version}: promotion verdict is {verdict!r} "
                f"({model.manifest.promotion.reason}); use force to push anyway"
            )
        forced = True
        if log is not None:
            log(
                "push_forced",
                version=model.version,
                verdict=verdict,
                reason=model.manifest.promotion.reason,
            )
    sha = model.manifest.onnx_sha256
    if in_root:
        dst = src
        announced = src.relative_to(model_dir.resolve()).as_posix()
    else:
        dst = _copy_in(src, model_dir, sha)
        verify(dst, pipeline, sha)  # the copy inference will open
        announced = model.version
    history = read_history(model_dir)
    history.append(
        {
            "version": announced,
            "sha256": sha,
            "at": _now(),
            "action": "push",
            "forced": forced,
            "verdict": verdict,
        }
    )
    _write_history(model_dir, history)
    message = model_updated(announced, sha, key, "push")
    if publish is not None:
        publish(message)
    symbols = list(model.manifest.symbols)
    return {
        "version": announced,
        "path": str(dst),
        "sha256": sha,
        "forced": forced,
        "verdict": verdict,
        "published": publish is not None,
        # Which symbols the model was trained on. Inference applies it to every bar it receives;
        # execution trades the symbols of its paper config.
        "trained_on": symbols,
        "serves": serves_note(announced, symbols),
    }


def serves_note(version: str, symbols: list[str]) -> str:
    """One line for the push reply and log: what the newly served model was trained on."""
    trained = ", ".join(symbols) or "no recorded symbol"
    return (
        f"{version} now serves every symbol inference receives; it was trained on {trained}. "
        "Execution trades the symbols of its paper config."
    )


def locate(version: str, source_root: Path, model_dir: Path) -> tuple[Path, bool]:
    """(folder, already in the model root) of ``version``; ``PushError`` when neither has it."""
    errors = []
    for root, in_root in ((source_root, False), (model_dir, True)):
        try:
            return resolve_artifact(root, version), in_root
        except ArtifactError as exc:
            errors.append(str(exc))
    raise PushError(f"no model {version!r} in {source_root} or {model_dir}: " + "; ".join(errors))


def rollback(
    *,
    model_dir: Path,
    key: bytes,
    publish: Any = None,
    pipeline: FeaturePipeline | None = None,
) -> dict[str, Any]:
    """Announce the version that was current before the current one (or the baseline)."""
    history = read_history(model_dir)
    current = history[-1]["version"] if history else None
    # Walk back over the history to the last version that differs from the current one.
    previous = next((h["version"] for h in reversed(history) if h["version"] != current), None)
    if previous is None:
        try:
            previous = (
                resolve_artifact(model_dir, "baseline").relative_to(model_dir.resolve()).as_posix()
            )
        except (ArtifactError, ValueError):
            raise PushError(
                "nothing to roll back to: no earlier push and no baseline model"
            ) from None
    folder = resolve_artifact(model_dir, previous)
    model = verify(folder, pipeline)
    sha = model.manifest.onnx_sha256
    history.append(
        {
            "version": previous,
            "sha256": sha,
            "at": _now(),
            "action": "rollback",
            "replaced": current,
        }
    )
    _write_history(model_dir, history)
    message = model_updated(previous, sha, key, "rollback")
    if publish is not None:
        publish(message)
    return {
        "version": previous,
        "replaced": current,
        "sha256": sha,
        "published": publish is not None,
    }


def list_models(source_root: Path, model_dir: Path) -> list[dict[str, Any]]:
    """Exported models (``best_models/``) and pushed ones, with verdicts and test metrics."""
    current = current_version(model_dir)
    pushed = set(list_versions(model_dir))
    rows: list[dict[str, Any]] = []
    for root, where in ((source_root, "exported"), (model_dir, "model_dir")):
        for version in list_versions(root):
            if any(part.startswith(".") for part in Path(version).parts):
                continue  # an unfinished copy or export's staging folder, not a version
            if where == "model_dir" and (source_root / version / "manifest.json").exists():
                continue  # listed once, from best_models
            try:
                m = read_manifest(root / version)
            except ArtifactError as exc:
                rows.append({"version": version, "where": where, "error": str(exc)})
                continue
            rows.append(
                {
                    "version": version,
                    "where": where,
                    "algorithm": m.algorithm,
                    "created_at": m.created_at,
                    "verdict": m.promotion.verdict,
                    "reason": m.promotion.reason,
                    "test_sharpe": m.test_metrics.get("sharpe"),
                    "validation_sharpe": m.validation_metrics.get("sharpe"),
                    "tune_trial_id": m.tune_trial_id,
                    "pushed": version in pushed,
                    "current": version == current,
                }
            )
    return rows
