"""Book fills into the ledger, mark positions to the latest bar close, log PnL as JSON lines.

The bus side of the monitor; the state and every rule live in ``monitor.core.Accountant``.

On start the book is rebuilt from the ledger (fills, then the last bar close per symbol), so a
restarted monitor continues where it was, with the same equity. Fills published while the monitor
was down are back-filled from execution's journal (command ``fills``) at start and every
``reconcile_interval_s``; when fills wait in quarantine for an unknown order, execution's ``orders``
command is asked too, and a fill whose order becomes known is booked then, exactly once.

Subscriptions: ``fill.`` ``order.`` ``position.`` ``bar.`` for the ledger; ``signal.`` (decisions:
model version and decision bar close, for slippage and per-model figures), ``model.status`` and
``hb.execution`` (kill switch, broker connection), ``hb.marketdata`` (quarantined bars, epoch)
for the dashboard and the alerts; ``hb.trainer`` (its retraining summary, shown when
``<model root>/retrain.json`` cannot be read: ``monitor.retraining``); ``shadow.`` (a candidate
model's would-be targets) is recorded in its own ledger table for the live-versus-shadow
comparison and never booked (``monitor.shadow``).

Every ``dashboard_interval_s`` the equity is sampled, the alert rules are evaluated (transitions
only are logged, see ``monitor.alerts``) and the dashboard's snapshot is rebuilt for its live
stream. Execution's ``status`` command is asked every ``EXECUTION_STATUS_INTERVAL_S`` as well; its
heartbeat says the same every second, whichever is newer is shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

from monitor import reports, view
from monitor.alerts import AlertBook, AlertRules, Facts, WebhookSender, conditions, drawdown_pct
from monitor.config import MonitorSettings
from monitor.core import Accountant
from monitor.gate import UNKNOWN_ORDER
from monitor.ledger import Ledger
from monitor.live import Observer
from monitor.metrics import MonitorMetrics
from monitor.retraining import RetrainFile
from monitor.view import slippage_bps
from shared.accounting import Book
from shared.bus import heartbeat_loop
from shared.command_channel import CommandError
from shared.logs import event
from shared.messages import Message, PnL, ShadowTarget, TargetPosition
from shared.runtime import BusConnection
from shared.validate import problem

log = logging.getLogger("monitor")

JOURNAL_LIMIT = 5_000  # orders asked from execution's journal when fills wait for their order
EXECUTION_STATUS_INTERVAL_S = 5.0
REPORTS_REFRESH_S = 10.0  # how often the comparison reports are re-read
ALWAYS_ON = ("broker_disconnected", "kill_switch", "model_swapped", "model_refused")
__all__ = ["MonitorService", "slippage_bps"]  # slippage_bps: re-exported, it lived here


class MonitorService:
    def __init__(self, settings: MonitorSettings, bus: BusConnection) -> None:
        self.settings = settings
        self.bus = bus
        self.ledger = Ledger(settings.ledger_path)  # LedgerError names the file
        self.accountant = Accountant(self.ledger, settings.initial_cash)
        self.subscriber = bus.subscriber(
            [
                "fill.",
                "order.",
                "position.",
                "bar.",
                "signal.",
                "shadow.",
                "model.status",
                "hb.execution",
                "hb.marketdata",
                "hb.trainer",  # its retraining summary (monitor.retraining)
            ]
        )
        self.execution = bus.command_client("execution")
        self.metrics = MonitorMetrics()
        self.observer = Observer(self.metrics.observe_latency, self.metrics.observe_delivery)
        self.observer.load_curve(self.ledger.pnl_history())
        self.observer.record_equity(self.book.equity)
        self.rules = AlertRules(
            drawdown_pct=settings.alert_drawdown_pct,
            daily_loss=settings.alert_daily_loss,
            stale_bar_s=settings.alert_stale_bar_s,
            backtest_deviation=settings.alert_backtest_deviation,
        )
        self.alerts = AlertBook()
        self.webhook = (
            WebhookSender(settings.alert_webhook_url, settings.alert_webhook_timeout_s, self.alerts)
            if settings.alert_webhook_url
            else None
        )
        self.metrics.attach(self)
        self.snapshot: dict[str, Any] = {}
        self.snapshot_seq = 0
        self.snapshot_changed = asyncio.Event()
        self.model_cache: tuple[tuple[int, ...], dict[str, Any]] | None = None  # monitor.view
        self.shadow_cache: tuple[float, tuple[int, int], float, list[Any]] | None = None
        self._comparison: tuple[float, dict[str, Any]] | None = None
        self.retrain_file = RetrainFile(settings.model_dir)

    @property
    def book(self) -> Book:
        return self.accountant.book

    @property
    def fills_booked(self) -> int:
        return self.accountant.fills_booked

    # ------------------------------------------------------------------ pnl
    def pnl_message(self) -> PnL:
        return PnL(
            account=self.settings.account,
            realized=self.book.realized,
            unrealized=self.book.unrealized,
            fees=self.book.fees,
            equity=self.book.equity,
            positions=self.accountant.positions(),
            ts_event=time.time_ns(),
        )

    def publish_pnl(self) -> None:
        pnl = self.bus.publisher.publish(self.pnl_message())
        assert isinstance(pnl, PnL)
        self.ledger.record_pnl(pnl)
        event(log, "pnl", **self.accountant.pnl_log_fields())
        self.accountant.changed = False

    # ------------------------------------------------------------------ loops
    async def consume(self) -> None:
        while True:
            message = await self.subscriber.recv()
            self.accountant.handle_safely(message)  # never raises
            self.observe_safely(message)

    def observe_safely(self, message: Message) -> None:
        try:
            if isinstance(message, TargetPosition):
                self.ledger.record_signal(message)
            elif isinstance(message, ShadowTarget) and problem(message) is None:
                self.ledger.record_shadow(message)  # recorded for comparison, never booked
            self.observer.observe(message)
        except Exception:  # the dashboard's view must not stop the ledger
            log.exception("observe_failed")

    async def pnl_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.pnl_interval_s)
            try:
                if self.accountant.changed:
                    self.publish_pnl()
                self._check_positions()
            except Exception:
                log.exception("pnl_failed")

    def _check_positions(self) -> None:
        for symbol, broker_qty in self.accountant.broker_positions.items():
            ledger_qty = self.book.symbol(symbol).quantity
            if abs(broker_qty - ledger_qty) > 1e-9:
                event(
                    log,
                    "position_mismatch",
                    logging.WARNING,
                    symbol=symbol,
                    broker=broker_qty,
                    ledger=ledger_qty,
                )

    async def reconcile_once(self) -> int:
        """One back-fill pass: fills since shortly before the last booked one, then orders when
        fills wait for theirs. Returns how many fills were booked."""
        timeout = self.bus.settings.command_timeout_s
        rows = await self.execution.request(
            "fills",
            {"since_ns": max(0, self.ledger.last_fill_ts() - 10**12)},
            timeout_s=timeout,
        )
        before = self.accountant.counters["released"]
        booked = self.accountant.backfill(rows if isinstance(rows, list) else [])
        if self.ledger.quarantine_counts().get(UNKNOWN_ORDER):
            orders = await self.execution.request(
                "orders", {"limit": JOURNAL_LIMIT}, timeout_s=timeout
            )
            journal = orders.get("journal", []) if isinstance(orders, dict) else []
            self.accountant.register_journal(journal if isinstance(journal, list) else [])
        return booked + self.accountant.counters["released"] - before

    async def reconcile_loop(self) -> None:
        warned = False
        while True:
            try:
                await self.reconcile_once()
                warned = False
            except CommandError as exc:
                if not warned:  # execution may simply not be up yet
                    event(log, "backfill_unavailable", logging.WARNING, error=str(exc)[:200])
                    warned = True
            except Exception:
                log.exception("backfill_failed")
            await asyncio.sleep(self.settings.reconcile_interval_s)

    # ------------------------------------------------------------------ commands
    def status_detail(self) -> dict[str, Any]:
        stats = self.subscriber.stats
        return {
            "ready": True,
            **self.accountant.status(),
            "malformed": stats.malformed,
            "bus_refused": stats.refused.snapshot(),  # refused by the subscriber's validation
            "gaps": stats.gaps,
            "initial_cash": self.settings.initial_cash,
            "equity_basis": "ledger: MONITOR_INITIAL_CASH + booked fills marked at the last bar",
        }

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status_detail()

    async def fills(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.ledger.fills()

    async def orders(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.ledger.order_events()

    async def quarantine(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"quarantine": self.ledger.quarantined(), "conflicts": self.ledger.conflicts()}

    async def pnl(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            **msgspec.to_builtins(self.pnl_message()),
            "initial_cash": self.settings.initial_cash,
        }

    # ------------------------------------------------------------------ dashboard, alerts
    def peak_equity(self) -> float:
        return max(self.observer.peak_equity, self.book.equity)

    def drawdown_pct(self) -> float:
        return drawdown_pct(self.book.equity, self.peak_equity())

    def daily_pnl(self) -> float:
        start = self.observer.day_start_equity
        return self.book.equity - start if start == start else 0.0  # NaN before the first tick

    def alert_names(self) -> list[str]:
        names = [
            name
            for name, limit in (
                ("drawdown", self.rules.drawdown_pct),
                ("daily_loss", self.rules.daily_loss),
                ("stale_market_data", self.rules.stale_bar_s),
                ("backtest_deviation", self.rules.backtest_deviation),
            )
            if limit > 0
        ]
        return names + list(ALWAYS_ON)

    def tick(self) -> list[dict[str, Any]]:
        """Sample equity, evaluate the alert rules, rebuild the dashboard snapshot."""
        self.observer.record_equity(self.book.equity)
        execution = self.observer.execution
        comparison = self.comparison()
        facts = Facts(
            equity=self.book.equity,
            peak_equity=self.peak_equity(),
            day_start_equity=self.observer.day_start_equity,
            bar_age_s=self.observer.bar_age_s(),
            broker_connected=None if execution is None else bool(execution.get("broker_connected")),
            killed=None if execution is None else bool(execution.get("killed")),
            backtest_deviation=comparison["max_deviation"],
            backtest_period=comparison["latest"] or "",
        )
        transitions = self.alerts.update(conditions(self.rules, facts))
        while self.observer.model_events:
            name, message = self.observer.model_events.pop(0)
            transitions.append(self.alerts.event(name, message))
        if transitions and self.webhook is not None:
            self.webhook.wake.set()
        self.snapshot = self.dashboard()
        self.snapshot_seq += 1
        self.snapshot_changed.set()
        self.snapshot_changed = asyncio.Event()
        return transitions

    async def tick_loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("tick_failed")
            await asyncio.sleep(self.settings.dashboard_interval_s)

    async def execution_status_loop(self) -> None:
        """Execution's ``status`` over the command client (kill switch, broker connection)."""
        while True:
            try:
                detail = await self.execution.request("status", {}, timeout_s=2.0)
                if isinstance(detail, dict):
                    self.observer.on_execution_status(detail, "status command")
            except CommandError:
                pass  # not up, or busy: the heartbeat path still reports it
            except Exception:
                log.exception("execution_status_failed")
            await asyncio.sleep(EXECUTION_STATUS_INTERVAL_S)

    def model_performance(self) -> dict[str, Any]:
        return view.model_performance(self)

    def dashboard(self) -> dict[str, Any]:
        return view.snapshot(self)

    def comparison(self) -> dict[str, Any]:
        """The newest paper-vs-backtest report's summary, re-read at most every
        ``REPORTS_REFRESH_S`` (the files change only when ``make compare`` runs)."""
        now = time.monotonic()
        if self._comparison is None or now - self._comparison[0] >= REPORTS_REFRESH_S:
            self._comparison = (now, reports.summary(self.settings.reports_dir))
        return self._comparison[1]

    async def dashboard_json(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.snapshot or self.dashboard()

    async def alerts_json(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.alerts.snapshot(recent=200)

    async def heartbeats(self) -> None:
        await heartbeat_loop(
            self.bus.publisher,
            "monitor",
            self.bus.settings.heartbeat_interval_s,
            self.status_detail,
        )

    def close(self) -> None:
        self.subscriber.close()
        self.execution.close()
        self.ledger.close()
