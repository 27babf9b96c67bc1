"""What to do about one target-position signal: a pure function, no I/O, no broker, no bus.

``decide_order(signal, view, risk, orders, clock_ns)`` -> ``OrderDecision``, one of

* ``Refusal``   -- nothing is sent, and why (published as an ``OrderEvent`` "skipped");
* ``OnTarget``  -- the position (plus working orders) already is what the limits allow;
* ``PlaceOrder``-- the order to send (market, limit or bracket), with the limits that clipped it.

Everything the decision depends on comes in as arguments: the signal, a ``MarketView`` (position,
working orders, exposure elsewhere, ATR, equity, last price, whether the broker is connected), the
``RiskManager`` (limits, safety switches, the order-rate window), the order settings of the paper
config and the clock. Replaying the same arguments gives the same decision, which is what the unit
tests in ``test_execution_decision.py`` rely on. The service owns everything around it: idempotency
(journal and broker references), the broker calls and the publishing.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from execution.broker import OrderRequest
from execution.input_guard import valid_price
from execution.risk import RiskManager
from shared.messages import TargetPosition
from shared.paper_config import PaperTradingConfig


def order_ref_for(strategy: str, symbol: str, bar_seq: int) -> str:
    """The deterministic order reference of one decision."""
    return f"{strategy}-{symbol}-{bar_seq}"


@dataclass(frozen=True)
class MarketView:
    """What the service knows about one symbol when a signal arrives."""

    position: float  # signed shares held (broker positions plus fills not yet in them)
    working: float  # signed shares still working at the broker (parents only)
    other_exposure: float  # gross |shares * price| held in every other symbol
    atr: float | None  # None until the ATR is warm
    equity: float  # the account value sizing uses
    last_price: float | None  # the symbol's latest bar close (when the signal carries none)
    tradable: bool  # the symbol is in the paper config
    broker_connected: bool
    broker_name: str


@dataclass(frozen=True)
class Refusal:
    reason: str
    quantity: float = 0.0  # the shares that would have been ordered (0: unknown yet)


@dataclass(frozen=True)
class OnTarget:
    target: int
    position: float


@dataclass(frozen=True)
class PlaceOrder:
    order: OrderRequest
    desired: int  # shares before the limits
    target: int  # shares after the limits
    notes: tuple[str, ...]  # limits that clipped the target
    price: float  # the reference price the order was built on


OrderDecision = Refusal | OnTarget | PlaceOrder


def decide_order(
    signal: TargetPosition,
    view: MarketView,
    risk: RiskManager,
    orders: PaperTradingConfig,
    clock_ns: int,
    now: float | None = None,
) -> OrderDecision:
    """The decision for one signal (see the module docstring); ``now`` is the rate window's clock
    (None: the monotonic clock)."""
    if not view.tradable:
        return Refusal(f"symbol {signal.symbol} is not in the paper config's symbols")
    if not view.broker_connected:
        return Refusal(f"broker {view.broker_name} not connected")
    price = signal.bar_close if valid_price(signal.bar_close) else view.last_price
    if price is None or not valid_price(price):
        return Refusal("no price for the symbol yet")
    desired, full = risk.sizing(signal.target_position, view.equity, price, view.atr)
    decision = risk.decide(
        full=full,
        desired=desired,
        position=view.position,
        working=view.working,
        price=price,
        other_exposure=view.other_exposure,
        bar_ts_ns=clock_ns,
        now=now,
    )
    if decision.refused:
        return Refusal(decision.refused, quantity=abs(desired - view.position))
    if decision.delta == 0:
        return OnTarget(target=decision.target, position=view.position)
    order = build_order(
        order_ref_for(signal.strategy, signal.symbol, signal.bar_seq),
        signal,
        delta=decision.delta,
        target=decision.target,
        position=view.position,
        price=price,
        atr=view.atr,
        orders=orders,
    )
    return PlaceOrder(
        order=order, desired=desired, target=decision.target, notes=decision.notes, price=price
    )


def build_order(
    ref: str,
    signal: TargetPosition,
    *,
    delta: int,
    target: int,
    position: float,
    price: float,
    atr: float | None,
    orders: PaperTradingConfig,
) -> OrderRequest:
    """The order for ``delta`` shares in the configured order type.

    A bracket (limit entry + ATR take-profit and stop-loss children) only when the whole order
    opens or adds to a position: reducing or flipping goes at market, because a bracket's exits
    sized for the new shares would close more than the position.
    """
    sign = 1.0 if delta > 0 else -1.0
    base = OrderRequest(
        order_ref=ref,
        symbol=signal.symbol,
        side="BUY" if delta > 0 else "SELL",
        quantity=abs(delta),
        bar_seq=signal.bar_seq,
        not_before_ns=signal.bar_close_ts,
    )
    kind = orders.order_type
    offset = orders.limit_offset_bps * 1e-4
    limit = round(price * (1.0 + sign * offset), 2)
    opening = (
        target != 0
        and abs(target) > abs(position)
        and (position == 0 or (target > 0) == (position > 0))
    )
    if kind == "BRACKET" and opening and abs(target) - abs(position) == abs(delta):
        stop = orders.stop_atr_multiple * atr if atr else orders.fallback_stop_pct * price
        take = (
            orders.take_profit_atr_multiple * atr
            if atr
            else orders.fallback_stop_pct
            * price
            * orders.take_profit_atr_multiple
            / orders.stop_atr_multiple
        )
        return msgspec.structs.replace(
            base,
            order_type="BRACKET",
            limit_price=limit,
            stop_loss=round(price - sign * stop, 2),
            take_profit=round(price + sign * take, 2),
        )
    if kind == "LMT":
        return msgspec.structs.replace(base, order_type="LMT", limit_price=limit)
    return base  # market; also a bracket mode's non-opening order
