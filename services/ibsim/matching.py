"""Whether and at what price one bar fills one working order (the rules in ``ibsim.exchange``'s
docstring): MKT at the open, LMT at the open or the limit, STP at the open or the stop, market
and stop fills moved against the trader by the slippage."""

from __future__ import annotations

from ibsim.models import SimOrder, SourceBar


def slipped(price: float, buy: bool, slippage: float) -> float:
    """``price`` moved against the trader by ``slippage`` (a fraction: 5 bps = 0.0005)."""
    return round(price * (1 + slippage if buy else 1 - slippage), 6)


def fill_price(order: SimOrder, bar: SourceBar, slippage: float) -> tuple[float, int] | None:
    """(price, 0 at the open / 1 inside the bar) if the bar fills this order."""
    buy = order.is_buy
    if order.order_type == "MKT":
        return slipped(bar.open, buy, slippage), 0
    if order.order_type == "LMT":
        limit = order.lmt_price or 0.0
        if buy:
            if bar.open <= limit:
                return bar.open, 0
            return (limit, 1) if bar.low <= limit else None
        if bar.open >= limit:
            return bar.open, 0
        return (limit, 1) if bar.high >= limit else None
    stop = order.aux_price or 0.0  # STP
    if buy:
        if bar.open >= stop:
            return slipped(bar.open, buy, slippage), 0
        return (slipped(stop, buy, slippage), 1) if bar.high >= stop else None
    if bar.open <= stop:
        return slipped(bar.open, buy, slippage), 0
    return (slipped(stop, buy, slippage), 1) if bar.low <= stop else None
