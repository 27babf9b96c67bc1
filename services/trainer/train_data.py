"""The bars a training run reads: one slice (train / validation / test) of one symbol.

``SliceData`` holds the slice's bars, the env's market data (features normalised with the run's
normaliser) and the greedy policy's observations; ``load_slice`` builds it from a
``TrainConfig``. ``trainer.train.prepare_data`` loads the training and validation slices of
every symbol; the export, the pipeline and the seed spread load the test slice with the same
normaliser.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shared.env_config import EnvConfig
from shared.env_market import MarketData, prepare_market
from shared.observation import build_observations
from trainer.config import TrainConfig


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass
class SliceData:
    """One evaluation slice: its bars, env observations and where trading starts."""

    name: str
    env_config: EnvConfig
    market: MarketData
    bars: pd.DataFrame

    @property
    def start(self) -> int:
        return self.market.first

    @functools.cached_property
    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """(obs with position 0, valid rows) for every bar; the env's rows before its first
        decision are zeros, but a backtest's first decision reads the bar before the slice."""
        feats = self.market.features
        valid = np.asarray(np.isfinite(feats).all(axis=1), dtype=bool)
        obs = np.zeros((len(feats), feats.shape[1] + 1), dtype=np.float32)
        obs[valid] = build_observations(feats[valid], np.zeros(int(valid.sum())))
        return obs, valid

    def describe(self) -> dict[str, Any]:
        """The bars the slice covers, as ``shared.data.content_hash`` identifies them: from the
        slice's start (the whole history for an open start, warm-up included) to its end."""
        idx = self.market.index
        start = self.env_config.start
        s0 = 0 if start is None else int(np.searchsorted(idx.asi8, _utc(start).value))
        return {
            "role": self.name,
            "source": self.env_config.source,
            "symbol": self.env_config.symbol,
            "start": idx[s0].isoformat(),
            "end": idx[-1].isoformat(),
            "rows": len(idx) - s0,
            "content_hash": self.market.data_hash,
        }


def load_slice(
    cfg: TrainConfig, split: str, normaliser: dict[str, Any] | None, symbol: str | None = None
) -> SliceData:
    from shared.data import load_bars

    symbol = symbol or cfg.symbol
    env_cfg = cfg.env_config(split, normaliser, symbol)
    market = prepare_market(env_cfg)
    bars = load_bars(cfg.source, symbol)
    bars = bars.iloc[: len(market.index)]  # prepare_market cut at the slice's end the same way
    if not bars.index.equals(market.index):
        raise RuntimeError(f"{split}: bars and env market data are not aligned")
    return SliceData(split, env_cfg, market, bars)
