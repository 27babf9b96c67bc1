"""CostModel: prices move against the trader, commissions follow the tariff, array == scalar."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.costs import BUY, SELL, ZERO_COSTS, CostModel

pytestmark = pytest.mark.unit


def test_costs_are_on_by_default() -> None:
    c = CostModel()
    assert c.fill_price(BUY, 100.0) > 100.0
    assert c.fill_price(SELL, 100.0) < 100.0
    assert c.commission(10, 100.0) >= c.commission_min > 0


def test_fill_price_is_half_spread_plus_slippage() -> None:
    c = CostModel(spread_bps=10.0, slippage_bps=5.0)
    assert c.fill_price(BUY, 200.0) == pytest.approx(200.0 * (1 + 10e-4))
    assert c.fill_price(SELL, 200.0) == pytest.approx(200.0 * (1 - 10e-4))
    assert c.fill_price(0, 200.0) == 200.0


def test_commission_per_share_min_and_cap() -> None:
    c = CostModel(commission_per_share=0.005, commission_min=1.0, commission_max_pct=0.01)
    assert c.commission(0, 50.0) == 0.0
    assert c.commission(10, 50.0) == 1.0  # 0.05 -> minimum
    assert c.commission(-1000, 50.0) == pytest.approx(5.0)  # sign ignored
    # cap: 1 % of notional for very cheap shares (notional 100 -> cap 1.0 ... min wins)
    assert c.commission(10_000, 0.01) == 1.0
    capped = CostModel(commission_per_share=0.005, commission_min=0.0, commission_max_pct=0.01)
    assert capped.commission(10_000, 0.2) == pytest.approx(0.01 * 10_000 * 0.2)


def test_commission_bps_alternative() -> None:
    c = CostModel(
        commission_per_share=0.0, commission_min=0.0, commission_bps=10.0, commission_max_pct=0.0
    )
    assert c.commission(3, 1000.0) == pytest.approx(3.0)


def test_array_forms_equal_scalar_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    c = CostModel(commission_bps=1.5, spread_bps=3.0, slippage_bps=2.5)
    qty = rng.integers(-3000, 3000, 500).astype(float)
    qty[::7] = 0.0
    price = rng.uniform(0.5, 500.0, 500)
    side = np.sign(qty)
    fills = c.fill_prices(side, price)
    fees = c.commissions(qty, fills)
    for q, p, f, fee in zip(qty, price, fills, fees, strict=True):
        assert c.fill_price(int(np.sign(q)), p) == f
        assert c.commission(q, f) == fee


def test_zero_costs_and_validation() -> None:
    assert ZERO_COSTS.fill_price(BUY, 10.0) == 10.0
    assert ZERO_COSTS.commission(100, 10.0) == 0.0
    with pytest.raises(ValueError, match="spread_bps"):
        CostModel(spread_bps=-1.0)
    with pytest.raises(ValueError, match="slipage_bps"):
        CostModel.from_dict({"slipage_bps": 1.0})
    assert CostModel.from_dict(CostModel().to_dict()) == CostModel()
    assert CostModel.from_dict(None) == CostModel()
    assert not math.isnan(CostModel().adverse_fraction)
