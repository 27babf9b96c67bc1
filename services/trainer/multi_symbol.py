"""One policy for many symbols: a pooled training env and a pooled normaliser.

The features are scale-free (returns, ratios to the close, RSI, %B, z-scores: see
``shared.features``), so one observation layout means the same thing for every symbol. What
still differs between symbols is each feature's typical range (NVDA's daily returns are wider
than AAPL's); one ``Normaliser`` is fitted on the training rows of EVERY symbol together, so the
policy sees each symbol on the same scale and inference serves one normaliser per model (its
manifest) whatever symbol a bar belongs to. Only training bars (before ``train_end``) are read.

``MultiSymbolVectorEnv`` splits the ``num_envs`` accounts of one RLlib env runner across the
symbols (as evenly as possible) and steps each symbol's ``shared.vector_env.VectorTradingEnv``
in one numpy call; every sub-env keeps its own autoreset. RLlib sees one vector env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from shared.env import TradingEnv
from shared.env import env_creator as single_env_creator
from shared.env_config import EnvConfig
from shared.vector_env import VectorTradingEnv

SYMBOLS_KEY = "symbols"  # env_config key: the symbols of a pooled env (absent = one symbol)


def split_envs(num_envs: int, n_symbols: int) -> list[int]:
    """``num_envs`` accounts over ``n_symbols`` symbols, the first ones taking the remainder."""
    if n_symbols < 1 or num_envs < n_symbols:
        raise ValueError(f"{num_envs} envs cannot cover {n_symbols} symbols (one each at least)")
    base, extra = divmod(num_envs, n_symbols)
    return [base + (1 if k < extra else 0) for k in range(n_symbols)]


class MultiSymbolVectorEnv(gym.vector.VectorEnv[NDArray[np.float32], Any, NDArray[Any]]):
    """``num_envs`` accounts over several symbols; the same config otherwise (one normaliser)."""

    metadata: dict[str, Any] = {  # noqa: RUF012 - gymnasium reads it from the class
        "render_modes": [],
        "autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP,
    }

    def __init__(self, config: dict[str, Any], num_envs: int = 16, **_: Any) -> None:
        cfg = dict(config)
        symbols = [str(s) for s in cfg.pop(SYMBOLS_KEY)]
        base = EnvConfig.from_dict(cfg)
        seed = base.seed
        self.symbols = symbols
        self.counts = split_envs(int(num_envs), len(symbols))
        self.envs = [
            VectorTradingEnv(
                base.replace(symbol=sym, seed=None if seed is None else seed + 7919 * k),
                num_envs=count,
            )
            for k, (sym, count) in enumerate(zip(symbols, self.counts, strict=True))
        ]
        first = self.envs[0]
        for env in self.envs[1:]:
            if env.single_observation_space != first.single_observation_space:
                raise ValueError("symbols with different observation spaces cannot be pooled")
        self.num_envs = int(num_envs)
        self.single_observation_space = first.single_observation_space
        self.single_action_space = first.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._cuts = np.cumsum(self.counts)[:-1]

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        base = seed[0] if isinstance(seed, list) else seed
        obs = [
            env.reset(seed=None if base is None else base + 7919 * k, options=options)[0]
            for k, env in enumerate(self.envs)
        ]
        return np.concatenate(obs), {}

    def step(
        self, actions: Any
    ) -> tuple[NDArray[np.float32], NDArray[Any], NDArray[Any], NDArray[Any], dict[str, Any]]:
        parts = np.split(np.asarray(actions), self._cuts)
        out = [env.step(a) for env, a in zip(self.envs, parts, strict=True)]
        return (
            np.concatenate([o[0] for o in out]),
            np.concatenate([o[1] for o in out]),
            np.concatenate([o[2] for o in out]),
            np.concatenate([o[3] for o in out]),
            {},
        )


def env_creator(
    env_config: dict[str, Any] | None = None,
) -> TradingEnv | VectorTradingEnv | MultiSymbolVectorEnv:
    """RLlib env creator: a pooled vector env when ``env_config`` names ``symbols``, else
    ``shared.env.env_creator`` (one symbol) unchanged."""
    cfg = dict(env_config or {})
    if SYMBOLS_KEY not in cfg:
        return single_env_creator(cfg)
    num_envs = cfg.pop("num_envs", None)
    if num_envs is None:
        raise ValueError(
            "a pooled multi-symbol env needs vectorize_mode='vector_entry_point' (num_envs)"
        )
    return MultiSymbolVectorEnv(cfg, num_envs=int(num_envs))


def pooled_normaliser(
    source: str,
    symbols: list[str],
    *,
    start: str | None,
    end: str | None,
    features: dict[str, Any],
) -> dict[str, Any]:
    """One ``Normaliser`` fitted on the training rows ([start, end), after each symbol's own
    feature warm-up) of every symbol together; returned as ``Normaliser.to_dict()``."""
    import pandas as pd

    from shared.data import load_bars
    from shared.feature_config import FeatureConfig
    from shared.features import FeaturePipeline
    from shared.normaliser import Normaliser

    pipeline = FeaturePipeline(FeatureConfig.from_dict(features))
    blocks = []
    for symbol in symbols:
        bars = load_bars(source, symbol)
        if end is not None:
            bars = bars[bars.index < _utc(end)]  # nothing at or after train_end is read
        ns = pd.DatetimeIndex(bars.index).as_unit("ns").asi8
        s0 = 0 if start is None else int(np.searchsorted(ns, _utc(start).value))
        first = max(s0, pipeline.warmup_bars - 1)
        blocks.append(np.asarray(pipeline.batch(bars), dtype=np.float64)[first:])
    fitted = Normaliser.fit(np.concatenate(blocks), names=pipeline.names)
    out: dict[str, Any] = fitted.to_dict()
    return out


def _utc(value: Any) -> Any:
    import pandas as pd

    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
