"""Evaluation plots (matplotlib, Agg, no pyplot state) and one self-contained HTML report.

Every plot function takes ``BacktestResult`` objects (``shared.backtest``) and writes one PNG.
``write_html`` embeds the PNGs as base64 data URIs with inline CSS: the report opens offline,
from an e-mail or a CI artifact, with no other file next to it.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shared.backtest import BacktestResult

__all__ = [
    "monthly_returns",
    "plot_drawdowns",
    "plot_equity",
    "plot_monthly_heatmap",
    "plot_positions",
    "plot_return_distribution",
    "write_html",
]

_PNG_META = {"Software": None}  # no matplotlib version in the file: stable bytes across runs
_DPI = 100


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, metadata=_PNG_META)
    return path


def _naive(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return index.tz_convert(None) if index.tz is not None else index


def plot_equity(results: Sequence[BacktestResult], path: Path, title: str = "") -> Path:
    """Equity curves of all strategies on one chart."""
    fig = Figure(figsize=(11, 5))
    ax = fig.add_subplot(1, 1, 1)
    for r in results:
        ax.plot(_naive(r.index), r.equity, label=r.name, linewidth=1.2)
    if results:
        ax.axhline(results[0].account.initial_cash, color="grey", linewidth=0.8, linestyle=":")
    ax.set_title(title or "Equity")
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, path)


def plot_drawdowns(results: Sequence[BacktestResult], path: Path) -> Path:
    """Drawdown (fraction below the running peak) of every strategy."""
    fig = Figure(figsize=(11, 4))
    ax = fig.add_subplot(1, 1, 1)
    for r in results:
        dd = r.frame()["drawdown"].to_numpy()
        ax.plot(_naive(r.index), -100.0 * dd, label=r.name, linewidth=1.0)
    ax.set_title("Drawdown")
    ax.set_ylabel("% below peak")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_positions(result: BacktestResult, path: Path) -> Path:
    """Close price with the strategy's fills marked (buys ^, sells v) and its position below."""
    fig = Figure(figsize=(11, 6))
    ax = fig.add_subplot(2, 1, 1)
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax)
    t = _naive(result.index)
    ax.plot(t, result.close, color="black", linewidth=0.9, label="close")
    fills = result.fills
    if len(fills):
        ft = _naive(pd.DatetimeIndex(fills["time"]))
        buy = fills["qty"].to_numpy() > 0
        ax.scatter(
            ft[buy],
            fills["price"].to_numpy()[buy],
            marker="^",
            color="tab:green",
            s=36,
            label="buy",
            zorder=3,
        )
        ax.scatter(
            ft[~buy],
            fills["price"].to_numpy()[~buy],
            marker="v",
            color="tab:red",
            s=36,
            label="sell",
            zorder=3,
        )
    ax.set_title(f"{result.name}: price and trades")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax2.step(t, result.targets, where="post", color="tab:blue", linewidth=1.0)
    ax2.fill_between(t, 0, result.targets, step="post", alpha=0.25, color="tab:blue")
    ax2.set_ylim(-1.1, 1.1)
    ax2.set_ylabel("target position")
    ax2.grid(alpha=0.3)
    return _save(fig, path)


def monthly_returns(result: BacktestResult) -> pd.DataFrame:
    """Calendar-month returns (rows years, columns 1..12), in percent."""
    idx = _naive(result.index)
    eq = pd.Series(result.equity, index=idx)
    month_end = eq.groupby([idx.year, idx.month]).last()
    prev = month_end.shift(1)
    prev.iloc[0] = result.account.initial_cash
    rets = (month_end / prev - 1.0) * 100.0
    rets.index = pd.MultiIndex.from_tuples(list(rets.index), names=["year", "month"])
    table = rets.unstack("month")
    return table.reindex(columns=range(1, 13))


def plot_monthly_heatmap(result: BacktestResult, path: Path) -> Path:
    """Heat map of monthly returns (percent) of one strategy."""
    table = monthly_returns(result)
    values = table.to_numpy(dtype=np.float64)
    fig = Figure(figsize=(11, 1.2 + 0.5 * max(len(table), 1)))
    ax = fig.add_subplot(1, 1, 1)
    finite = values[np.isfinite(values)]
    lim = float(np.max(np.abs(finite))) if finite.size else 1.0
    im = ax.imshow(values, cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(12))
    ax.set_xticklabels(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    )
    ax.set_yticks(range(len(table)))
    ax.set_yticklabels([str(y) for y in table.index])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if math.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="%")
    ax.set_title(f"{result.name}: monthly returns (%)")
    return _save(fig, path)


def plot_return_distribution(results: Sequence[BacktestResult], path: Path) -> Path:
    """Histogram of per-bar returns of every strategy (bars with a position only)."""
    fig = Figure(figsize=(11, 4))
    ax = fig.add_subplot(1, 1, 1)
    series = []
    for r in results:
        ret = r.frame()["return"].to_numpy() * 100.0
        ret = ret[(r.qty != 0) & np.isfinite(ret)]
        series.append((r.name, ret))
    allv = np.concatenate([s for _, s in series]) if series else np.zeros(0)
    if allv.size:
        lo, hi = np.percentile(allv, [0.5, 99.5])
        bins: Any = np.linspace(lo, hi, 61) if hi > lo else 30
        for name, ret in series:
            if ret.size:
                ax.hist(ret, bins=bins, alpha=0.45, label=f"{name} (n={ret.size})")
    ax.set_title("Distribution of per-bar returns while in the market")
    ax.set_xlabel("% per bar")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(loc="best")
    return _save(fig, path)


# ------------------------------------------------------------------------------ HTML

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.k,th.k{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
.small{color:#666;font-size:12px}code{font-size:12px}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:,.6g}" if abs(value) < 1e5 else f"{value:,.0f}"
        return f"{value:,.4f}"
    return html.escape(str(value))


def _kv_table(items: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td class=k>{html.escape(str(k))}</td><td class=k><code>{_fmt(v)}</code></td></tr>"
        for k, v in items.items()
    )
    return f"<table>{rows}</table>"


def _metrics_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    names = list(metrics)
    keys: list[str] = []
    for m in metrics.values():
        keys += [k for k in m if k not in keys and not isinstance(m[k], dict | list)]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        f"<tr><td class=k>{html.escape(k)}</td>"
        + "".join(f"<td>{_fmt(metrics[n].get(k))}</td>" for n in names)
        + "</tr>"
        for k in keys
    )
    return f"<table><tr><th class=k>metric</th>{head}</tr>{body}</table>"


def _frame_table(df: pd.DataFrame, max_rows: int = 200) -> str:
    shown = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>"
        for row in shown.itertuples(index=False, name=None)
    )
    more = (
        f"<p class=small>{len(df) - max_rows} more rows in trades.csv</p>"
        if len(df) > max_rows
        else ""
    )
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def write_html(
    path: Path,
    *,
    title: str,
    metrics: Mapping[str, Mapping[str, Any]],
    images: Sequence[tuple[str, Path]],
    meta: Mapping[str, Any],
    trades: pd.DataFrame | None = None,
) -> Path:
    """One self-contained HTML file: metadata, metrics table, embedded PNGs, trades."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Run</h2>",
        _kv_table(meta),
        "<h2>Metrics</h2>",
        _metrics_table(metrics),
    ]
    for caption, img in images:
        data = base64.b64encode(Path(img).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(caption)}</h2>")
        parts.append(f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>")
    if trades is not None:
        parts.append("<h2>Trades</h2>")
        parts.append(_frame_table(trades))
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
