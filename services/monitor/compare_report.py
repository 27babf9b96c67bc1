"""The paper-versus-backtest report: per-session rows, the verdict, plots, ``report.{json,html}``.

``build_report`` turns the per-symbol runs of ``monitor.compare`` into one JSON-able dict;
``write_report`` writes ``<out>/paper-vs-backtest-<first>_<last>/`` with ``report.json``,
``report.html`` (self-contained: the plots are embedded, nothing loads from outside) and the plots
as PNG files beside it. See ``monitor.compare`` for what every number means.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from monitor.compare import SESSION_TZ, CompareOptions, SymbolRun, curve_metrics, equity_curves

PREFIX = "paper-vs-backtest-"


def _session_pnl(runs: Sequence[SymbolRun]) -> pd.DataFrame:
    """Per session, summed over symbols: PnL of paper, priced, backtest; fees; start equity."""
    parts = []
    for r in runs:
        frame = pd.DataFrame(
            {
                "session": r.sessions,
                "paper": r.paper,
                "priced": r.priced,
                "backtest": r.backtest,
            }
        )
        ends = frame.groupby("session", sort=True).last()
        pnl = ends.diff()
        pnl.iloc[0] = ends.iloc[0]  # before its first bar a symbol's PnL is 0
        pnl["bars"] = frame.groupby("session", sort=True).size()
        pnl["backtest_own_fees"] = pd.Series(r.backtest_fees).groupby(r.sessions).sum()
        parts.append(pnl)
    return pd.concat(parts).groupby(level=0).sum().sort_index()


def build_report(
    runs: Sequence[SymbolRun], models: dict[str, str], opts: CompareOptions
) -> dict[str, Any]:
    by_session = _session_pnl(runs)
    # the paper account's equity at each session's start, from every earlier session
    cum = by_session["paper"].cumsum().shift(1).fillna(0.0)
    start_equity = opts.initial_cash + cum
    sessions = [s for s in by_session.index if _in_period(s, opts)]
    if not sessions:
        raise ValueError(f"no session of the ledger falls in {opts.start}..{opts.end}")
    wanted = set(sessions)
    decisions = [d for r in runs for d in r.decisions if d["session"] in wanted]
    orders = [o for r in runs for o in r.orders if o["session"] in wanted]
    day_decisions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    day_orders: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in decisions:
        day_decisions[d["session"]].append(d)
    for o in orders:
        day_orders[o["session"]].append(o)
    rows = [
        _session_row(
            s, by_session.loc[s], float(start_equity[s]), day_decisions[s], day_orders[s], opts
        )
        for s in sessions
    ]
    curves = equity_curves(runs, opts.initial_cash)
    day = curves.index.tz_convert(SESSION_TZ).strftime("%Y-%m-%d")
    in_period = curves[(day >= sessions[0]) & (day <= sessions[-1])]
    before = curves[day < sessions[0]]
    base = before.iloc[-1] if len(before) else pd.Series(opts.initial_cash, index=curves.columns)
    fees = _fees(rows)
    deviations = [r["deviation"] for r in rows]
    within = [r for r in rows if r["within_bound"]]
    report: dict[str, Any] = {
        "kind": "paper-vs-backtest",
        "generated_ns": time.time_ns(),
        "period": {"start": sessions[0], "end": sessions[-1]},
        "inputs": {
            "ledger": str(opts.ledger),
            "store": str(opts.store),
            "models": models,
            "costs": opts.costs.to_dict(),
            "initial_cash": opts.initial_cash,
            "session_tz": SESSION_TZ,
        },
        "summary": {
            "paper": curve_metrics(in_period["paper"], float(base["paper"]), fees["paper"]),
            "backtest_priced": curve_metrics(
                in_period["priced"], float(base["priced"]), fees["priced"]
            ),
            "backtest": curve_metrics(
                in_period["backtest"], float(base["backtest"]), fees["backtest"]
            ),
            "decisions": {
                "compared": sum(1 for d in decisions if not d["missing"]),
                "mismatches": sum(1 for d in decisions if d["mismatch"]),
                "missing": sum(1 for d in decisions if d["missing"]),
                "unverifiable": sum(1 for d in decisions if d["unverifiable"]),
            },
            "orders": _order_summary(orders),
            "signals_without_stored_bar": sum(r.unknown_signals for r in runs),
        },
        "sessions": rows,
        "verdict": {
            "sessions": len(rows),
            "max_deviation": max(deviations),
            "within_bound": len(within) == len(rows),
            "sessions_within_bound": len(within),
            "bound": opts.bound,
        },
        "curves": {
            name: {
                "t": [ts.isoformat() for ts in in_period.index],
                "equity": [float(v) for v in in_period[column]],
            }
            for name, column in (
                ("backtest_equity", "backtest"),
                ("paper_equity", "paper"),
                ("backtest_priced_equity", "priced"),
            )
        },
        "decisions": decisions,
        "orders": orders,
    }
    return report


def _in_period(session: str, opts: CompareOptions) -> bool:
    first = pd.Timestamp(opts.start).strftime("%Y-%m-%d") if opts.start else None
    last = pd.Timestamp(opts.end).strftime("%Y-%m-%d") if opts.end else None
    return (first is None or session >= first) and (last is None or session <= last)


def _session_row(
    session: str,
    pnl: pd.Series,
    start_equity: float,
    decisions: list[dict[str, Any]],
    orders: list[dict[str, Any]],
    opts: CompareOptions,
) -> dict[str, Any]:
    ds, os_ = decisions, orders  # this session's
    matched = [o for o in os_ if o.get("matched")]
    paper_fees = sum(o["paper_fee"] for o in os_ if "paper_fee" in o)
    priced_fees = sum(o.get("backtest_fee", o.get("paper_fee", 0.0)) for o in os_)
    deviation = abs(float(pnl["paper"]) - float(pnl["priced"])) / start_equity
    mismatches = sum(1 for d in ds if d["mismatch"])
    missing = sum(1 for d in ds if d["missing"])
    unverifiable = sum(1 for d in ds if d["unverifiable"])
    return {
        "session": session,
        "bars": int(pnl["bars"]),
        "decisions": len(ds) - missing,
        "decision_mismatches": mismatches,
        "missing_decisions": missing,
        "unverifiable_decisions": unverifiable,
        "orders": len([o for o in os_ if "paper_qty" in o]),
        "unmatched_orders": len([o for o in os_ if "paper_qty" in o and not o["matched"]]),
        "missed_orders": len([o for o in os_ if o.get("missed")]),
        "quantity_mismatches": sum(1 for o in matched if o["qty_deviation"] != 0.0),
        "fills_outside_slippage_model": sum(1 for o in matched if not o["within_slippage_model"]),
        "max_abs_deviation_bps": max((abs(o["deviation_bps"]) for o in matched), default=0.0),
        "mean_slippage_paper_bps": _mean([o["slippage_paper_bps"] for o in matched]),
        "mean_slippage_backtest_bps": _mean([o["slippage_backtest_bps"] for o in matched]),
        "fees_paper": paper_fees,
        "fees_backtest_priced": priced_fees,
        "fees_backtest": float(pnl["backtest_own_fees"]),
        "pnl_paper": float(pnl["paper"]),
        "pnl_backtest_priced": float(pnl["priced"]),
        "pnl_backtest": float(pnl["backtest"]),
        "start_equity": start_equity,
        "deviation": deviation,
        "within_bound": (
            mismatches == 0 and missing == 0 and unverifiable == 0 and deviation <= opts.bound
        ),
    }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _fees(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "paper": sum(r["fees_paper"] for r in rows),
        "priced": sum(r["fees_backtest_priced"] for r in rows),
        "backtest": sum(r["fees_backtest"] for r in rows),
    }


def _order_summary(orders: list[dict[str, Any]]) -> dict[str, Any]:
    matched = [o for o in orders if o.get("matched")]
    return {
        "compared": len(matched),
        "unmatched": len([o for o in orders if "paper_qty" in o and not o["matched"]]),
        "missed": len([o for o in orders if o.get("missed")]),
        "outside_slippage_model": sum(1 for o in matched if not o["within_slippage_model"]),
        "quantity_mismatches": sum(1 for o in matched if o["qty_deviation"] != 0.0),
        "max_abs_price_deviation": max((abs(o["price_deviation"]) for o in matched), default=0.0),
        "max_abs_deviation_bps": max((abs(o["deviation_bps"]) for o in matched), default=0.0),
    }


# --------------------------------------------------------------------------- files


def report_folder(out_root: str | Path, report: dict[str, Any]) -> Path:
    period = report["period"]
    return Path(out_root) / f"{PREFIX}{period['start']}_{period['end']}"


def write_report(report: dict[str, Any], out_root: str | Path) -> Path:
    """Write the report folder; returns it. JSON first, so a crash never leaves HTML alone."""
    folder = report_folder(out_root, report)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "report.json.tmp"
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(_finite(report)), indent=1))
    tmp.replace(folder / "report.json")
    images = _plots(report, folder)
    (folder / "report.html").write_text(_html(report, images), encoding="utf-8")
    return folder


def _finite(value: Any) -> Any:
    """NaN/inf would make invalid JSON: None instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def _plots(report: dict[str, Any], folder: Path) -> list[tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    curves = report["curves"]
    fig, ax = plt.subplots(figsize=(10, 4))
    for name, label in (
        ("paper_equity", "paper (ledger fills)"),
        ("backtest_priced_equity", "paper trades at backtest prices"),
        ("backtest_equity", "backtest (its own run)"),
    ):
        t = pd.to_datetime(curves[name]["t"], utc=True).tz_convert(None)
        ax.plot(t, curves[name]["equity"], label=label, linewidth=1.2)
    ax.set_title("Equity: paper versus backtest")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    out.append(("Equity", _save(fig, folder / "equity.png")))

    rows = report["sessions"]
    fig, ax = plt.subplots(figsize=(10, 3))
    days = pd.to_datetime([r["session"] for r in rows])
    ax.bar(days, [r["deviation"] for r in rows], width=0.8, color="tab:blue", label="deviation")
    failing = [d for d, r in zip(days, rows, strict=True) if not r["within_bound"]]
    if failing:
        ax.scatter(
            failing,
            [0.0] * len(failing),
            marker="x",
            color="tab:red",
            s=14,
            label="not within bound (decision differs, missing, unverifiable or too far)",
        )
    ax.axhline(report["verdict"]["bound"], color="black", linestyle="--", label="bound")
    ax.set_title("Session deviation |paper PnL - backtest-priced PnL| / start equity")
    ax.legend(loc="upper left", fontsize=8)
    out.append(("Deviation per session", _save(fig, folder / "deviation.png")))

    matched = [o for o in report["orders"] if o.get("matched")]
    fig, ax = plt.subplots(figsize=(10, 3))
    if matched:
        t = pd.to_datetime([o["fill_bar"] for o in matched], utc=True).tz_convert(None)
        ax.scatter(t, [o["deviation_bps"] for o in matched], s=12, label="paper - backtest")
        ax.scatter(
            t, [o["slippage_paper_bps"] for o in matched], s=8, marker="x", label="paper slippage"
        )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_title("Fill price deviation and slippage (bps, positive = worse for the account)")
    ax.legend(loc="best")
    out.append(("Fills", _save(fig, folder / "fills.png")))
    return out


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


_CSS = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;"
    "font-size:12px;margin-bottom:1em}td,th{border:1px solid #ccc;padding:2px 6px;"
    "text-align:right}th{background:#eee}.bad{background:#fdd}.ok{background:#dfd}"
    "img{max-width:100%}"
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:,.6g}"
    return html.escape("" if value is None else str(value))


def _table(rows: list[dict[str, Any]], flag: str | None = None, limit: int = 500) -> str:
    if not rows:
        return "<p>none</p>"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows[:limit]:
        css = "" if flag is None else (" class=ok" if r.get(flag) else " class=bad")
        body.append(f"<tr{css}>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns))
    more = f"<p>{len(rows) - limit} more rows in report.json</p>" if len(rows) > limit else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _html(report: dict[str, Any], images: list[tuple[str, Path]]) -> str:
    period = report["period"]
    verdict = report["verdict"]
    summary = report["summary"]
    title = f"Paper versus backtest {period['start']} .. {period['end']}"
    curves = [
        {"curve": name, **{k: v for k, v in summary[name].items()}}
        for name in ("paper", "backtest_priced", "backtest")
    ]
    deviating = [
        o
        for o in report["orders"]
        if not o.get("matched") or not o.get("within_slippage_model", True)
    ]
    differing = [
        d for d in report["decisions"] if d["mismatch"] or d["missing"] or d["unverifiable"]
    ]
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        "<h2>Verdict</h2>",
        _table([verdict], "within_bound"),
        "<p>A session is within bound when every decision equals the backtest's, none is "
        "missing or unverifiable (the stored bars cannot warm the features yet), and "
        "|paper PnL - PnL of the same trades at the backtest's prices and fees| "
        "/ the session's start equity is at most the bound.</p>",
        "<h2>PnL, Sharpe, fees</h2>",
        _table(curves),
        "<h2>Decisions and orders</h2>",
        _table([{**summary["decisions"], **summary["orders"]}]),
    ]
    for caption, path in images:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' ")
        parts.append(f"src='data:image/png;base64,{data}'>")
    parts += [
        "<h2>Sessions</h2>",
        _table(report["sessions"], "within_bound"),
        "<h2>Decisions that differ or are missing</h2>",
        _table(differing),
        "<h2>Orders outside the slippage model, unmatched or missed</h2>",
        _table(deviating),
        "<h2>Inputs</h2><pre>",
        html.escape(json.dumps(report["inputs"], indent=1)),
        "</pre></body></html>",
    ]
    return "\n".join(parts)
