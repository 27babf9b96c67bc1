"""What the monitor sees live, beside the ledger: bars, execution's state, model status, latency,
and the equity curve with its peak and the day's first figure.

``Observer.observe(message)`` takes every bus message after the accountant (never raises out of
the service's loop: the service guards it). Latencies are measured on the monitor's own clock,
between the moments *it* received two related messages (bar -> signal for that bar, signal ->
order event for that decision, order submitted -> first fill), so they include bus delivery but
no cross-machine clock skew. ``signal_to_ack`` ends at the broker's acknowledgement (the
order's ``acknowledged`` event). ``bus_delay`` (receive time minus the producer's ``ts_publish``)
does compare two clocks: it is only meaningful when the producers share the monitor's host clock.

Reconnects are counted as the monitor sees them: the broker's when execution's status goes from
disconnected back to connected (the first connection after a start is not one), marketdata's
when a bar carries a new ``epoch`` (bumped on every marketdata start and reconnect to its
source). Marketdata's heartbeat detail gives the bars it quarantined (``quarantined``) and its
``epoch`` when it reports them.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.messages import Bar, Fill, Heartbeat, Message, ModelStatus, OrderEvent, TargetPosition

PENDING = 10_000  # decisions / orders remembered for latency matching
WINDOW = 1_000  # latency samples kept for the dashboard's percentiles
CURVE = 5_000  # equity points kept in memory (and loaded from the ledger at start)
LATENCIES = ("bar_to_signal", "signal_to_order", "signal_to_ack", "order_to_fill")


def _bounded_put(store: OrderedDict[Any, Any], key: Any, value: Any, limit: int = PENDING) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def utc_day(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, UTC).date().isoformat()


class Observer:
    def __init__(
        self,
        on_latency: Callable[[str, float], None] | None = None,
        on_delivery: Callable[[str, float], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.clock_ns = clock_ns
        self.started_ns = clock_ns()
        self.on_latency = on_latency or (lambda name, seconds: None)
        self.on_delivery = on_delivery or (lambda kind, seconds: None)
        self.bars: dict[str, dict[str, Any]] = {}  # symbol -> last bar seen
        self.last_bar_ns: int | None = None  # when the monitor last received any bar
        self.execution: dict[str, Any] | None = None  # execution's status detail
        self.execution_seen_ns: int | None = None
        self.execution_source = ""
        self.marketdata: dict[str, Any] | None = None  # marketdata's heartbeat detail
        self.trainer_retrain: dict[str, Any] | None = None  # hb.trainer's "retrain" summary
        self.epoch: int | None = None  # the last bar's marketdata epoch
        self.reconnects: dict[str, int] = {"broker": 0, "marketdata": 0}
        self._broker_connected_once = False
        self.models: dict[str, dict[str, Any]] = {}  # inference instance -> its last status
        self.model_events: list[tuple[str, str]] = []  # (alert name, message) not yet raised
        self.latency: dict[str, deque[float]] = {n: deque(maxlen=WINDOW) for n in LATENCIES}
        self._bar_seen: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._signal_seen: OrderedDict[str, int] = OrderedDict()  # order_ref -> received ns
        self._order_seen: OrderedDict[str, int] = OrderedDict()  # order_ref -> submitted ns
        self._acked: OrderedDict[str, int] = OrderedDict()  # order_refs acknowledged
        self.curve: deque[tuple[float, float]] = deque(maxlen=CURVE)  # (ts_s, equity)
        self.peak_equity = -math.inf
        self.day = ""
        self.day_start_equity = math.nan

    # ------------------------------------------------------------------ messages
    def observe(self, message: Message) -> None:
        now = self.clock_ns()
        if message.ts_publish:
            self.on_delivery(message.topic_kind, (now - message.ts_publish) / 1e9)
        if isinstance(message, Bar):
            self.bars[message.symbol] = {
                "seq": message.seq,
                "close": message.close,
                "ts_event": message.ts_event,
                "received_ns": now,
            }
            self.last_bar_ns = now
            if self.epoch is not None and message.epoch != self.epoch:
                self.reconnects["marketdata"] += 1
            self.epoch = message.epoch
            _bounded_put(self._bar_seen, (message.symbol, message.seq), now)
        elif isinstance(message, TargetPosition):
            ref = f"{message.strategy}-{message.symbol}-{message.bar_seq}"
            if ref not in self._signal_seen:
                _bounded_put(self._signal_seen, ref, now)
                bar_ns = self._bar_seen.get((message.symbol, message.bar_seq))
                if bar_ns is not None:
                    self._latency("bar_to_signal", now - bar_ns)
        elif isinstance(message, OrderEvent):
            if message.status == "submitted" and message.order_ref not in self._order_seen:
                _bounded_put(self._order_seen, message.order_ref, now)
                signal_ns = self._signal_seen.get(message.order_ref)
                if signal_ns is not None:
                    self._latency("signal_to_order", now - signal_ns)
            elif message.status == "acknowledged" and message.order_ref not in self._acked:
                _bounded_put(self._acked, message.order_ref, now)
                signal_ns = self._signal_seen.get(message.order_ref)
                if signal_ns is not None:
                    self._latency("signal_to_ack", now - signal_ns)
        elif isinstance(message, Fill):
            submitted = self._order_seen.pop(message.order_ref, None)  # first fill only
            if submitted is not None:
                self._latency("order_to_fill", now - submitted)
        elif isinstance(message, Heartbeat) and message.service == "execution":
            self.on_execution_status(dict(message.detail), "heartbeat", now)
        elif isinstance(message, Heartbeat) and message.service == "marketdata":
            self.marketdata = {**message.detail, "received_ns": now}
        elif isinstance(message, Heartbeat) and message.service == "trainer":
            retrain = message.detail.get("retrain")
            self.trainer_retrain = dict(retrain) if isinstance(retrain, dict) else None
        elif isinstance(message, ModelStatus):
            self.on_model_status(message, now)

    def _latency(self, name: str, elapsed_ns: int) -> None:
        seconds = max(0.0, elapsed_ns / 1e9)
        self.latency[name].append(seconds)
        self.on_latency(name, seconds)

    def on_execution_status(
        self, detail: dict[str, Any], source: str, now: int | None = None
    ) -> None:
        was = None if self.execution is None else self.execution.get("broker_connected")
        now_connected = detail.get("broker_connected") is True
        if was is False and now_connected and self._broker_connected_once:
            self.reconnects["broker"] += 1  # the first connection after start is no reconnect
        self._broker_connected_once = self._broker_connected_once or now_connected
        self.execution = detail
        self.execution_seen_ns = self.clock_ns() if now is None else now
        self.execution_source = source

    def on_model_status(self, status: ModelStatus, now: int) -> None:
        before = self.models.get(status.instance)
        self.models[status.instance] = {
            "instance": status.instance,
            "serving_version": status.serving_version,
            "requested_version": status.requested_version,
            "accepted": status.accepted,
            "reason": status.reason,
            "received_ns": now,
        }
        if not status.accepted:
            self.model_events.append(
                (
                    "model_refused",
                    f"{status.instance} refused model {status.requested_version!r}: "
                    f"{status.reason[:200]} (still serving {status.serving_version!r})",
                )
            )
        elif before is None or before["serving_version"] != status.serving_version:
            was = "(first status seen)" if before is None else repr(before["serving_version"])
            self.model_events.append(
                (
                    "model_swapped",
                    f"{status.instance} now serves {status.serving_version!r}, was {was}",
                )
            )

    # ------------------------------------------------------------------ equity
    def load_curve(self, points: list[tuple[int, float]]) -> None:
        for ts_ns, equity in points:
            self.record_equity(equity, ts_ns / 1e9)

    def record_equity(self, equity: float, ts_s: float | None = None) -> None:
        if not math.isfinite(equity):
            return
        ts_s = self.clock_ns() / 1e9 if ts_s is None else ts_s
        day = utc_day(ts_s)
        if day != self.day:
            self.day, self.day_start_equity = day, equity
        self.peak_equity = max(self.peak_equity, equity)
        if not self.curve or self.curve[-1][1] != equity or ts_s - self.curve[-1][0] >= 60:
            self.curve.append((ts_s, equity))

    # ------------------------------------------------------------------ health
    def bar_age_s(self) -> float:
        """Seconds since the last bar; since the monitor started when no bar came yet."""
        last = self.last_bar_ns if self.last_bar_ns is not None else self.started_ns
        return max(0.0, (self.clock_ns() - last) / 1e9)

    def bar_ages(self) -> dict[str, float]:
        now = self.clock_ns()
        return {s: max(0.0, (now - b["received_ns"]) / 1e9) for s, b in self.bars.items()}

    def execution_age_s(self) -> float | None:
        if self.execution_seen_ns is None:
            return None
        return max(0.0, (self.clock_ns() - self.execution_seen_ns) / 1e9)

    def marketdata_health(self) -> dict[str, Any]:
        """Quarantined bars and epoch from marketdata's heartbeat (None: not reported)."""
        detail = self.marketdata or {}
        quarantined = detail.get("quarantined")
        epoch = detail.get("epoch", self.epoch)
        return {
            "heard": self.marketdata is not None,
            "quarantined": quarantined if isinstance(quarantined, int | dict) else None,
            "epoch": epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
        }

    def quarantined_bars(self) -> int | None:
        value = self.marketdata_health()["quarantined"]
        if isinstance(value, dict):
            return sum(int(v) for v in value.values() if isinstance(v, int | float))
        return value

    def latency_summary(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, samples in self.latency.items():
            values = list(samples)
            out[name] = {
                "count": len(values),
                "p50_ms": _ms(percentile(values, 50)),
                "p95_ms": _ms(percentile(values, 95)),
                "max_ms": _ms(max(values) if values else None),
            }
        return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
