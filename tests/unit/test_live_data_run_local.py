"""`make run` on a real gateway is IB_HOST / IB_PORT and nothing else: the simulator stays out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import run_local

pytestmark = pytest.mark.unit


def test_a_real_gateway_leaves_the_simulator_out_unless_it_has_its_own_port() -> None:
    assert run_local.services_to_skip({}) == set()
    assert run_local.services_to_skip({"RUN_SKIP": "trainer"}) == {"trainer"}
    assert run_local.services_to_skip({"IB_PORT": "7497"}) == {"ibsim"}
    assert run_local.services_to_skip({"IB_HOST": "gw", "RUN_SKIP": "monitor"}) == {
        "ibsim",
        "monitor",
    }
    # make paper-trading on the simulator sets IBSIM_PORT = IB_PORT: keep it
    assert run_local.services_to_skip({"IB_PORT": "4002", "IBSIM_PORT": "4002"}) == set()
    assert run_local.STATE_DEFAULTS["MARKETDATA_SOURCE"] == "ib"
    assert run_local.STATE_DEFAULTS["IBSIM_PRICE_SOURCE"] == "replay"
