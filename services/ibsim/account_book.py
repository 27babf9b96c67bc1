"""The simulated account's money: cash, positions with IB's average cost (commissions included),
realized PnL, the last price per symbol, and the Reg T account values (initial margin 50%,
maintenance 25% of the gross position value; BuyingPower is 2 x AvailableFunds)."""

from __future__ import annotations

from ibsim.models import AccountSnapshot, PositionState

INITIAL_MARGIN = 0.50
MAINT_MARGIN = 0.25
QTY_EPS = 1e-9


class AccountBook:
    """Cash and positions of the one account the simulator manages."""

    def __init__(self, initial_cash: float) -> None:
        self.positions: dict[str, PositionState] = {}
        self.cash = initial_cash
        self.realized_pnl = 0.0
        self.last_price: dict[str, float] = {}

    def apply_fill(
        self, symbol: str, signed_qty: float, price: float, commission: float
    ) -> float | None:
        """Update cash and the position; returns the realized PnL (net of commission) if the
        execution closed something, else None. ``avg_cost`` carries commissions, as IB's does."""
        self.cash -= signed_qty * price + commission
        position = self.positions.setdefault(symbol, PositionState())
        held = position.quantity
        if held == 0 or (held > 0) == (signed_qty > 0):
            new_qty = held + signed_qty
            cost = abs(held) * position.avg_cost + abs(signed_qty) * price
            cost += commission if signed_qty > 0 else -commission
            position.avg_cost = cost / abs(new_qty)
            position.quantity = new_qty
            return None
        closing = min(abs(signed_qty), abs(held))
        closing_commission = commission * closing / abs(signed_qty)
        per_share = price - position.avg_cost if held > 0 else position.avg_cost - price
        realized = per_share * closing - closing_commission
        position.realized_pnl += realized
        self.realized_pnl += realized
        new_qty = held + signed_qty
        if abs(new_qty) <= QTY_EPS:
            position.quantity = 0.0
            position.avg_cost = 0.0
        elif (new_qty > 0) == (held > 0):
            position.quantity = new_qty
        else:  # flipped through zero: the rest opens a new position at this price
            opening_commission = commission - closing_commission
            cost = abs(new_qty) * price + (
                opening_commission if new_qty > 0 else -opening_commission
            )
            position.avg_cost = cost / abs(new_qty)
            position.quantity = new_qty
        return realized

    def mark(self, symbol: str) -> float:
        position = self.positions.get(symbol)
        fallback = position.avg_cost if position is not None else 0.0
        return self.last_price.get(symbol, fallback)

    def snapshot(self) -> AccountSnapshot:
        stock_value = gross = unrealized = 0.0
        for symbol, position in self.positions.items():
            if position.quantity == 0:
                continue
            mark = self.mark(symbol)
            stock_value += position.quantity * mark
            gross += abs(position.quantity) * mark
            unrealized += (mark - position.avg_cost) * position.quantity
        net_liq = self.cash + stock_value
        init_margin = INITIAL_MARGIN * gross
        maint_margin = MAINT_MARGIN * gross
        available = net_liq - init_margin
        return AccountSnapshot(
            cash=self.cash,
            stock_value=stock_value,
            gross_position_value=gross,
            net_liquidation=net_liq,
            init_margin=init_margin,
            maint_margin=maint_margin,
            available_funds=available,
            excess_liquidity=net_liq - maint_margin,
            buying_power=max(0.0, available) / INITIAL_MARGIN,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=unrealized,
        )
