"""The dashboard's snapshot: one JSON-ready dict built from the service's state at each tick.

Served as ``/dashboard.json`` and pushed on ``/events``; the page (``monitor.dashboard``) renders
it and the browser tests compare it with the ledger. Everything here reads, nothing changes state.
Per-model figures come from the ledger (fills joined with the decisions that caused them);
live-versus-shadow from ``monitor.shadow``; the backtest beside the equity curve and the report
links from ``monitor.reports``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from monitor import retraining
from monitor.shadow import live_vs_shadow
from shared.accounting import Book

if TYPE_CHECKING:
    from monitor.service import MonitorService

RECENT = 20  # orders and fills on the dashboard
SHADOW_NOTE = (
    "would-be return of holding each decision's target from its bar's close to the next bar's "
    "close, no costs, over the newest 50,000 decisions of each kind (monitor.shadow); shadow "
    "targets are never traded"
)
SHADOW_WORK_RATIO = 20  # live-vs-shadow takes at most ~1/20 of the time (see shadow_table)
# Decisions compared, per role, newest first: 50,000 live + 50,000 shadow rows took ~1 s on two
# busy shared cores (200,000 each: ~4 s), and this runs on the monitor's event loop.
SHADOW_WINDOW = 50_000
EXECUTION_FIELDS = (
    "killed",
    "broker_connected",
    "halted_day",
    "reduce_only",
    "dead_man",
    "trading_blocked",
    "broker",
    "paper",
)
KILL_SWITCH_HOW = (
    "trip or re-arm it with execution's signed kill / rearm command as the operator identity "
    "(only the operator's key has the right); this page is read-only"
)


def slippage_bps(side: str, price: float, decision_close: float | None) -> float | None:
    """What the fill paid against the decision bar's close, in basis points (> 0 = worse)."""
    if decision_close is None or not decision_close > 0:
        return None
    sign = 1.0 if side == "BUY" else -1.0
    return round(sign * (price - decision_close) / decision_close * 10_000, 3)


def _empty() -> dict[str, Any]:
    return {"fills": 0, "notional": 0.0, "fees": 0.0, "realized": 0.0, "slip": []}


def model_performance(svc: MonitorService) -> dict[str, Any]:
    """Per model version: decisions, fills, fees, slippage and the PnL its fills realised
    (average cost, replayed from the ledger in booking order)."""
    ledger = svc.ledger
    signals = ledger.signal_counts()
    key = (svc.fills_booked, sum(signals.values()))
    if svc.model_cache is not None and svc.model_cache[0] == key:
        return svc.model_cache[1]
    replay = Book(initial_cash=0.0)
    versions: dict[str, dict[str, Any]] = {}
    recent: list[dict[str, Any]] = []
    for row in ledger.fills_in_context():
        realized = replay.apply_fill(
            row["symbol"], row["side"], row["quantity"], row["price"], row["commission"]
        )
        v = versions.setdefault(row["model_version"] or "unknown", _empty())
        v["fills"] += 1
        v["notional"] += row["quantity"] * row["price"]
        v["fees"] += row["commission"]
        v["realized"] += realized
        row["slippage_bps"] = slippage_bps(row["side"], row["price"], row["bar_close"])
        if row["slippage_bps"] is not None:
            v["slip"].append(row["slippage_bps"])
        recent.append(row)
    table = []
    for version in sorted(set(versions) | set(signals)):
        v = versions.get(version, _empty())
        slips = v.pop("slip")
        table.append(
            {
                "version": version,
                "signals": signals.get(version, 0),
                **{k: round(x, 6) if isinstance(x, float) else x for k, x in v.items()},
                "net_realized": round(v["realized"] - v["fees"], 6),
                "avg_slippage_bps": round(sum(slips) / len(slips), 3) if slips else None,
            }
        )
    result = {
        "known": bool(signals),
        "note": (
            "from inference's signals recorded in the ledger (signals table)"
            if signals
            else "the ledger does not know the model version yet: no signal.* message "
            "recorded (fills are listed as 'unknown')"
        ),
        "versions": table,
        "recent_fills": recent[-RECENT:][::-1],
    }
    svc.model_cache = (key, result)
    return result


def shadow_table(svc: MonitorService) -> list[dict[str, Any]]:
    """``live_vs_shadow`` over the newest ``SHADOW_WINDOW`` live and shadow decisions,
    recomputed when decisions arrived but at most once per ``SHADOW_WORK_RATIO`` times its own
    last duration: it must not take the monitor's loop (nor a core) from the ledger."""
    ledger = svc.ledger
    now = time.monotonic()
    key = (sum(ledger.signal_counts().values()), ledger.shadow_count())
    cached = svc.shadow_cache
    if cached is not None and (cached[1] == key or now - cached[0] < SHADOW_WORK_RATIO * cached[2]):
        return cached[3]
    rows = (
        live_vs_shadow(ledger.signal_rows(SHADOW_WINDOW), ledger.shadow_rows(SHADOW_WINDOW))
        if any(key)
        else []
    )
    svc.shadow_cache = (now, key, time.monotonic() - now, rows)
    return rows


def _curve(points: list[tuple[float, float]]) -> dict[str, list[float]]:
    peak, running = -float("inf"), []
    for _, equity in points:
        peak = max(peak, equity)
        running.append(round((peak - equity) / peak * 100, 6) if peak > 0 else 0.0)
    return {
        "t": [round(t, 3) for t, _ in points],
        "equity": [round(e, 2) for _, e in points],
        "drawdown_pct": running,
    }


def snapshot(svc: MonitorService) -> dict[str, Any]:
    obs = svc.observer
    book = svc.book
    status = svc.status_detail()
    models = dict(model_performance(svc))  # a copy: the result is cached
    recent_fills = models.pop("recent_fills")
    positions = [
        {
            "symbol": symbol,
            "quantity": b.quantity,
            "avg_cost": round(b.avg_cost, 6),
            "last_price": b.last_price,
            "unrealized": round(b.unrealized(), 2),
            "realized": round(b.realized, 2),
        }
        for symbol, b in sorted(book.symbols.items())
        if b.quantity != 0
    ][:50]
    execution = obs.execution
    comparison = svc.comparison()
    marketdata = obs.marketdata_health()
    return {
        "ts": time.time(),
        "account": svc.settings.account,
        "equity": round(book.equity, 2),
        "initial_cash": svc.settings.initial_cash,
        "realized": round(book.realized, 2),
        "unrealized": round(book.unrealized, 2),
        "fees": round(book.fees, 2),
        "peak_equity": round(svc.peak_equity(), 2),
        "drawdown_pct": round(svc.drawdown_pct(), 4),
        "daily_pnl": round(svc.daily_pnl(), 2),
        "curve": _curve(list(obs.curve)),
        "comparison": comparison,
        "positions": positions,
        "orders": svc.ledger.recent_order_events(RECENT),
        "fills": recent_fills,
        "last_fill": recent_fills[0] if recent_fills else None,
        "models": {
            **models,
            "instances": list(obs.models.values()),
            "shadow": {"rows": shadow_table(svc), "note": SHADOW_NOTE},
        },
        "health": {
            "last_bar_age_s": round(obs.bar_age_s(), 3),
            "bars": [
                {"symbol": sym, "age_s": round(age, 3), "close": obs.bars[sym]["close"]}
                for sym, age in sorted(obs.bar_ages().items())
            ][:50],
            "gaps": status["gaps"],
            "malformed": status["malformed"],
            "duplicates": svc.subscriber.stats.duplicates,
            "bus_refused": status["bus_refused"],
            "refused": status["alerts"],
            "quarantined": status["quarantined"],
            "conflicts": status["conflicts"],
            "quarantined_bars": marketdata["quarantined"],
            "marketdata_heard": marketdata["heard"],
            "epoch": marketdata["epoch"],
            "reconnects": dict(obs.reconnects),
            "latency": obs.latency_summary(),
        },
        "execution": {
            "known": execution is not None,
            "source": obs.execution_source,
            "age_s": obs.execution_age_s(),
            "kill_switch_how": KILL_SWITCH_HOW,
            **{k: (execution or {}).get(k) for k in EXECUTION_FIELDS},
        },
        "retrain": retraining.panel(svc.retrain_file.read(), obs.trainer_retrain),
        "alerts": svc.alerts.snapshot(),
        "alert_rules": {
            "drawdown_pct": svc.rules.drawdown_pct,
            "daily_loss": svc.rules.daily_loss,
            "stale_bar_s": svc.rules.stale_bar_s,
            "backtest_deviation": svc.rules.backtest_deviation,
            "webhook": svc.webhook is not None,
        },
    }
