"""Look-ahead analysis of a model or a feature set (issue 14 item 6), in the spirit of freqtrade's
``lookahead-analysis``; the CLI is ``python -m trainer.analysis lookahead`` (``trainer.analysis``).

At many bars t (seeded draw), every bar AFTER t is perturbed (random multiplicative noise on
open/high/low/close/volume, high/low kept consistent; and, separately, the bars after t are cut
off). Features are recomputed with the backtest's batch pipeline, and with a model the sequential
decisions and the shared sizer's share quantities are recomputed too. Nothing at or before t may
change by more than 1e-12 (quantities: those sized at closes <= t, i.e. up to the fill at t+1's
open). The report is per feature block (``ret``, ``rsi``, ``macd_hist`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shared.backtest import run_backtest
from shared.rebalancing import AccountConfig
from trainer.analysis_common import FeatureSet, Progress, feature_block, max_diff, policy_path

LOOKAHEAD_TOL = 1e-12
OHLCV = ["open", "high", "low", "close", "volume"]


def perturb_after(bars: pd.DataFrame, t: int, rng: np.random.Generator) -> pd.DataFrame:
    """A copy with every bar after ``t`` multiplied by random noise (consistent high/low)."""
    out = bars.copy()
    m = len(bars) - t - 1
    if m <= 0:
        return out
    noise = np.exp(rng.normal(0.0, 0.05, (m, 5)))
    vals = bars[OHLCV].to_numpy(np.float64)[t + 1 :] * noise
    vals[:, 1] = np.maximum(vals[:, 1], np.maximum(vals[:, 0], vals[:, 3]))
    vals[:, 2] = np.minimum(vals[:, 2], np.minimum(vals[:, 0], vals[:, 3]))
    for k, col in enumerate(OHLCV):
        out.iloc[t + 1 :, out.columns.get_loc(col)] = vals[:, k]
    return out


def _quantities(bars: pd.DataFrame, decided: np.ndarray, acct: AccountConfig) -> np.ndarray:
    """Shares held in bars 1..len(decided) (the decision at close t is held in bar t+1)."""
    span = bars.iloc[: len(decided) + 1]
    targets = np.concatenate(([0.0], decided))[: len(span)]
    return run_backtest(span, targets, acct).qty


@dataclass
class LookaheadReport:
    points: list[int]
    names: list[str]
    feature_diff: dict[str, float]  # per feature: the largest change at or before t
    decision_diff: float | None = None
    quantity_diff: float | None = None
    leaks: list[str] = field(default_factory=list)  # "feature rsi_14 at t=412 (noise)"

    @property
    def found(self) -> bool:
        return bool(self.leaks)

    def blocks(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, d in self.feature_diff.items():
            b = feature_block(name)
            out[b] = max(out.get(b, 0.0), d)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "tolerance": LOOKAHEAD_TOL,
            "points": self.points,
            "verdict": "LOOK-AHEAD FOUND" if self.found else "no look-ahead",
            "feature_max_change": self.feature_diff,
            "block_max_change": self.blocks(),
            "decision_max_change": self.decision_diff,
            "quantity_max_change": self.quantity_diff,
            "leaks": self.leaks[:200],
        }


def lookahead_analysis(
    bars: pd.DataFrame,
    features: FeatureSet,
    model: Any | None = None,
    *,
    points: int = 24,
    seed: int = 0,
    account: AccountConfig | None = None,
    progress: Progress = lambda _: None,
) -> LookaheadReport:
    """Perturb the future at ``points`` seeded bars (see the module docstring)."""
    n = len(bars)
    lo = max(features.warmup_bars, 1)
    if n - lo < 3:
        raise ValueError(f"{n} bars leave nothing after the {lo}-bar feature warm-up")
    rng = np.random.default_rng(seed)
    ts = sorted({int(x) for x in rng.integers(lo, n - 2, size=points)})
    acct = account or AccountConfig()
    base = np.asarray(features.batch(bars), dtype=np.float64)
    decided = policy_path(model, features, bars, n - 2) if model is not None else None
    qty = _quantities(bars, decided, acct) if decided is not None else None
    report = LookaheadReport(ts, list(features.names), dict.fromkeys(features.names, 0.0))
    if model is not None:
        report.decision_diff = report.quantity_diff = 0.0
    for i, t in enumerate(ts, 1):
        for kind, changed in (
            ("noise", perturb_after(bars, t, rng)),
            ("cut", bars.iloc[: t + 1]),
        ):
            feats = np.asarray(features.batch(changed), dtype=np.float64)
            diff = max_diff(feats[: t + 1], base[: t + 1])
            for name, d in zip(features.names, diff.tolist(), strict=True):
                report.feature_diff[name] = max(report.feature_diff[name], d)
                if d > LOOKAHEAD_TOL:
                    report.leaks.append(f"feature {name} at t={t} ({kind}): {d:.3g}")
            if decided is not None and qty is not None:
                mine = policy_path(model, features, changed, t)
                dd = float(np.max(np.abs(mine - decided[: t + 1])))
                report.decision_diff = max(report.decision_diff or 0.0, dd)
                if dd > LOOKAHEAD_TOL:
                    report.leaks.append(f"decision at t={t} ({kind}): {dd:.3g}")
                if kind == "noise":  # the cut frame has no bar t+1 to fill in
                    q = _quantities(changed, mine, acct)
                    qd = float(np.max(np.abs(q[: t + 2] - qty[: t + 2])))
                    report.quantity_diff = max(report.quantity_diff or 0.0, qd)
                    if qd > LOOKAHEAD_TOL:
                        report.leaks.append(f"quantity up to bar {t + 1} ({kind}): {qd:.3g}")
        progress(
            f"  [{i}/{len(ts)}] t={t} ({bars.index[t]:%Y-%m-%d}) leaks so far: {len(report.leaks)}"
        )
    return report
