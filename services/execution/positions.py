"""Positions: the broker's report, plus a typed overlay of fills the broker has not reported yet.

The broker owns positions. Its reports arrive as ``BrokerPosition`` events (and as a snapshot at
every reconciliation); a live fill usually arrives a moment before the position report that
includes it, and a decision taken in between must not order the same shares again. So the book
keeps, per symbol, the last broker report and the fills booked since (``PendingFills``); the next
report of that symbol replaces both. Nobody else keeps positions, and nothing falls back to a
second copy when the broker reports flat.
"""

from __future__ import annotations

from dataclasses import dataclass

from execution.broker import BrokerFill, BrokerPosition


@dataclass(frozen=True)
class PendingFills:
    """Fills of one symbol since the broker's last position report."""

    quantity: float  # signed: buys minus sells
    first_price: float  # the avg cost to show while the broker has no position at all
    account: str


class PositionBook:
    def __init__(self) -> None:
        self._reported: dict[str, BrokerPosition] = {}
        self._pending: dict[str, PendingFills] = {}

    def replace_all(self, reported: dict[str, BrokerPosition]) -> None:
        """A full snapshot from the broker (reconciliation): every overlay is superseded."""
        self._reported = dict(reported)
        self._pending.clear()

    def on_broker_position(self, pos: BrokerPosition) -> None:
        self._reported[pos.symbol] = pos
        self._pending.pop(pos.symbol, None)  # the report includes every earlier fill

    def on_live_fill(self, fill: BrokerFill) -> None:
        if fill.in_position:
            return  # the last position report already holds these shares
        signed = fill.quantity if fill.side == "BUY" else -fill.quantity
        old = self._pending.get(fill.symbol)
        self._pending[fill.symbol] = PendingFills(
            quantity=(old.quantity if old else 0.0) + signed,
            first_price=old.first_price if old else fill.price,
            account=fill.account,
        )

    def get(self, symbol: str) -> BrokerPosition | None:
        reported = self._reported.get(symbol)
        pending = self._pending.get(symbol)
        if pending is None:
            return reported
        return BrokerPosition(
            symbol=symbol,
            quantity=(reported.quantity if reported else 0.0) + pending.quantity,
            avg_cost=reported.avg_cost if reported else pending.first_price,
            account=pending.account,
        )

    def quantity(self, symbol: str) -> float:
        pos = self.get(symbol)
        return pos.quantity if pos else 0.0

    def all(self) -> dict[str, BrokerPosition]:
        """Every symbol the broker reported or we filled since (zero quantities included)."""
        out: dict[str, BrokerPosition] = {}
        for symbol in sorted(set(self._reported) | set(self._pending)):
            pos = self.get(symbol)
            if pos is not None:
                out[symbol] = pos
        return out

    def held(self) -> dict[str, BrokerPosition]:
        """The non-zero positions."""
        return {s: p for s, p in self.all().items() if p.quantity}
