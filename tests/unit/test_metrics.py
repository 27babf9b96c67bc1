"""Metrics on hand-checkable equity curves."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shared.metrics import (
    compute_metrics,
    drawdown_series,
    infer_periods_per_year,
    max_drawdown,
    returns_from_equity,
    sharpe_ratio,
    sortino_ratio,
)

pytestmark = pytest.mark.unit


def test_returns_start_from_initial_cash() -> None:
    r = returns_from_equity([110.0, 99.0], initial=100.0)
    assert r == pytest.approx([0.10, -0.10])


def test_drawdown_and_duration() -> None:
    eq = [100, 120, 90, 100, 130, 117, 120]
    dd = drawdown_series(eq, initial=100)
    assert dd[2] == pytest.approx(0.25)
    mdd, bars, start, end = max_drawdown(eq, initial=100)
    assert mdd == pytest.approx(0.25)
    assert (bars, start, end) == (2, 2, 3)  # bars 2 and 3 under the 120 peak


def test_unrecovered_drawdown_counts_to_the_end() -> None:
    mdd, bars, _, end = max_drawdown([100, 90, 95, 80], initial=100)
    assert mdd == pytest.approx(0.2)
    assert bars == 3 and end == 3


def test_sharpe_and_sortino_match_hand_formula() -> None:
    r = np.array([0.01, -0.02, 0.015, 0.003, -0.004])
    assert sharpe_ratio(r, 252) == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    down = math.sqrt(np.mean(np.minimum(r, 0) ** 2))
    assert sortino_ratio(r, 252) == pytest.approx(r.mean() / down * math.sqrt(252))
    assert math.isnan(sharpe_ratio(np.zeros(10), 252))


def test_periods_per_year_by_timeframe() -> None:
    daily = pd.bdate_range("2020-01-01", periods=300, tz="UTC")
    assert infer_periods_per_year(daily) == 252.0
    crypto = pd.date_range("2020-01-01", periods=20_000, freq="30min", tz="UTC")
    assert infer_periods_per_year(crypto) == pytest.approx(365.25 * 48, rel=1e-3)
    weekly = pd.date_range("2020-01-01", periods=100, freq="7D", tz="UTC")
    assert infer_periods_per_year(weekly) == pytest.approx(365.25 / 7)
    assert infer_periods_per_year(None) == 252.0


def test_compute_metrics_values() -> None:
    index = pd.bdate_range("2021-01-01", periods=4, tz="UTC")
    m = compute_metrics(
        [101.0, 103.0, 99.0, 105.0],
        initial_cash=100.0,
        index=index,
        positions=[1, 1, 0, 1],
        trade_pnls=[4.0, -2.0, 3.0],
        n_fills=5,
        traded_notional=400.0,
        fees=2.5,
    )
    assert m["pnl"] == pytest.approx(5.0)
    assert m["total_return"] == pytest.approx(0.05)
    assert m["annualised_return"] == pytest.approx(1.05 ** (252 / 4) - 1)
    assert m["max_drawdown"] == pytest.approx(1 - 99 / 103)
    assert m["win_rate"] == pytest.approx(2 / 3)
    assert m["profit_factor"] == pytest.approx(7 / 2)
    assert m["n_trades"] == 3 and m["n_fills"] == 5
    assert m["exposure"] == pytest.approx(0.75)
    assert m["fees_paid"] == 2.5
    assert m["turnover"] == pytest.approx(400.0 / np.mean([101, 103, 99, 105]))
    assert m["calmar"] == pytest.approx(m["annualised_return"] / m["max_drawdown"])


def test_undefined_ratios_are_nan_not_huge() -> None:
    m = compute_metrics([100.0] * 5, initial_cash=100.0, trade_pnls=[1.0])
    assert math.isnan(m["sharpe"]) and math.isnan(m["profit_factor"])
    assert m["max_drawdown"] == 0.0
