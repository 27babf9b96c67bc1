"""The model folder store: artifact versions under a model root, and the push history there.

``write_artifact`` writes ``<root>/<version>/`` (``model.onnx`` + ``manifest.json``, the contract in
``shared.manifest``) atomically; ``resolve_artifact`` locates a version (or a family's last
version) inside the root; ``list_versions`` lists every artifact under it. ``pushes.json`` in the
root is the trainer's push/rollback history: ``read_push_history``, ``current_pushed_version``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from shared.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    ArtifactError,
    ModelManifest,
    encode_manifest,
    sha256_bytes,
)

# a version names a folder under the model root: no path separators, no leading dot
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# --------------------------------------------------------------------------- writing


def write_artifact(
    root: str | os.PathLike[str],
    manifest: ModelManifest,
    onnx_bytes: bytes,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``<root>/<manifest.version>/`` atomically (temp folder + rename); returns the folder.

    ``manifest.onnx_sha256`` is (re)computed from ``onnx_bytes``. An existing version is refused
    unless ``overwrite`` (versions are immutable once pushed).
    """
    if not _VERSION_RE.match(manifest.version):
        raise ValueError(f"version {manifest.version!r}: use letters, digits, '.', '_', '-'")
    manifest = msgspec.structs.replace(manifest, onnx_sha256=sha256_bytes(onnx_bytes))
    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    final = root_path / manifest.version
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists: model versions are immutable")
    tmp = Path(tempfile.mkdtemp(prefix=f".{manifest.version}.", dir=root_path))
    try:
        (tmp / MODEL_FILE).write_bytes(onnx_bytes)
        (tmp / MANIFEST_FILE).write_bytes(encode_manifest(manifest))
        os.chmod(tmp, 0o755)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# --------------------------------------------------------------------------- locating


def resolve_artifact(root: str | os.PathLike[str], version: str) -> Path:
    """Folder of ``version`` under ``root``.

    ``version`` is a path relative to ``root`` without ``..`` (``v7``, ``baseline/ma-10-50-v1``).
    If it names a folder of versions (``baseline``) the lexicographically last version with a
    manifest is chosen.
    """
    root_path = Path(root).resolve()
    parts = Path(version).parts
    if not version or Path(version).is_absolute() or ".." in parts:
        raise ArtifactError(
            f"model version {version!r} must be a relative path inside the model root {root}"
        )
    folder = (root_path / version).resolve()
    if root_path not in (folder, *folder.parents):
        raise ArtifactError(f"model version {version!r} escapes the model root {root}")
    if (folder / MANIFEST_FILE).is_file():
        return folder
    if folder.is_dir():
        children = sorted(p for p in folder.iterdir() if (p / MANIFEST_FILE).is_file())
        if children:
            return children[-1]
    raise ArtifactError(f"no model artifact at {folder} (need {MANIFEST_FILE} and {MODEL_FILE})")


def list_versions(root: str | os.PathLike[str]) -> list[str]:
    """Every artifact under ``root`` (one or two levels deep), as paths relative to ``root``."""
    root_path = Path(root)
    if not root_path.is_dir():
        return []
    found = [p.parent for p in root_path.glob(f"*/{MANIFEST_FILE}")]
    found += [p.parent for p in root_path.glob(f"*/*/{MANIFEST_FILE}")]
    return sorted(str(p.relative_to(root_path)) for p in found)


# --------------------------------------------------------------------------- push history
PUSH_HISTORY_FILE = "pushes.json"  # in the model root; appended by each push and rollback


def read_push_history(model_root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The trainer's push/rollback history (oldest first); empty when nothing was pushed."""
    path = Path(model_root) / PUSH_HISTORY_FILE
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return list(data) if isinstance(data, list) else []


def current_pushed_version(model_root: str | os.PathLike[str]) -> str | None:
    """The version the last push or rollback announced, so a restarted or newly scaled inference
    instance serves what the running ones serve instead of falling back to its start setting."""
    history = read_push_history(model_root)
    return str(history[-1]["version"]) if history else None
