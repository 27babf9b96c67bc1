"""IBKR Pro "Fixed" stock commissions: USD 0.005 per share, at least USD 1.00, at most 1% of value.

The minimum and maximum apply per order, not per execution (as IB does): an order filled in
several executions is charged ``schedule(cumulative) - already charged`` at each one, so the total
equals the charge for one execution of the whole quantity. Exchange and regulatory fees are not
modelled.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommissionSchedule:
    per_share: float = 0.005
    minimum: float = 1.0
    max_pct_of_value: float = 1.0  # percent of the trade value

    def for_order(self, shares: float, value: float) -> float:
        """Total commission of an order that has traded ``shares`` for ``value`` USD so far."""
        if shares <= 0:
            return 0.0
        charge = max(self.minimum, self.per_share * shares)
        cap = value * self.max_pct_of_value / 100.0
        return round(min(charge, cap), 6)

    def for_execution(self, cum_shares: float, cum_value: float, already_charged: float) -> float:
        """Commission of one execution, given the order's totals including it."""
        return round(max(0.0, self.for_order(cum_shares, cum_value) - already_charged), 6)
