"""shared.costs: tests written against mutants that survived the first mutmut run (issue 17).

Every expectation is computed here from the tariff's definition (per-share fee, a cap as a
fraction of notional, a minimum per order), not with the model under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from shared.costs import CostModel

pytestmark = pytest.mark.unit


def test_vectorised_cap_is_a_fraction_of_notional() -> None:
    """Penny stock: 1000 shares at 0.10 -> 5.00 per-share fee, notional 100, 1 % cap -> 1.00."""
    m = CostModel(commission_per_share=0.005, commission_min=0.0, commission_max_pct=0.01)
    fees = m.commissions([1000.0, -2000.0], [0.10, 0.05])
    assert fees.tolist() == pytest.approx([1000 * 0.10 * 0.01, 2000 * 0.05 * 0.01])
    # the scalar twin agrees
    assert m.commission(1000.0, 0.10) == pytest.approx(1.0)


def test_vectorised_zero_cap_means_no_cap() -> None:
    """commission_max_pct = 0 disables the cap: the fee is the full per-share charge."""
    m = CostModel(commission_per_share=0.01, commission_min=0.0, commission_max_pct=0.0)
    fees = m.commissions([100.0, 3.0], [50.0, 10.0])
    assert fees.tolist() == pytest.approx([100 * 0.01, 3 * 0.01])
    assert m.commission(100.0, 50.0) == pytest.approx(1.0)


def test_array_forms_return_float64_and_match_scalars_for_float32_input() -> None:
    """Inputs of any numeric dtype are computed in float64 (the declared return type), so a
    float32 column (a downcast data frame) gives the same numbers as the scalar methods."""
    m = CostModel(commission_per_share=0.0123, commission_min=0.0, commission_max_pct=0.0)
    side = np.array([1, -1, 1], dtype=np.float32)
    ref = np.array([101.37, 55.11, 0.77], dtype=np.float32)
    prices = m.fill_prices(side, ref)
    assert prices.dtype == np.float64
    assert prices.tolist() == [
        m.fill_price(float(s), float(r)) for s, r in zip(side, ref, strict=True)
    ]

    qty = np.array([3.3, -7.7, 1.1], dtype=np.float32)
    fees = m.commissions(qty, ref)
    assert fees.dtype == np.float64
    assert fees.tolist() == [
        m.commission(float(q), float(r)) for q, r in zip(qty, ref, strict=True)
    ]


def test_side_dtype_does_not_change_precision_of_fill_price() -> None:
    """A float32 side vector with float64 prices: still float64 arithmetic end to end."""
    m = CostModel(spread_bps=3.0, slippage_bps=0.7)
    side = np.array([1.0, -1.0], dtype=np.float32)
    ref = np.array([123.456789, 98.7654321])
    expected = [
        r * (1.0 + s * ((3.0 / 2.0 + 0.7) / 10_000.0)) for s, r in zip([1, -1], ref, strict=True)
    ]
    assert m.fill_prices(side, ref).tolist() == expected


def test_from_dict_accepts_numbers_given_as_strings() -> None:
    """Configs from env vars or CSV carry strings; they are converted, not refused."""
    m = CostModel.from_dict({"spread_bps": "2.5", "commission_min": "0"})
    assert m.spread_bps == 2.5
    assert m.commission_min == 0.0
