"""One policy for many symbols: the pooled vector env steps each symbol's accounts exactly as
that symbol's own vector env would, and one normaliser is fitted on every symbol's training rows
(and on nothing after ``train_end``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trainer.config import PACKAGED_DAILY_STOCKS, PROFILES, TrainConfig
from trainer.multi_symbol import (
    MultiSymbolVectorEnv,
    env_creator,
    split_envs,
)
from trainer.train import prepare_data

from shared.env_config import EnvConfig
from shared.vector_env import VectorTradingEnv

pytestmark = pytest.mark.unit

SYMBOLS = ["AAPL", "AMZN", "NVDA"]


def test_envs_are_split_over_symbols_as_evenly_as_possible() -> None:
    assert split_envs(32, 6) == [6, 6, 5, 5, 5, 5]
    assert split_envs(3, 3) == [1, 1, 1]
    with pytest.raises(ValueError, match="cannot cover"):
        split_envs(2, 3)


def test_profiles_train_one_policy_on_the_packaged_daily_stocks() -> None:
    for name in PROFILES:
        cfg = TrainConfig.profile(name)
        assert cfg.symbol_list == PACKAGED_DAILY_STOCKS and len(cfg.symbol_list) >= 4
    assert TrainConfig().symbol_list == ["AAPL"]
    with pytest.raises(ValueError, match="symbols"):
        TrainConfig(symbols=["AAPL", "AAPL"])


def test_pooled_env_steps_each_symbol_like_its_own_vector_env() -> None:
    cfg = TrainConfig(symbols=SYMBOLS, episode_length=20)
    data = prepare_data(cfg)
    env_dict = {**data.train.env_config.to_dict(), "seed": 5}
    pooled = env_creator({**env_dict, "symbols": SYMBOLS, "num_envs": 7})
    assert isinstance(pooled, MultiSymbolVectorEnv) and pooled.counts == [3, 2, 2]
    singles = [
        VectorTradingEnv(
            EnvConfig.from_dict(env_dict).replace(symbol=sym, seed=5 + 7919 * k), num_envs=n
        )
        for k, (sym, n) in enumerate(zip(SYMBOLS, pooled.counts, strict=True))
    ]
    obs, _ = pooled.reset()
    np.testing.assert_array_equal(obs, np.concatenate([e.reset()[0] for e in singles]))
    rng = np.random.default_rng(0)
    for _ in range(45):  # past the 20-bar episodes: autoreset happens inside each symbol
        actions = rng.integers(0, 3, size=7)
        got = pooled.step(actions)
        parts = np.split(actions, np.cumsum(pooled.counts)[:-1])
        want = [e.step(a) for e, a in zip(singles, parts, strict=True)]
        for i in range(4):
            np.testing.assert_array_equal(got[i], np.concatenate([w[i] for w in want]))
    assert not isinstance(env_creator(env_dict), MultiSymbolVectorEnv)  # one symbol: unchanged


def test_one_normaliser_fitted_on_every_symbols_training_rows_only() -> None:
    cfg = TrainConfig(symbols=SYMBOLS)
    data = prepare_data(cfg)
    assert data.symbols == SYMBOLS and set(data.trains) == set(SYMBOLS)
    for sym in SYMBOLS:  # every slice is normalised with the pooled normaliser
        assert data.trains[sym].env_config.normaliser == data.normaliser
        assert data.validations[sym].env_config.normaliser == data.normaliser
        assert data.validations[sym].bars.index[-1] < pd.Timestamp(cfg.val_end, tz="UTC")
    single = prepare_data(TrainConfig()).normaliser
    assert data.normaliser["mean"] != single["mean"]  # not AAPL's alone
    # fitted on every symbol's rows from its warm-up to the last bar before train_end
    fitted_rows = sum(
        len(t.market.index[t.market.first : t.market.last + 1]) for t in data.trains.values()
    )
    assert data.normaliser["fitted_rows"] == fitted_rows


def test_per_symbol_option_runs_one_pipeline_per_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer import pipeline

    whole = pipeline.run_pipeline
    calls: list[dict] = []

    def one(profile: str, **kwargs: object) -> dict:
        calls.append({"profile": profile, **kwargs})
        return {"version": f"v_{kwargs['overrides']['symbol']}"}  # type: ignore[index]

    monkeypatch.setattr(pipeline, "run_pipeline", one)
    out = whole("quick", per_symbol=True, overrides={"symbols": ["AAPL", "NVDA"], "lr": 1e-3})
    assert out == {"per_symbol": {"AAPL": {"version": "v_AAPL"}, "NVDA": {"version": "v_NVDA"}}}
    assert [c["overrides"] for c in calls] == [
        {"symbols": ["AAPL"], "symbol": "AAPL", "lr": 1e-3},
        {"symbols": ["NVDA"], "symbol": "NVDA", "lr": 1e-3},
    ]
    assert all(c["profile"] == "quick" and not c.get("per_symbol") for c in calls)
