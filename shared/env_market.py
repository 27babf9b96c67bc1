"""The market an env trades: bars and normalised features of one ``EnvConfig``, loaded once.

``prepare_market`` loads (or takes) the bars, cuts them at ``end`` (nothing at or after it is
ever read), computes the features and fits (training) or applies (evaluation) the normaliser.
Without explicit bars the result is cached per process on the config's data fields, so every
env built in a process (single or vectorised) shares one read-only ``MarketData``.

Also here: the gymnasium spaces a market implies, and the exposure that scales the
differential Sharpe ratio's starting variance, both shared by ``TradingEnv`` and
``VectorTradingEnv``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from gymnasium import spaces
from numpy.typing import NDArray

from shared.env_config import EnvConfig
from shared.observation import build_observations
from shared.rebalancing import AccountConfig
from shared.sizing import atr_series

__all__ = ["MarketData", "env_spaces", "full_position_exposure", "prepare_market"]


@dataclass(frozen=True)
class MarketData:
    """Bars and normalised features of one env config, shared read-only by its envs."""

    index: pd.DatetimeIndex
    open: NDArray[np.float64]
    close: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    features: NDArray[np.float64]  # normalised; NaN during the warm-up
    obs: NDArray[np.float32]  # build_observations(features, 0); rows < first are zeros
    first: int  # first bar at which a decision can be taken
    last: int  # last bar (decisions up to last - 1)
    normaliser: Any
    pipeline: Any
    data_hash: str
    sq_ret_cumsum: NDArray[np.float64]  # prefix sums of squared close-to-close returns
    obs_bound: float

    @property
    def n_decisions(self) -> int:
        return self.last - self.first

    def prior_variance(self, t: int, lookback: int = 100) -> float:
        """Mean squared close-to-close return over the ``lookback`` bars up to ``t``."""
        lo = max(1, t - lookback + 1)
        if t < lo:
            return 1e-4
        v = (self.sq_ret_cumsum[t] - self.sq_ret_cumsum[lo - 1]) / (t - lo + 1)
        return float(v) if v > 0 else 1e-4

    def atr(self, period: int) -> NDArray[np.float64]:
        """The Wilder ATR known at each bar's close (NaN while warming up), from the first bar."""
        return atr_series(self.high, self.low, self.close, period)


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def prepare_market(cfg: EnvConfig, bars: pd.DataFrame | None = None) -> MarketData:
    """Load (or take) bars, compute and normalise features for ``cfg``.

    Without ``bars`` the result is cached per process on the config's data fields.
    """
    if bars is None:
        key = msgspec.json.encode(
            [cfg.source, cfg.symbol, cfg.start, cfg.end, cfg.features, cfg.normaliser],
            order="sorted",
        )
        return _cached_market(key.decode())
    return _build_market(cfg, bars)


@functools.lru_cache(maxsize=8)
def _cached_market(key: str) -> MarketData:
    source, symbol, start, end, features, normaliser = msgspec.json.decode(key)
    from shared.data import load_bars

    cfg = EnvConfig(
        source=source,
        symbol=symbol,
        start=start,
        end=end,
        features=features,
        normaliser=normaliser,
    )
    return _build_market(cfg, load_bars(source, symbol))


def _build_market(cfg: EnvConfig, bars: pd.DataFrame) -> MarketData:
    from shared.data import content_hash
    from shared.feature_config import FeatureConfig
    from shared.features import FeaturePipeline
    from shared.normaliser import Normaliser

    if cfg.end is not None:
        bars = bars[bars.index < _utc(cfg.end)]  # nothing at or after `end` is ever read
    ns = pd.DatetimeIndex(bars.index).as_unit("ns").asi8
    s0 = 0 if cfg.start is None else int(np.searchsorted(ns, _utc(cfg.start).value))
    feature_config = FeatureConfig.from_dict(cfg.features)
    regime = feature_config.regime
    if regime is not None and regime.params is None and cfg.normaliser is None:
        # training: the regime HMM is fitted on this slice's bars (all before ``end``), like
        # the normaliser; the fitted numbers are in ``MarketData.pipeline.config``
        from shared.regime import fit_regime

        fitted = fit_regime(regime, bars.iloc[s0:])
        feature_config = msgspec.structs.replace(feature_config, regime=fitted)
    pipeline = FeaturePipeline(feature_config)
    raw = pipeline.batch(bars)
    first = max(s0, pipeline.warmup_bars - 1)
    last = len(bars) - 1
    if last - first < 2:
        raise ValueError(
            f"{cfg.source}/{cfg.symbol} [{cfg.start}, {cfg.end}): {len(bars)} bars leave "
            f"{max(last - first, 0)} decisions after the {pipeline.warmup_bars}-bar warm-up"
        )
    if cfg.normaliser is None:
        normaliser = Normaliser.fit(raw[first:], names=pipeline.names)
    else:
        normaliser = Normaliser.from_dict(cfg.normaliser)
        if normaliser.names and list(normaliser.names) != list(pipeline.names):
            raise ValueError(
                f"normaliser features {normaliser.names} != pipeline features {pipeline.names}"
            )
    feats = np.asarray(normaliser.transform(raw), dtype=np.float64)
    obs = np.zeros((len(bars), feats.shape[1] + 1), dtype=np.float32)
    obs[first:] = build_observations(feats[first:], np.zeros(len(bars) - first))
    close = np.ascontiguousarray(bars["close"].to_numpy(np.float64))
    r = np.zeros(len(close))
    r[1:] = close[1:] / close[:-1] - 1.0
    return MarketData(
        index=pd.DatetimeIndex(bars.index),
        open=np.ascontiguousarray(bars["open"].to_numpy(np.float64)),
        close=close,
        high=np.ascontiguousarray(bars["high"].to_numpy(np.float64)),
        low=np.ascontiguousarray(bars["low"].to_numpy(np.float64)),
        features=feats,
        obs=obs,
        first=first,
        last=last,
        normaliser=normaliser,
        pipeline=pipeline,
        data_hash=content_hash(bars.iloc[s0:]),
        sq_ret_cumsum=np.cumsum(r * r),
        obs_bound=max(float(getattr(normaliser, "clip", 5.0)), 1.0),
    )


def env_spaces(cfg: EnvConfig, market: MarketData) -> tuple[spaces.Box, spaces.Space[Any]]:
    k = market.obs.shape[1]
    b = market.obs_bound
    obs_space = spaces.Box(low=-b, high=b, shape=(k,), dtype=np.float32)
    act: spaces.Space[Any]
    if cfg.action_space == "discrete":
        act = spaces.Discrete(len(cfg.action_targets))
    else:
        act = spaces.Box(low=-1.0, high=1.0, shape=(1,), dtype=np.float32)
    return obs_space, act


def full_position_exposure(account: AccountConfig, market: MarketData, t: int) -> float:
    """Squared fraction of equity a full position is worth at bar ``t`` (scales the underlying's
    variance into the differential Sharpe ratio's prior): the shared sizer's cap in money, or
    the old rule's risk fraction."""
    if account.sizer != "shared":
        return account.risk_fraction**2
    cap = min(
        account.sizing.max_position * float(market.close[t]), account.sizing.max_gross_exposure
    )
    return (cap / account.initial_cash) ** 2
