"""How a target becomes shares, cash and fees at one bar: the accounting core that the gymnasium
env, the vector env and the backtester share (``shared.backtest`` runs it over a bar slice).

``AccountConfig`` says how: the initial cash, the sizer and the costs. A *target* is a fraction
in [-1, 1] (``clip_target(s)``: clipped to [0, 1] without shorting). With the default sizer
("shared") it becomes whole shares through ``shared.sizing``, THE rule the execution service
trades with: ``decision_refs`` gives the close and Wilder ATR each bar's position is sized at
(those of the decision bar), ``resize`` sizes there and fills at the next open. The old
"risk_fraction" sizer (``order_quantity``, ``rebalance``, and ``rebalance_arrays`` for N
accounts at once in the vector env) is kept for re-scoring old manifests; it is not what
execution trades.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from shared.costs import CostModel
from shared.sizing import SizingConfig, atr_series, position_after

__all__ = [
    "AccountConfig",
    "clip_target",
    "clip_targets",
    "decision_refs",
    "order_quantity",
    "rebalance",
    "rebalance_arrays",
    "resize",
]


class AccountConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How targets become shares and cash; shared by the env, the backtester and evaluation.

    Attributes:
        initial_cash: equity before the first bar (account currency).
        sizer: "shared" (default) = ``shared.sizing``, the rule execution trades with,
            configured by ``sizing``; "risk_fraction" = the old rule, kept only so that old
            manifests can be re-scored as they were scored (see the module docstring).
        sizing: the paper-trading config's sizing keys (``SizingConfig.from_paper_config``).
        risk_fraction: "risk_fraction" sizer only: a target of +-1 means a position worth
            ``risk_fraction * equity``. Ignored by the shared sizer.
        integer_shares: "risk_fraction" sizer only: round quantities toward zero to whole
            shares; False for fractional quantities. The shared sizer trades whole shares.
        allow_short: whether negative targets are allowed (else clipped to 0).
        costs: the :class:`~shared.costs.CostModel` charged on every fill.
    """

    initial_cash: float = 100_000.0
    sizer: Literal["shared", "risk_fraction"] = "shared"
    sizing: SizingConfig = msgspec.field(default_factory=SizingConfig)
    risk_fraction: float = 1.0
    integer_shares: bool = True
    allow_short: bool = True
    costs: CostModel = msgspec.field(default_factory=CostModel)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_cash) and self.initial_cash > 0):
            raise ValueError(f"AccountConfig.initial_cash must be > 0, got {self.initial_cash!r}")
        if not (math.isfinite(self.risk_fraction) and 0 < self.risk_fraction <= 10):
            raise ValueError(
                f"AccountConfig.risk_fraction must be in (0, 10], got {self.risk_fraction!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | AccountConfig | None) -> AccountConfig:
        if data is None:
            return cls()
        if isinstance(data, AccountConfig):
            return data
        try:
            return msgspec.convert(dict(data), cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid AccountConfig: {exc}") from exc


def clip_targets(targets: ArrayLike, allow_short: bool) -> NDArray[np.float64]:
    t = np.asarray(targets, dtype=np.float64)
    t = np.where(np.isfinite(t), t, 0.0)
    return np.clip(t, -1.0 if allow_short else 0.0, 1.0)


def clip_target(target: float, allow_short: bool) -> float:
    t = float(target)
    if not math.isfinite(t):
        return 0.0
    return min(1.0, max(-1.0 if allow_short else 0.0, t))


def order_quantity(target: float, equity: float, ref_price: float, acct: AccountConfig) -> float:
    """Shares to hold for ``target`` given the equity at the fill bar's open."""
    if equity <= 0.0 or ref_price <= 0.0:
        return 0.0
    raw = target * acct.risk_fraction * equity / ref_price
    return float(math.trunc(raw)) if acct.integer_shares else float(raw)


def rebalance(
    cash: float, qty: float, target: float, ref_price: float, acct: AccountConfig
) -> tuple[float, float, float, float, float]:
    """Move to ``target`` at the open ``ref_price``.

    Returns ``(cash, qty, traded_qty, fill_price, commission)``; ``traded_qty`` 0 means no order.
    """
    equity = cash + qty * ref_price
    new_qty = order_quantity(target, equity, ref_price, acct)
    dq = new_qty - qty
    if dq == 0.0:
        return cash, qty, 0.0, 0.0, 0.0
    costs = acct.costs
    price = costs.fill_price(1 if dq > 0 else -1, ref_price)
    fee = costs.commission(dq, price)
    return cash - dq * price - fee, new_qty, dq, price, fee


def decision_refs(
    bars: pd.DataFrame, warmup: pd.DataFrame | None, atr_period: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(close, ATR) each bar's position is sized at: those of the bar BEFORE it (the decision
    bar), the ATR run over ``warmup`` and ``bars``. Bar 0 without warm-up: its open and no ATR."""
    frames = [bars] if warmup is None or not len(warmup) else [warmup, bars]
    cols = {c: np.concatenate([f[c].to_numpy(np.float64) for f in frames]) for c in _HLC}
    atr = atr_series(cols["high"], cols["low"], cols["close"], atr_period)
    w = len(cols["close"]) - len(bars)
    ref_close = np.empty(len(bars))
    ref_atr = np.empty(len(bars))
    if len(bars):
        ref_close[1:] = cols["close"][w : w + len(bars) - 1]
        ref_atr[1:] = atr[w : w + len(bars) - 1]
        ref_close[0] = cols["close"][w - 1] if w else float(bars["open"].iloc[0])
        ref_atr[0] = atr[w - 1] if w else math.nan
    return ref_close, ref_atr


_HLC = ("high", "low", "close")


def resize(
    cash: float,
    qty: float,
    target: float,
    decision_close: float,
    decision_atr: float,
    ref_price: float,
    acct: AccountConfig,
) -> tuple[float, float, float, float, float]:
    """The shared sizer's decision at a close (equity marked at ``decision_close``), filled at
    the next open ``ref_price``; returns what :func:`rebalance` returns."""
    equity = cash + qty * decision_close
    atr = decision_atr if math.isfinite(decision_atr) else None
    new_qty = float(position_after(target, equity, decision_close, atr, round(qty), acct.sizing))
    dq = new_qty - qty
    if dq == 0.0:
        return cash, qty, 0.0, 0.0, 0.0
    costs = acct.costs
    price = costs.fill_price(1 if dq > 0 else -1, ref_price)
    fee = costs.commission(dq, price)
    return cash - dq * price - fee, new_qty, dq, price, fee


def rebalance_arrays(
    cash: NDArray[np.float64],
    qty: NDArray[np.float64],
    target: NDArray[np.float64],
    ref_price: NDArray[np.float64],
    acct: AccountConfig,
    active: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Vectorised :func:`rebalance` for N independent accounts (the vector env).

    Only rows where ``active`` is True may trade. Returns ``(cash, qty, traded_qty, commission)``.
    Bit-identical to the scalar version row by row.
    """
    equity = cash + qty * ref_price
    ok = (equity > 0.0) & (ref_price > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = target * acct.risk_fraction * equity / ref_price
    raw = np.where(ok, raw, 0.0)
    new_qty = np.trunc(raw) if acct.integer_shares else raw
    dq = new_qty - qty
    if active is not None:
        dq = np.where(active, dq, 0.0)
    price = acct.costs.fill_prices(np.sign(dq), ref_price)
    fee = acct.costs.commissions(dq, price)
    new_cash = cash - dq * price - fee
    traded = dq != 0.0
    return np.where(traded, new_cash, cash), np.where(traded, qty + dq, qty), dq, fee
