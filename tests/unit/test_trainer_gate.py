"""Promotion gate: beat Buy-and-Hold AND the MA crossover on the test metric, or --force."""

from __future__ import annotations

import math

import pytest
from trainer.gate import promotion_gate

pytestmark = pytest.mark.unit


def strategies(model: float | None, bh: float | None, ma: float | None, key: str = "sharpe"):
    return {"model": {key: model}, "buy_and_hold": {key: bh}, "ma_crossover": {key: ma}}


def test_promoted_only_when_both_benchmarks_are_beaten() -> None:
    d = promotion_gate(strategies(1.2, 0.8, 0.9))
    assert d.promoted and d.passed and not d.forced and d.verdict == "promoted"
    assert d.benchmark_values == {"buy_and_hold": 0.8, "ma_crossover": 0.9}
    assert "beats" in d.reason

    d = promotion_gate(strategies(1.0, 0.8, 1.1))
    assert not d.promoted and d.verdict == "rejected"
    assert "ma_crossover" in d.reason.split("(")[0]  # the strategy it lost to is named


def test_a_tie_is_not_a_win() -> None:
    assert not promotion_gate(strategies(0.8, 0.8, 0.1)).promoted


def test_undefined_ratios_count_as_zero() -> None:
    # a model that never trades has NaN Sharpe -> 0: loses to any positive benchmark
    assert not promotion_gate(strategies(math.nan, 0.5, 0.4)).promoted
    # a benchmark that never trades counts 0: a positive model beats it
    d = promotion_gate(strategies(0.3, 0.2, None))
    assert d.promoted and d.benchmark_values["ma_crossover"] == 0.0


def test_configured_metric_is_used() -> None:
    s = {
        "model": {"sharpe": 0.1, "total_return": 0.9},
        "buy_and_hold": {"sharpe": 1.0, "total_return": 0.5},
        "ma_crossover": {"sharpe": 1.0, "total_return": 0.4},
    }
    assert not promotion_gate(s, "sharpe").promoted
    assert promotion_gate(s, "total_return").promoted


def test_force_promotes_and_says_so() -> None:
    d = promotion_gate(strategies(0.1, 0.8, 0.9), force=True)
    assert d.promoted and d.forced and not d.passed
    assert d.verdict == "promoted" and d.reason.startswith("FORCED")
    numbers = d.numbers()
    assert numbers["gate_passed"] == 0.0 and numbers["gate_model_sharpe"] == 0.1
    # --force on a model that passes anyway is not "forced"
    assert not promotion_gate(strategies(1.0, 0.8, 0.9), force=True).forced


def test_missing_numbers_are_an_error_not_a_pass() -> None:
    with pytest.raises(ValueError, match="model"):
        promotion_gate({"buy_and_hold": {}, "ma_crossover": {}})
    with pytest.raises(ValueError, match="ma_crossover"):
        promotion_gate({"model": {"sharpe": 1.0}, "buy_and_hold": {"sharpe": 0.0}})
