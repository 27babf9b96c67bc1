"""Execution's risk rules in the backtester: the ATR stop and the daily-loss halt, decision by
decision, exactly as the training env applies them (``shared.env_risk``).

A policy trained with ``EnvConfig.risk`` set is scored here under the same rules, so validation
folds, the promotion gate and the hold-out judge the policy that was trained (and that execution
will trade), not a policy without its stop. The rule arithmetic is ``shared.env_risk``'s
(``RiskState``, ``stop_level``, ``stop_triggered``, ``day_ids``); the account arithmetic is the
backtester's own ``resize`` (the shared sizer, as the env's). Nothing is re-implemented.

The rules depend on the account's path (the equity marked at a decision bar's close, the price a
position was opened at), so they cannot be applied to a target array after the fact in one
vector operation. ``RiskBook`` walks the decisions in order with a small account of its own and
returns each decision's target after the rules (0 when forced flat); ``run_backtest`` then books
those targets with its usual (vectorised) accounting, which reproduces the same path because
the book uses the same ``resize`` on the same reference prices. ``run_policy`` asks the book at
every decision, so the policy's next observation carries the position it really holds after a
stop or a halt, as the env's observation does.

Timing, as everywhere in ``shared.backtest``: ``targets[i]`` is held during bar ``i`` and was
decided at the close of bar ``i - 1``. At that decision the book (1) marks the equity at the
close of ``i - 1`` and lets the day's loss halt see it (``RiskState.observe``; the first bar's
day starts from the initial cash, as an env episode does), (2) checks the stop against that
close, (3) forces the target flat if either fired, (4) re-sizes through ``resize`` and moves
the stop (``RiskState.after_fill``). The decision for bar 0 is taken before the slice with a
flat account at the initial cash: nothing can fire there.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shared.env_risk import RiskRules, RiskState, day_ids, stop_triggered

__all__ = ["RiskBook", "apply_risk_rules", "manifest_risk_rules", "risk_record"]

STOP, DAILY_LOSS = "stop", "daily_loss"  # the env's info["risk"] values


class RiskBook:
    """One backtest account's targets after execution's rules, decision by decision."""

    def __init__(
        self,
        bars: pd.DataFrame,
        acct: Any,
        rules: RiskRules,
        warmup: pd.DataFrame | None = None,
    ) -> None:
        from shared.rebalancing import decision_refs

        if acct.sizer != "shared":
            raise ValueError("risk rules need the shared sizer (its ATR stop), not risk_fraction")
        self.acct = acct
        self.rules = rules
        self.open = bars["open"].to_numpy(np.float64)
        self.close = bars["close"].to_numpy(np.float64)
        self.ref_close, self.ref_atr = decision_refs(bars, warmup, acct.sizing.atr_period)
        self.days = day_ids(pd.DatetimeIndex(bars.index), rules.day_tz)
        self.cash = float(acct.initial_cash)
        self.qty = 0.0
        first_day = int(self.days[0]) if len(self.days) else 0
        self.state = RiskState(first_day, self.cash)
        self.reasons: list[str] = [""] * len(self.close)
        self.next = 0  # the next bar whose target may be decided

    def decide(self, i: int, target: float) -> float:
        """``targets[i]`` (already clipped) after the rules; call with i = 0, 1, 2, ... in order."""
        if i != self.next:
            raise ValueError(
                f"RiskBook: decisions must come in order, got bar {i}, want {self.next}"
            )
        self.next += 1
        forced = ""
        if i > 0:  # the decision at the close of bar i - 1
            rules, state, close = self.rules, self.state, float(self.close[i - 1])
            halted = state.observe(
                int(self.days[i - 1]), self.cash + self.qty * close, rules.max_daily_loss
            )
            if rules.daily_loss_halt and halted:
                forced = DAILY_LOSS
            elif rules.stop_loss and stop_triggered(self.qty, state.stop, close):
                forced = STOP
        if forced:
            target = 0.0
            self.reasons[i] = forced
        old_qty = self.qty
        if target != 0.0 or self.qty != 0.0:
            from shared.rebalancing import resize

            ref, atr = float(self.ref_close[i]), float(self.ref_atr[i])
            self.cash, self.qty, *_ = resize(
                self.cash, self.qty, target, ref, atr, float(self.open[i]), self.acct
            )
        if self.rules.stop_loss:
            self.state.after_fill(
                old_qty,
                self.qty,
                float(self.ref_close[i]),
                float(self.ref_atr[i]),
                self.acct.sizing,
            )
        return target

    def forced(self) -> dict[str, int]:
        """How many decisions each rule forced flat."""
        return {r: self.reasons.count(r) for r in (STOP, DAILY_LOSS)}


def apply_risk_rules(
    bars: pd.DataFrame,
    targets: NDArray[np.float64],
    acct: Any,
    rules: RiskRules,
    warmup: pd.DataFrame | None = None,
) -> tuple[NDArray[np.float64], dict[str, int]]:
    """Clipped ``targets`` after the rules, and how many decisions each rule forced flat."""
    book = RiskBook(bars, acct, rules, warmup)
    out = np.array([book.decide(i, float(t)) for i, t in enumerate(targets.tolist())])
    return out.astype(np.float64).reshape(targets.shape), book.forced()


def risk_record(rules: RiskRules | None) -> dict[str, Any] | None:
    """The rules as plain numbers (a manifest's / a report's field); None when off."""
    if rules is None:
        return None
    return {
        "stop_loss": rules.stop_loss,
        "daily_loss_halt": rules.daily_loss_halt,
        "max_daily_loss": rules.max_daily_loss,
        "day_tz": rules.day_tz,
    }


def manifest_risk_rules(manifest: Any) -> RiskRules | None:
    """The rules a model was trained under, from its manifest's provenance: the recorded
    ``env_risk_rules`` numbers (``trainer.export``), else ``RiskRules()`` when only the training
    config's ``env_risk_rules`` flag is there (those were the numbers), else None."""
    raw = getattr(manifest, "provenance", "") or ""
    try:
        prov = json.loads(raw) if raw else {}
    except ValueError:
        return None
    if not isinstance(prov, dict):
        return None
    recorded = prov.get("env_risk_rules")
    if isinstance(recorded, dict):
        return msgspec.convert(recorded, RiskRules)
    train_config = prov.get("train_config")
    if isinstance(train_config, dict) and train_config.get("env_risk_rules") is True:
        return RiskRules()
    return None
