"""Trading costs: one model for the env reward, the backtester and the simulated broker.

A decision taken at the close of bar *t* is filled at the OPEN of bar *t+1*; the fill price is
that open moved against the trader by half the quoted spread plus slippage, and every order pays
a commission. The same :class:`CostModel` instance (or its dict form) is handed to
``shared.env.TradingEnv``, ``shared.backtest`` and the execution service's simulated broker, so a
strategy is charged identically everywhere. Costs are ON by default (Interactive Brokers' fixed
US-stock tariff plus a few basis points of spread and slippage).

Scalar methods (``fill_price``, ``commission``) serve the event-driven paths; the array methods
(``fill_prices``, ``commissions``) are the vectorised twins used by ``VectorTradingEnv`` and the
backtester. Both evaluate the same floating-point expressions in the same order, so they agree
bit for bit (tested).
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["BUY", "SELL", "ZERO_COSTS", "CostModel"]

BUY = 1
SELL = -1


class CostModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Commission, spread, slippage and the reward-only position-change penalty.

    Attributes:
        commission_per_share: currency per share traded (IB fixed tariff: 0.005).
        commission_min: minimum commission per order (IB: 1.0); 0 disables it.
        commission_max_pct: cap on the commission as a fraction of the order's notional
            (IB: 1 % = 0.01); 0 disables the cap.
        commission_bps: alternative (or additional) commission in basis points of notional,
            e.g. 10 for 0.1 % (crypto/FX style). Set ``commission_per_share=0`` to use it alone.
        spread_bps: full quoted bid/ask spread in basis points; a fill pays half of it.
        slippage_bps: extra adverse price move per fill in basis points (market impact, latency).
        position_change_penalty: reward-shaping only (never charged to cash): the env subtracts
            ``penalty * |target_t - target_{t-1}|`` from the reward, target in [-1, 1].
    """

    commission_per_share: float = 0.005
    commission_min: float = 1.0
    commission_max_pct: float = 0.01
    commission_bps: float = 0.0
    spread_bps: float = 2.0
    slippage_bps: float = 1.0
    position_change_penalty: float = 0.0

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"CostModel.{name} must be a finite number >= 0, got {value!r}")

    # ------------------------------------------------------------------ scalar
    @property
    def adverse_fraction(self) -> float:
        """Fractional price move against the trader on every fill (half spread + slippage)."""
        return (self.spread_bps / 2.0 + self.slippage_bps) / 10_000.0

    def fill_price(self, side: int | float, ref_price: float) -> float:
        """Execution price of an order on ``side`` (+1 buy, -1 sell) at reference ``ref_price``.

        Buys pay more, sells receive less: ``ref * (1 + side * (spread/2 + slippage))``.
        A side of 0 returns the reference price.
        """
        s = 1.0 if side > 0 else (-1.0 if side < 0 else 0.0)
        return float(ref_price * (1.0 + s * self.adverse_fraction))

    def commission(self, qty: float, price: float) -> float:
        """Commission of one order of ``qty`` shares (sign ignored) filled at ``price``."""
        q = abs(float(qty))
        if q == 0.0:
            return 0.0
        notional = q * float(price)
        fee = q * self.commission_per_share + notional * self.commission_bps / 10_000.0
        if self.commission_max_pct > 0.0:
            fee = min(fee, notional * self.commission_max_pct)
        return float(max(fee, self.commission_min))

    # ---------------------------------------------------------------- vectorised
    def fill_prices(self, side: ArrayLike, ref_price: ArrayLike) -> NDArray[np.float64]:
        """Array form of :meth:`fill_price` (same arithmetic, elementwise)."""
        s = np.sign(np.asarray(side, dtype=np.float64))
        return np.asarray(ref_price, dtype=np.float64) * (1.0 + s * self.adverse_fraction)

    def commissions(self, qty: ArrayLike, price: ArrayLike) -> NDArray[np.float64]:
        """Array form of :meth:`commission` (0 where ``qty`` is 0)."""
        q = np.abs(np.asarray(qty, dtype=np.float64))
        notional = q * np.asarray(price, dtype=np.float64)
        fee = q * self.commission_per_share + notional * self.commission_bps / 10_000.0
        if self.commission_max_pct > 0.0:
            fee = np.minimum(fee, notional * self.commission_max_pct)
        fee = np.maximum(fee, self.commission_min)
        return np.where(q == 0.0, 0.0, fee)

    # -------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.__struct_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | CostModel | None) -> CostModel:
        """Build from a plain dict (unknown keys are refused, naming the key)."""
        if data is None:
            return cls()
        if isinstance(data, CostModel):
            return data
        try:
            return msgspec.convert(dict(data), cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid CostModel: {exc}") from exc


ZERO_COSTS = CostModel(
    commission_per_share=0.0,
    commission_min=0.0,
    commission_max_pct=0.0,
    commission_bps=0.0,
    spread_bps=0.0,
    slippage_bps=0.0,
    position_change_penalty=0.0,
)
