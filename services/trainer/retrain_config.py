"""How a retrain is set up and recorded: its settings, the registry file, the data window, the
pipeline's arguments (``trainer.retrain.RetrainLoop`` runs them).

``RetrainSettings`` (``TRAINER_RETRAIN_*``, checked at start); ``read_records`` /
``write_records``: the candidates in ``<model root>/retrain.json``; ``window_overrides``: the
``TrainConfig`` slice dates of the last ``window`` of the bar store (60 / 20 / 20 %);
``pipeline_argv``: one configured policy, no search, no live push.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import msgspec

from shared.config import from_env, require

RECORDS_FILE = "retrain.json"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str) -> float | None:
    """``90s`` / ``30m`` / ``6h`` / ``1d`` / ``2w`` in seconds; ``off`` / ``""`` / ``0`` -> None."""
    text = text.strip().lower()
    if text in ("", "off", "0", "none"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 6h, 1d or 2w")
    return float(match.group(1)) * UNITS[match.group(2)]


class RetrainSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Scheduled retraining (prefix ``TRAINER_RETRAIN_``); off unless ``EVERY`` is set."""

    every: str = "off"  # how often the schedule retrains: off | 90s | 30m | 6h | 1d | 1w
    window: str = "730d"  # train on the bars closing in this last stretch of the bar store
    barstore: str = ""  # the SQLite bar store marketdata writes (MARKETDATA_BAR_STORE)
    symbols: str = ""  # comma-separated; empty = every symbol the store holds
    shadow_sessions: int = 5  # complete sessions the candidate is watched as a shadow
    margin: float = 0.0  # percentage points the shadow must beat live by, over those sessions
    seeds: int = 1  # seeds the pipeline trains (median promoted)
    profile: str = "quick"
    overrides: str = ""  # JSON object of TrainConfig overrides, e.g. {"iterations": 5}
    check_interval_s: float = 30.0  # how often the schedule is looked at

    def __post_init__(self) -> None:
        for name in ("every", "window"):
            try:
                parse_duration(getattr(self, name))
            except ValueError as exc:
                require(False, name, str(exc))
        require(parse_duration(self.window) is not None, "window", "must be a duration")
        require(
            parse_duration(self.every) is None or bool(self.barstore),
            "barstore",
            "must name the bar store when the schedule is on",
        )
        require(1 <= self.shadow_sessions <= 1000, "shadow_sessions", "must be in 1..1000")
        require(self.margin >= 0, "margin", "must be >= 0 (percentage points)")
        require(1 <= self.seeds <= 20, "seeds", "must be in 1..20")
        require(self.profile in ("quick", "full"), "profile", "must be quick or full")
        require(self.check_interval_s > 0, "check_interval_s", "must be > 0")
        try:
            parsed = json.loads(self.overrides) if self.overrides else {}
        except ValueError:
            parsed = None
        require(isinstance(parsed, dict), "overrides", "must be a JSON object")

    @property
    def every_s(self) -> float | None:
        return parse_duration(self.every)

    @property
    def window_s(self) -> float:
        window = parse_duration(self.window)
        assert window is not None  # checked in __post_init__
        return window


def retrain_settings(env: dict[str, str] | None = None) -> RetrainSettings:
    return from_env(RetrainSettings, "TRAINER_RETRAIN_", env)


# --------------------------------------------------------------------------- the registry


def read_records(model_dir: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads((model_dir / RECORDS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return records if isinstance(records, list) else []


def write_records(model_dir: Path, records: list[dict[str, Any]]) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".{RECORDS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(records, indent=2, default=str) + "\n")
    os.replace(tmp, model_dir / RECORDS_FILE)


# --------------------------------------------------------------------------- the data window


def window_overrides(
    store_path: Path, symbols: list[str], window_s: float, now_s: float
) -> dict[str, Any]:
    """TrainConfig slice dates: the last ``window_s`` of the first symbol's stored bars, cut at
    60 % and 80 % (train, validation folds, final hold-out), like ``--source barstore``."""
    from shared.data import barstore_source, barstore_symbols, load_bars

    spec = barstore_source(str(store_path))
    names = symbols or list(barstore_symbols(spec))
    if not names:
        raise ValueError(f"the bar store {store_path} holds no symbol")
    start = dt.datetime.fromtimestamp(now_s - window_s, dt.UTC)
    index = load_bars(spec, names[0]).index
    index = index[index >= start]
    if len(index) < 50:
        raise ValueError(f"{len(index)} {names[0]} bars in the window: too few to train on")
    cut1, cut2 = index[int(len(index) * 0.6)], index[int(len(index) * 0.8)]
    return {
        "source": spec,
        "symbol": names[0],
        "symbols": names,
        "train_start": index[0].isoformat(),
        "train_end": cut1.isoformat(),
        "val_start": cut1.isoformat(),
        "val_end": cut2.isoformat(),
        "test_start": cut2.isoformat(),
        "test_end": None,
    }


def pipeline_argv(settings: RetrainSettings, overrides: dict[str, Any]) -> list[str]:
    """``trainer.pipeline`` arguments: one configured policy, no search, no live push."""
    merged = {**json.loads(settings.overrides or "{}"), **overrides}
    argv = ["--profile", settings.profile, "--skip-tune", "--no-push", "--no-plots"]
    argv += ["--seeds", str(settings.seeds)]
    for key, value in merged.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    return argv
