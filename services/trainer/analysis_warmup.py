"""Warm-up analysis of a model or a feature set (issue 14 item 6), in the spirit of freqtrade's
``recursive-analysis``; the CLI is ``python -m trainer.analysis warmup`` (``trainer.analysis``).

The live service warms a symbol from a snapshot of N bars (inference's ``snapshot_bars``), feeding
them one by one to ``OnlineFeatures``; the backtest computes batch features over the whole
history. For several bars T (seeded) the online features after N bars ending at T are compared
with the backtest's row T; per feature the smallest N where every T matches to 1e-9 is stated
(found on a grid, then bisected), and with a model the smallest N where the decisions match;
likewise for the shared sizer's ATR, which execution warms from its own snapshot
(3 x atr_period bars).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shared.rebalancing import clip_target
from shared.sizing import SizingConfig, WilderATR, atr_series
from trainer.analysis_common import Progress, max_diff, policy_path

WARMUP_TOL = 1e-9
# execution.config.ExecutionSettings.atr_warmup_bars (not imported: the trainer stays off the
# execution package); inference.config.snapshot_bars is 400.
EXECUTION_ATR_WARMUP_BARS = 300


@dataclass
class WarmupReport:
    points: list[int]
    names: list[str]
    needed: dict[str, int | None]  # per feature: smallest N matching at every point
    decisions_needed: int | None
    snapshot_bars: int
    diff_at_snapshot: dict[str, float]
    max_n: int
    has_model: bool = False
    sizing_atr_needed: int | None = None  # execution's sizing ATR (shared.sizing.WilderATR)
    atr_warmup_bars: int = 0  # what execution warms its ATR with (MarketState.warm_up)

    @property
    def overall(self) -> int | None:
        """Largest N over the features (and the decisions, with a model); None if one never
        matched within ``max_n``."""
        values = [*self.needed.values(), *([self.decisions_needed] if self.has_model else [])]
        if any(v is None for v in values):
            return None
        return max((v for v in values if v is not None), default=0)

    @property
    def ok(self) -> bool:
        overall = self.overall
        return overall is not None and overall <= self.snapshot_bars

    @property
    def atr_ok(self) -> bool:
        need = self.sizing_atr_needed
        return need is not None and need <= self.atr_warmup_bars

    def to_dict(self) -> dict[str, Any]:
        return {
            "tolerance": WARMUP_TOL,
            "points": self.points,
            "snapshot_bars": self.snapshot_bars,
            "max_n_tried": self.max_n,
            "needed_per_feature": self.needed,
            "decisions_needed": self.decisions_needed,
            "needed": self.overall,
            "max_diff_at_snapshot": self.diff_at_snapshot,
            "verdict": "OK" if self.ok else "SNAPSHOT TOO SHORT",
            "sizing_atr_needed": self.sizing_atr_needed,
            "execution_atr_warmup_bars": self.atr_warmup_bars,
            "sizing_atr_verdict": "OK" if self.atr_ok else "ATR WARM-UP TOO SHORT",
        }


def _smallest_on_grid(grid: Sequence[int], ok: Callable[[int], bool]) -> int | None:
    """First N of the sorted ``grid`` where ``ok`` holds, bisected down from the previous grid
    point (the differences shrink with N: an EWM's start weight decays, a window fills once)."""
    ordered = sorted(set(grid))
    prev = ordered[0] - 1
    for g in ordered:
        if ok(g):
            lo, hi = prev, g
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if ok(mid) else (mid, hi)
            return hi
        prev = g
    return None


def online_row(pipeline: Any, bars: pd.DataFrame, end: int, n_bars: int) -> np.ndarray:
    """Live features at bar ``end`` after a warm-up of the ``n_bars`` bars ending there."""
    online = pipeline.online()
    row = online.update_many(bars.iloc[max(0, end - n_bars + 1) : end + 1])
    k = len(pipeline.names)
    return np.full(k, np.nan) if row is None else np.asarray(row, dtype=np.float64)


def warmup_analysis(
    bars: pd.DataFrame,
    pipeline: Any,
    model: Any | None = None,
    *,
    points: int = 6,
    seed: int = 0,
    snapshot_bars: int = 400,
    max_n: int = 2000,
    sizing: SizingConfig | None = None,
    atr_warmup_bars: int | None = None,
    progress: Progress = lambda _: None,
) -> WarmupReport:
    """Smallest warm-up N per feature (and for decisions) that reproduces the backtest's row."""
    n = len(bars)
    max_n = min(max_n, n - 1)
    lo = pipeline.warmup_bars
    if n - max_n < 1 or max_n < lo:
        raise ValueError(f"{n} bars: too few for warm-ups up to {max_n} bars")
    rng = np.random.default_rng(seed)
    ts = sorted({int(x) for x in rng.integers(max_n, n, size=points)})
    base = np.asarray(pipeline.batch(bars), dtype=np.float64)
    decided = policy_path(model, pipeline, bars, n - 1) if model is not None else None
    norm: Any = getattr(model, "normaliser", None)

    def diffs(n_bars: int) -> tuple[np.ndarray, float]:
        rows = np.stack([online_row(pipeline, bars, t, n_bars) for t in ts])
        fd = max_diff(rows, base[ts])
        dd = 0.0
        if model is not None and decided is not None:
            from shared.observation import build_observation

            for r, t in zip(rows, ts, strict=True):
                z = np.asarray(norm.transform(r), dtype=np.float64)
                prev = float(decided[t - 1])
                if not np.isfinite(z).all():
                    dd = math.inf
                    break
                got = clip_target(float(model.decide(build_observation(z, prev))), True)
                dd = max(dd, abs(got - float(decided[t])))
        return fd, dd

    cache: dict[int, tuple[np.ndarray, float]] = {}

    def at(n_bars: int) -> tuple[np.ndarray, float]:
        if n_bars not in cache:
            cache[n_bars] = diffs(n_bars)
        return cache[n_bars]

    grid = sorted(
        {
            lo,
            *(
                g
                for g in (lo + 10, 50, 100, 150, 200, 300, 500, 800, 1200, 2000)
                if lo <= g <= max_n
            ),
            max_n,
        }
    )
    for g in grid:
        fd, dd = at(g)
        progress(f"  N={g:5d}: worst feature diff {float(fd.max()):.3g}, decision diff {dd:.3g}")

    def smallest(ok: Callable[[int], bool]) -> int | None:
        return _smallest_on_grid(grid, ok)

    def feature_matches(k: int) -> Callable[[int], bool]:
        return lambda m: bool(at(m)[0][k] <= WARMUP_TOL)

    needed: dict[str, int | None] = {}
    for k, name in enumerate(pipeline.names):
        needed[name] = smallest(feature_matches(k))
        progress(f"  {name:28s} N >= {needed[name]}")
    decisions = smallest(lambda m: at(m)[1] <= WARMUP_TOL) if model is not None else None
    snap = at(min(snapshot_bars, max_n))[0]
    sizing = sizing or SizingConfig()
    full_atr = atr_series(bars["high"], bars["low"], bars["close"], sizing.atr_period)

    def atr_matches(m: int) -> bool:
        for t in ts:
            atr = WilderATR(sizing.atr_period)
            for h, lw, c in (
                bars[["high", "low", "close"]]
                .iloc[t - m + 1 : t + 1]
                .itertuples(index=False, name=None)
            ):
                atr.update(h, lw, c)
            if atr.value is None or abs(atr.value - full_atr[t]) > WARMUP_TOL:
                return False
        return True

    atr_needed = _smallest_on_grid([sizing.atr_period, *grid], atr_matches)
    progress(f"  {'sizing ATR (execution)':28s} N >= {atr_needed}")
    return WarmupReport(
        points=ts,
        names=list(pipeline.names),
        needed=needed,
        decisions_needed=decisions,
        snapshot_bars=snapshot_bars,
        diff_at_snapshot=dict(zip(pipeline.names, snap.tolist(), strict=True)),
        max_n=max_n,
        has_model=model is not None,
        sizing_atr_needed=atr_needed,
        atr_warmup_bars=(
            atr_warmup_bars if atr_warmup_bars is not None else EXECUTION_ATR_WARMUP_BARS
        ),
    )
