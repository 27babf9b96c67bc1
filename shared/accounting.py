"""Average-cost position accounting: realised and unrealised PnL, fees, equity.

One implementation for the monitor's ledger and any other place that books fills, so the PnL a
user tails is computed the same way everywhere. Quantities are signed (long > 0, short < 0).

Nothing non-finite gets in: a fill with a NaN/inf number or a zero quantity raises ``ValueError``
before it changes anything, and a mark that is not a finite price > 0 is ignored. A position is
marked at its first fill price until a mark (a bar close, or one restored from the ledger at start)
arrives; later fills never move the mark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class SymbolBook:
    quantity: float = 0.0
    avg_cost: float = 0.0  # average entry price of the open quantity
    realized: float = 0.0
    fees: float = 0.0
    last_price: float | None = None

    def apply_fill(self, signed_qty: float, price: float, commission: float) -> float:
        """Book one fill; returns the PnL it realised (before commission)."""
        if not (math.isfinite(signed_qty) and math.isfinite(price) and math.isfinite(commission)):
            raise ValueError(f"non-finite fill: qty={signed_qty} price={price} fee={commission}")
        if signed_qty == 0 or price <= 0:
            raise ValueError(f"fill needs a quantity != 0 and a price > 0: {signed_qty} @ {price}")
        self.fees += commission
        realized = 0.0
        same_direction = self.quantity == 0 or (self.quantity > 0) == (signed_qty > 0)
        if same_direction:
            total = self.quantity + signed_qty
            self.avg_cost = (self.avg_cost * self.quantity + price * signed_qty) / total
            self.quantity = total
        else:
            closing = min(abs(signed_qty), abs(self.quantity))
            direction = 1.0 if self.quantity > 0 else -1.0
            realized = closing * (price - self.avg_cost) * direction
            remaining = signed_qty + closing * direction  # what is left after closing
            self.quantity -= closing * direction
            if abs(self.quantity) < 1e-12:
                self.quantity = 0.0
                self.avg_cost = 0.0
            if abs(remaining) > 1e-12:  # flipped through zero: the rest opens a new position
                self.quantity = remaining
                self.avg_cost = price
        self.realized += realized
        self.last_price = price if self.last_price is None else self.last_price
        return realized

    def unrealized(self) -> float:
        if self.quantity == 0 or self.last_price is None:
            return 0.0
        return self.quantity * (self.last_price - self.avg_cost)


@dataclass
class Book:
    initial_cash: float
    symbols: dict[str, SymbolBook] = field(default_factory=dict)

    def symbol(self, symbol: str) -> SymbolBook:
        return self.symbols.setdefault(symbol, SymbolBook())

    def apply_fill(
        self, symbol: str, side: str, quantity: float, price: float, commission: float
    ) -> float:
        signed = quantity if side == "BUY" else -quantity
        return self.symbol(symbol).apply_fill(signed, price, commission)

    def mark(self, symbol: str, price: float) -> bool:
        """Mark ``symbol`` at ``price``; False (and nothing changes) unless it is finite and > 0."""
        if not (math.isfinite(price) and price > 0):
            return False
        self.symbol(symbol).last_price = price
        return True

    @property
    def realized(self) -> float:
        return sum(b.realized for b in self.symbols.values())

    @property
    def unrealized(self) -> float:
        return sum(b.unrealized() for b in self.symbols.values())

    @property
    def fees(self) -> float:
        return sum(b.fees for b in self.symbols.values())

    @property
    def equity(self) -> float:
        return self.initial_cash + self.realized + self.unrealized - self.fees

    def positions(self) -> dict[str, float]:
        return {s: b.quantity for s, b in self.symbols.items()}
