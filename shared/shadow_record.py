"""The shadow record ``<model root>/shadow.json``: which candidate runs beside the live model.

The trainer's ``shadow`` verb writes it (``trainer.shadow``), inference reads it at start to load
the shadow again; both import it from here, so no service imports another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SHADOW_FILE = "shadow.json"


def read_shadow_record(model_root: Path) -> dict[str, Any] | None:
    """``{"version": ..., "sha256": ...}`` of the recorded shadow, None if there is none (or the
    file is unreadable: a broken record must not stop inference from starting)."""
    try:
        record = json.loads((model_root / SHADOW_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not record.get("version"):
        return None
    return record
