"""The pure decision: (signal, market view, limits, clock) -> order, on-target or refusal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import pytest
from execution.decision import (
    MarketView,
    OnTarget,
    PlaceOrder,
    Refusal,
    decide_order,
    order_ref_for,
)
from execution.risk import RiskLimits, RiskManager, TradingSchedule

from shared.messages import TargetPosition
from shared.paper_config import PaperTradingConfig

pytestmark = pytest.mark.unit

NY = zoneinfo.ZoneInfo("America/New_York")
MONDAY_CLOSE = int(dt.datetime(2024, 3, 4, 16, tzinfo=NY).timestamp() * 1e9)
SUNDAY_CLOSE = int(dt.datetime(2024, 3, 3, 16, tzinfo=NY).timestamp() * 1e9)


def setup(**paper: object) -> tuple[RiskManager, PaperTradingConfig]:
    paper.setdefault("max_position", 1000)
    cfg = PaperTradingConfig(symbols=["AAPL"], **paper)  # type: ignore[arg-type]
    schedule = TradingSchedule(cfg.trading_hours, cfg.weekday_numbers())
    return RiskManager(RiskLimits.from_config(cfg), schedule), cfg


def signal(target: float, price: float = 100.0, bar_seq: int = 7) -> TargetPosition:
    return TargetPosition(
        symbol="AAPL",
        target_position=target,
        model_version="m1",
        bar_seq=bar_seq,
        bar_close_ts=MONDAY_CLOSE,
        bar_close=price,
    )


VIEW = MarketView(
    position=0.0,
    working=0.0,
    other_exposure=0.0,
    atr=2.0,  # stop 4.0 -> full size = 100_000 * 0.01 / 4 = 250 shares
    equity=100_000.0,
    last_price=None,
    tradable=True,
    broker_connected=True,
    broker_name="sim",
)


def test_a_full_target_from_flat_is_a_market_buy_of_the_full_size() -> None:
    risk, cfg = setup()
    decision = decide_order(signal(1.0), VIEW, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(decision, PlaceOrder)
    order = decision.order
    assert (order.order_ref, order.side, order.quantity, order.order_type) == (
        order_ref_for("rl", "AAPL", 7),
        "BUY",
        250,
        "MKT",
    )
    assert order.not_before_ns == MONDAY_CLOSE and decision.target == 250


def test_position_and_working_orders_are_subtracted() -> None:
    risk, cfg = setup()
    view = dataclasses.replace(VIEW, position=100.0, working=50.0)
    decision = decide_order(signal(1.0), view, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(decision, PlaceOrder) and decision.order.quantity == 100
    held = dataclasses.replace(VIEW, position=250.0)
    assert decide_order(signal(1.0), held, risk, cfg, MONDAY_CLOSE, now=0.0) == OnTarget(
        target=250, position=250.0
    )


def test_going_short_from_long_sells_the_difference() -> None:
    risk, cfg = setup()
    view = dataclasses.replace(VIEW, position=250.0)
    decision = decide_order(signal(-1.0), view, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(decision, PlaceOrder)
    assert (decision.order.side, decision.order.quantity) == ("SELL", 500)


@pytest.mark.parametrize(
    ("view", "reason"),
    [
        (dataclasses.replace(VIEW, tradable=False), "not in the paper config"),
        (dataclasses.replace(VIEW, broker_connected=False), "broker sim not connected"),
    ],
)
def test_refusals_before_sizing(view: MarketView, reason: str) -> None:
    risk, cfg = setup()
    decision = decide_order(signal(1.0), view, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(decision, Refusal) and reason in decision.reason


def test_no_price_is_a_refusal_and_the_last_bar_stands_in() -> None:
    risk, cfg = setup()
    nan_price = signal(1.0, price=float("nan"))
    assert decide_order(nan_price, VIEW, risk, cfg, MONDAY_CLOSE, now=0.0) == Refusal(
        "no price for the symbol yet"
    )
    view = dataclasses.replace(VIEW, last_price=50.0)
    decision = decide_order(nan_price, view, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(decision, PlaceOrder) and decision.price == 50.0


def test_safety_switches_and_hours_refuse_with_the_would_be_quantity() -> None:
    risk, cfg = setup()
    risk.safety.kill()
    decision = decide_order(signal(1.0), VIEW, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(decision, Refusal) and "kill switch" in decision.reason
    assert decision.quantity == 250
    risk.safety.rearm()
    weekend = decide_order(signal(1.0), VIEW, risk, cfg, SUNDAY_CLOSE, now=0.0)
    assert isinstance(weekend, Refusal)


def test_reduce_only_clips_to_the_position() -> None:
    risk, cfg = setup()
    risk.safety.set_reduce_only(True)
    view = dataclasses.replace(VIEW, position=100.0)
    assert isinstance(decide_order(signal(1.0), view, risk, cfg, MONDAY_CLOSE, now=0.0), OnTarget)
    decision = decide_order(signal(-1.0), view, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(decision, PlaceOrder)
    assert (decision.order.side, decision.order.quantity) == ("SELL", 100)
    assert "reduce_only" in decision.notes


def test_the_order_rate_limit_refuses_on_its_clock() -> None:
    risk, cfg = setup(max_orders_per_minute=1)
    risk.rate.record(0.0)
    refused = decide_order(signal(1.0), VIEW, risk, cfg, MONDAY_CLOSE, now=1.0)
    assert isinstance(refused, Refusal) and "max_orders_per_minute" in refused.reason
    later = decide_order(signal(1.0), VIEW, risk, cfg, MONDAY_CLOSE, now=61.0)
    assert isinstance(later, PlaceOrder)


def test_limit_and_bracket_orders() -> None:
    risk, cfg = setup(order_type="LMT", limit_offset_bps=10.0)
    decision = decide_order(signal(1.0), VIEW, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(decision, PlaceOrder)
    assert (decision.order.order_type, decision.order.limit_price) == ("LMT", 100.1)

    risk, cfg = setup(order_type="BRACKET")
    opening = decide_order(signal(1.0), VIEW, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(opening, PlaceOrder)
    assert opening.order.order_type == "BRACKET"
    assert opening.order.stop_loss == 96.0 and opening.order.take_profit == 106.0
    # reducing in bracket mode goes at market: a bracket's exits would over-close
    view = dataclasses.replace(VIEW, position=250.0)
    reducing = decide_order(signal(0.5), view, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(reducing, PlaceOrder) and reducing.order.order_type == "MKT"


def test_the_same_inputs_give_the_same_decision() -> None:
    risk, cfg = setup()
    first = decide_order(signal(0.3), VIEW, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert first == decide_order(signal(0.3), VIEW, risk, cfg, MONDAY_CLOSE, now=0.0)
