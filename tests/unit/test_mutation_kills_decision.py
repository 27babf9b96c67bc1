"""execution.decision: tests written against mutants that survived the first mutmut run (issue 17).

Expected orders are computed here from the rules in the docstrings: a limit at the reference price
moved ``limit_offset_bps`` against the trader, rounded to cents; a bracket only when the whole
order opens or adds to a position on the same side, its stop ``stop_atr_multiple * ATR`` away
(``fallback_stop_pct * price`` before the ATR is warm) and its take-profit
``take_profit_atr_multiple`` stops' worth of ATR away (the fallback scaled by the same ratio).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import zoneinfo

import pytest
from execution.decision import MarketView, OnTarget, PlaceOrder, Refusal, build_order, decide_order
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
    return RiskManager(
        RiskLimits.from_config(cfg), TradingSchedule(cfg.trading_hours, cfg.weekday_numbers())
    ), cfg


def signal(target: float = 1.0, price: float = 100.0, bar_seq: int = 42) -> TargetPosition:
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
    atr=2.0,
    equity=100_000.0,
    last_price=None,
    tradable=True,
    broker_connected=True,
    broker_name="sim",
)


def cents(x: float) -> float:
    return math.floor(x * 100 + 0.5) / 100  # positive prices: round half up to the cent


def order(
    cfg: PaperTradingConfig,
    *,
    delta: int,
    target: int,
    position: float,
    price: float,
    atr: float | None = 2.0,
    sig: TargetPosition | None = None,
):
    return build_order(
        "ref-1",
        sig or signal(price=price),
        delta=delta,
        target=target,
        position=position,
        price=price,
        atr=atr,
        orders=cfg,
    )


# ------------------------------------------------------------------------- build_order
@pytest.mark.parametrize("delta", [1, 7, -1, -7])
def test_limit_order_side_and_price_moved_against_the_trader(delta: int) -> None:
    _, cfg = setup(order_type="LMT", limit_offset_bps=3.0)
    o = order(cfg, delta=delta, target=delta, position=0.0, price=123.457)
    buy = delta > 0
    assert o.side == ("BUY" if buy else "SELL")
    assert o.quantity == abs(delta)
    assert o.order_type == "LMT"
    expected = cents(123.457 * (1 + 3e-4)) if buy else cents(123.457 * (1 - 3e-4))
    assert o.limit_price == pytest.approx(expected, abs=1e-9)
    assert (o.limit_price > 123.457) == buy


def test_order_carries_the_signals_symbol_bar_and_time() -> None:
    _, cfg = setup()
    sig = signal(bar_seq=4242)
    o = order(cfg, delta=5, target=5, position=0.0, price=100.0, sig=sig)
    assert (o.symbol, o.bar_seq, o.not_before_ns, o.order_ref) == (
        "AAPL",
        4242,
        MONDAY_CLOSE,
        "ref-1",
    )


@pytest.mark.parametrize(
    ("position", "target", "delta"),
    [(0.0, 1, 1), (0.0, -3, -3), (50.0, 100, 50), (-50.0, -100, -50), (1.0, 100, 99)],
)
def test_bracket_when_the_whole_order_opens_or_adds_on_the_same_side(
    position: float, target: int, delta: int
) -> None:
    _, cfg = setup(
        order_type="BRACKET",
        limit_offset_bps=3.0,
        stop_atr_multiple=2.0,
        take_profit_atr_multiple=3.0,
    )
    price, atr = 101.237, 1.3333
    o = order(cfg, delta=delta, target=target, position=position, price=price, atr=atr)
    s = 1.0 if delta > 0 else -1.0
    assert o.order_type == "BRACKET"
    assert o.side == ("BUY" if s > 0 else "SELL")
    assert o.limit_price == pytest.approx(cents(price * (1 + s * 3e-4)), abs=1e-9)
    assert o.stop_loss == pytest.approx(cents(price - s * 2.0 * atr), abs=1e-9)
    assert o.take_profit == pytest.approx(cents(price + s * 3.0 * atr), abs=1e-9)


@pytest.mark.parametrize(
    ("position", "target", "delta", "why"),
    [
        (100.0, 50, -50, "reducing"),
        (50.0, -100, -150, "flipping"),
        (-50.0, 100, 50, "flipping, with a working buy of 100 already counted"),
        (100.0, 0, -100, "closing"),
    ],
)
def test_no_bracket_when_reducing_or_flipping(
    position: float, target: int, delta: int, why: str
) -> None:
    _, cfg = setup(order_type="BRACKET")
    o = order(cfg, delta=delta, target=target, position=position, price=100.0)
    assert o.order_type == "MKT", why
    assert o.limit_price is None and o.stop_loss is None and o.take_profit is None


@pytest.mark.parametrize("delta", [10, -10])
def test_bracket_before_the_atr_is_warm_uses_the_fallback_stop(delta: int) -> None:
    _, cfg = setup(
        order_type="BRACKET",
        fallback_stop_pct=0.02,
        stop_atr_multiple=2.0,
        take_profit_atr_multiple=3.0,
    )
    price = 87.654
    o = order(cfg, delta=delta, target=delta, position=0.0, price=price, atr=None)
    s = 1.0 if delta > 0 else -1.0
    stop = 0.02 * price  # 1.75308
    take = stop * 3.0 / 2.0  # the same reward:risk ratio as with the ATR
    assert o.stop_loss == pytest.approx(cents(price - s * stop), abs=1e-9)
    assert o.take_profit == pytest.approx(cents(price + s * take), abs=1e-9)


# ------------------------------------------------------------------------- decide_order
def test_an_invalid_bar_close_and_an_invalid_last_price_refuse() -> None:
    risk, cfg = setup()
    view = dataclasses.replace(VIEW, last_price=float("nan"))
    d = decide_order(signal(price=float("nan")), view, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(d, Refusal) and d.reason == "no price for the symbol yet"


def test_sizing_uses_the_price_before_the_atr_is_warm() -> None:
    """No ATR: stop = 2 % of 100 = 2.0 -> full = 100_000 * 0.01 / 2.0 = 500 shares."""
    risk, cfg = setup()
    view = dataclasses.replace(VIEW, atr=None)
    d = decide_order(signal(1.0, price=100.0), view, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(d, PlaceOrder) and d.order.quantity == 500


def test_a_change_under_the_rebalance_threshold_of_the_full_size_is_on_target() -> None:
    """Full size 250 (ATR 2, stop 4); holding 240 of a 250 target: 10 < 0.1 * 250."""
    risk, cfg = setup(rebalance_threshold=0.1)
    view = dataclasses.replace(VIEW, position=240.0)
    d = decide_order(signal(1.0), view, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(d, OnTarget) and d.position == 240.0


def test_a_refusal_reports_the_shares_that_would_have_moved() -> None:
    risk, cfg = setup()
    view = dataclasses.replace(VIEW, position=100.0)
    d = decide_order(signal(1.0), view, risk, cfg, SUNDAY_CLOSE, now=0.0)
    assert isinstance(d, Refusal) and d.quantity == 150  # 250 desired - 100 held


def test_place_order_reports_desired_size_before_the_limits() -> None:
    """Desired 250 shares at 100; gross exposure 100_000 with 90_000 elsewhere leaves 100."""
    risk, cfg = setup(max_gross_exposure=100_000.0)
    view = dataclasses.replace(VIEW, other_exposure=90_000.0)
    d = decide_order(signal(1.0), view, risk, cfg, MONDAY_CLOSE, now=0.0)
    assert isinstance(d, PlaceOrder)
    assert (d.desired, d.target, d.order.quantity, d.price) == (250, 100, 100, 100.0)
