"""Which features a pipeline computes and what identifies it: ``FeatureConfig`` (the windows of
every feature, validated), ``feature_names`` (the column order), ``warmup_bars`` (bars before the
first complete row) and ``pipeline_fingerprint`` (sha256 of the config, the names and
``FEATURE_CODE_VERSION``, which every model manifest records and inference checks).

The formulas themselves are in ``shared.features`` (batch and online passes). Change
``FEATURE_CODE_VERSION`` whenever a formula there changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from shared.regime import RegimeConfig, regime_names, regime_warmup

FEATURE_CODE_VERSION = "1"


class FeatureConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Windows of every feature. Defaults are the project's standard pipeline."""

    return_horizons: tuple[int, ...] = (1, 5, 20)
    rsi_window: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_window: int = 20
    bb_dev: float = 2.0
    atr_window: int = 14
    volume_window: int = 20
    vol_short: int = 20
    vol_long: int = 100
    trend_fast: int = 10
    trend_slow: int = 50
    # The optional regime block (shared.regime): None = off, and then ``to_dict`` leaves the key
    # out, so every existing manifest's fingerprint and feature list stay as they were.
    regime: RegimeConfig | None = None

    def __post_init__(self) -> None:
        if not self.return_horizons or min(self.return_horizons) < 1:
            raise ValueError("return_horizons: need at least one horizon, all >= 1")
        for name in (
            "rsi_window",
            "macd_fast",
            "macd_slow",
            "macd_signal",
            "bb_window",
            "atr_window",
            "volume_window",
            "vol_short",
            "vol_long",
            "trend_fast",
            "trend_slow",
        ):
            if getattr(self, name) < 2:
                raise ValueError(f"{name}: must be >= 2")
        if self.macd_fast >= self.macd_slow:
            raise ValueError("macd_fast: must be < macd_slow")
        if self.vol_short >= self.vol_long:
            raise ValueError("vol_short: must be < vol_long")
        if self.trend_fast >= self.trend_slow:
            raise ValueError("trend_fast: must be < trend_slow")
        if self.bb_dev <= 0:
            raise ValueError("bb_dev: must be > 0")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        if out.get("regime") is None:
            out.pop("regime", None)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
        return msgspec.convert(dict(data), cls)


def _fmt(x: float) -> str:
    return f"{x:g}"


def feature_names(config: FeatureConfig) -> list[str]:
    c = config
    return [
        *(f"ret_{h}" for h in c.return_horizons),
        f"rsi_{c.rsi_window}",
        f"macd_{c.macd_fast}_{c.macd_slow}",
        f"macd_hist_{c.macd_fast}_{c.macd_slow}_{c.macd_signal}",
        f"bb_pos_{c.bb_window}_{_fmt(c.bb_dev)}",
        f"atr_{c.atr_window}",
        f"volz_{c.volume_window}",
        f"vol_regime_{c.vol_short}_{c.vol_long}",
        f"trend_{c.trend_fast}_{c.trend_slow}",
        *(regime_names(c.regime) if c.regime is not None else ()),
    ]


def warmup_bars(config: FeatureConfig) -> int:
    """Bars needed before the first complete feature row (that row is index warmup_bars - 1)."""
    c = config
    return max(
        max(c.return_horizons) + 1,
        c.rsi_window,
        c.macd_slow + c.macd_signal - 1,
        c.bb_window,
        c.atr_window,
        c.volume_window,
        c.vol_long + 1,
        c.trend_slow,
        regime_warmup(c.regime) if c.regime is not None else 0,
    )


def pipeline_fingerprint(config: FeatureConfig) -> str:
    """sha256 (hex) of the config, the feature names and ``FEATURE_CODE_VERSION``."""
    payload = {
        "code_version": FEATURE_CODE_VERSION,
        "config": config.to_dict(),
        "names": feature_names(config),
    }
    blob = msgspec.json.encode(payload, order="sorted")
    return hashlib.sha256(blob).hexdigest()
