"""Alert rules and their transitions: pure rules, one state machine, an optional webhook.

``conditions(rules, facts)`` says which alerts hold now (name -> message). ``AlertBook.update``
compares that with what held before and returns the *transitions*: an alert fires once when its
condition starts to hold and clears once when it stops, however many ticks it lasts. One-shot
alerts (a model swapped or refused) go through ``AlertBook.event``. Every transition is logged
(WARNING when it fires, INFO when it clears), kept for the dashboard, counted for ``/metrics`` and
queued for the webhook.

``WebhookSender`` POSTs each transition as JSON to ``MONITOR_ALERT_WEBHOOK_URL``; a webhook that
fails (refused, times out, answers non-2xx) is logged and counted, never raised: alerts must not
stop the monitor. Its queue is bounded; when full the oldest waiting alert is dropped (counted).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.logs import event

log = logging.getLogger("monitor.alerts")

HISTORY = 200  # transitions kept for the dashboard
WEBHOOK_QUEUE = 100


@dataclass(frozen=True)
class AlertRules:
    drawdown_pct: float = 0.0  # 0 = off
    daily_loss: float = 0.0  # 0 = off
    stale_bar_s: float = 0.0  # 0 = off
    backtest_deviation: float = 0.0  # 0 = off


@dataclass(frozen=True)
class Facts:
    """What the rules look at, gathered by the service at each tick."""

    equity: float
    peak_equity: float
    day_start_equity: float
    bar_age_s: float | None = None  # since the last bar (or since start when none came)
    broker_connected: bool | None = None  # None: execution not heard from
    killed: bool | None = None
    backtest_deviation: float | None = None  # newest comparison's verdict.max_deviation
    backtest_period: str = ""


def drawdown_pct(equity: float, peak: float) -> float:
    if not (math.isfinite(equity) and math.isfinite(peak)) or peak <= 0 or equity >= peak:
        return 0.0
    return (peak - equity) / peak * 100.0


def conditions(rules: AlertRules, facts: Facts) -> dict[str, str]:
    """The alerts that hold for ``facts``: name -> human message."""
    active: dict[str, str] = {}
    dd = drawdown_pct(facts.equity, facts.peak_equity)
    if rules.drawdown_pct > 0 and dd >= rules.drawdown_pct:
        active["drawdown"] = (
            f"drawdown {dd:.2f}% >= {rules.drawdown_pct:g}% "
            f"(equity {facts.equity:.2f}, peak {facts.peak_equity:.2f})"
        )
    loss = facts.day_start_equity - facts.equity
    if rules.daily_loss > 0 and loss >= rules.daily_loss:
        active["daily_loss"] = (
            f"daily loss {loss:.2f} >= {rules.daily_loss:g} "
            f"(equity {facts.equity:.2f}, day start {facts.day_start_equity:.2f})"
        )
    if (
        rules.stale_bar_s > 0
        and facts.bar_age_s is not None
        and facts.bar_age_s >= rules.stale_bar_s
    ):
        active["stale_market_data"] = (
            f"no bar for {facts.bar_age_s:.1f} s (limit {rules.stale_bar_s:g} s)"
        )
    deviation = facts.backtest_deviation
    limit = rules.backtest_deviation
    if limit > 0 and deviation is not None and deviation > limit:
        active["backtest_deviation"] = (
            f"paper deviates from the backtest by {deviation:g} > {rules.backtest_deviation:g}"
            f" (report {facts.backtest_period or '?'}, verdict.max_deviation)"
        )
    if facts.broker_connected is False:
        active["broker_disconnected"] = "execution reports the broker disconnected"
    if facts.killed:
        active["kill_switch"] = "execution's kill switch is on"
    return active


class AlertBook:
    def __init__(self, clock: Callable[[], float] = time.time, history: int = HISTORY) -> None:
        self.clock = clock
        self.active: dict[str, dict[str, Any]] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self.fired: Counter[str] = Counter()
        self.outbox: deque[dict[str, Any]] = deque(maxlen=WEBHOOK_QUEUE)

    def update(self, now_active: dict[str, str]) -> list[dict[str, Any]]:
        """Record the conditions that hold now; returns the transitions (fired, cleared)."""
        transitions = []
        for name, message in now_active.items():
            if name not in self.active:
                record = self._record(name, "fired", message)
                self.active[name] = record
                transitions.append(record)
            else:
                self.active[name]["message"] = message  # the figures move; no new transition
        for name in [n for n in self.active if n not in now_active]:
            del self.active[name]
            transitions.append(self._record(name, "cleared", "condition no longer holds"))
        return transitions

    def event(self, name: str, message: str) -> dict[str, Any]:
        """A one-shot alert (it has no 'clear'): logged and sent once per call."""
        return self._record(name, "event", message)

    def _record(self, name: str, state: str, message: str) -> dict[str, Any]:
        record = {"alert": name, "state": state, "message": message, "ts": self.clock()}
        self.history.append(record)
        self.outbox.append(record)
        if state == "cleared":
            event(log, "alert_cleared", alert=name)
        else:
            self.fired[name] += 1
            event(log, "alert_fired", logging.WARNING, alert=name, state=state, message=message)
        return record

    def snapshot(self, recent: int = 20) -> dict[str, Any]:
        return {
            "active": list(self.active.values()),
            "recent": list(self.history)[-recent:][::-1],
            "fired": dict(self.fired),
        }


class WebhookSender:
    """Delivers ``AlertBook.outbox`` records to one URL; never raises."""

    def __init__(self, url: str, timeout_s: float, book: AlertBook) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.book = book
        self.sent = 0
        self.failed = 0
        self.wake = asyncio.Event()

    async def run(self) -> None:
        import aiohttp  # the monitor extra; imported here so the rules stay importable alone

        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.book.outbox:
                    record = self.book.outbox.popleft()
                    await self._post(session, record)

    async def _post(self, session: Any, record: dict[str, Any]) -> None:
        try:
            async with session.post(self.url, json={"source": "monitor", **record}) as reply:
                if reply.status >= 300:
                    raise RuntimeError(f"HTTP {reply.status}")
            self.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a webhook must never stop the monitor
            self.failed += 1
            event(
                log,
                "alert_webhook_failed",
                logging.WARNING,
                alert=record["alert"],
                error=f"{type(exc).__name__}: {exc}"[:200],
            )
