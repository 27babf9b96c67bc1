"""``/metrics``: the monitor's state in the Prometheus text format (``prometheus_client``).

Gauges and counters are read from the service at scrape time (one custom collector, so they can
never drift from the ledger and the book); latency histograms are observed as messages arrive
(see ``monitor.live`` for what each latency measures). Every metric is prefixed ``monitor_``.
One registry per service, not the global one, so tests can build several.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from monitor.service import MonitorService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class MonitorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "monitor_latency_seconds",
            "Time between related messages as received by the monitor "
            "(bar_to_signal, signal_to_order, order_to_fill)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.delivery = Histogram(
            "monitor_bus_delivery_seconds",
            "Receive time minus the producer's ts_publish, per message kind "
            "(compares two clocks: meaningful on one host)",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def attach(self, service: MonitorService) -> None:
        self.registry.register(_StateCollector(service))

    def observe_latency(self, stage: str, seconds: float) -> None:
        self.latency.labels(stage).observe(seconds)

    def observe_delivery(self, kind: str, seconds: float) -> None:
        self.delivery.labels(kind).observe(max(0.0, seconds))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(
    kind: type[Any], name: str, doc: str, label: str, values: Mapping[str, float]
) -> Metric:
    family = kind(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([str(key)], float(value))
    return family


class _StateCollector(Collector):
    def __init__(self, service: MonitorService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        s = self.service
        book = s.book
        status = s.accountant.status()
        stats = s.subscriber.stats
        obs = s.observer
        yield _gauge("monitor_equity", "Equity from the ledger (account currency)", book.equity)
        yield _gauge("monitor_realized_pnl", "Realised PnL before fees", book.realized)
        yield _gauge("monitor_unrealized_pnl", "Unrealised PnL at the last marks", book.unrealized)
        yield _gauge("monitor_fees", "Commissions paid", book.fees)
        yield _gauge("monitor_peak_equity", "Highest equity seen", s.peak_equity())
        yield _gauge(
            "monitor_drawdown_ratio", "Equity below its peak, 0..1", s.drawdown_pct() / 100
        )
        yield _gauge("monitor_daily_pnl", "Equity minus the UTC day's first figure", s.daily_pnl())
        yield _labelled(
            GaugeMetricFamily,
            "monitor_position",
            "Signed position per symbol (ledger)",
            "symbol",
            s.accountant.positions(),
        )
        yield CounterMetricFamily(
            "monitor_fills", "Fills booked in the ledger", value=status["fills"]
        )
        yield _labelled(
            CounterMetricFamily,
            "monitor_order_events",
            "Order events recorded, per status",
            "status",
            s.ledger.order_status_counts(),
        )
        yield CounterMetricFamily(
            "monitor_orders_known", "Orders known from execution", value=status["orders_known"]
        )
        yield _labelled(
            CounterMetricFamily,
            "monitor_refusals",
            "Messages and fills refused or flagged by the monitor, per reason",
            "reason",
            dict(s.accountant.alerts.counts),
        )
        yield _labelled(
            CounterMetricFamily,
            "monitor_bus_refusals",
            "Frames refused by the monitor's bus subscriber, per reason",
            "reason",
            dict(stats.refused.counts),
        )
        yield _labelled(
            GaugeMetricFamily,
            "monitor_quarantined_fills",
            "Fills held in quarantine, per reason",
            "reason",
            status["quarantined"],
        )
        yield _gauge(
            "monitor_conflicts", "Fills conflicting with a known exec id", status["conflicts"]
        )
        yield CounterMetricFamily(
            "monitor_malformed_frames", "Undecodable frames", value=stats.malformed
        )
        yield CounterMetricFamily("monitor_sequence_gaps", "Messages missing", value=stats.gaps)
        yield CounterMetricFamily(
            "monitor_duplicates", "Duplicate messages dropped", value=stats.duplicates
        )
        yield CounterMetricFamily("monitor_messages", "Messages accepted", value=stats.received)
        yield _labelled(
            GaugeMetricFamily,
            "monitor_bar_age_seconds",
            "Seconds since the monitor received the last bar, per symbol",
            "symbol",
            obs.bar_ages(),
        )
        yield _gauge(
            "monitor_last_bar_age_seconds",
            "Seconds since any bar (since start when none came)",
            obs.bar_age_s(),
        )
        execution = obs.execution or {}
        seen = obs.execution is not None
        yield _gauge("monitor_execution_seen", "1 when execution's status is known", float(seen))
        age = obs.execution_age_s()
        if age is not None:
            yield _gauge("monitor_execution_status_age_seconds", "Age of that status", age)
        if seen:
            yield _gauge(
                "monitor_execution_killed", "Kill switch on", float(bool(execution.get("killed")))
            )
            yield _gauge(
                "monitor_broker_connected",
                "Execution reports its broker connected",
                float(bool(execution.get("broker_connected"))),
            )
        yield _labelled(
            CounterMetricFamily,
            "monitor_reconnects",
            "Reconnects seen: broker (execution back to connected), marketdata (a new epoch)",
            "source",
            obs.reconnects,
        )
        yield CounterMetricFamily(
            "monitor_order_rejections",
            "Orders rejected (order events with status rejected)",
            value=s.ledger.order_status_counts().get("rejected", 0),
        )
        yield _labelled(
            CounterMetricFamily,
            "monitor_dropped_frames",
            "Frames the monitor's subscriber dropped: malformed, duplicate, refused by validation",
            "reason",
            {
                "malformed": stats.malformed,
                "duplicate": stats.duplicates,
                "refused": sum(stats.refused.counts.values()),
            },
        )
        quarantined_bars = obs.quarantined_bars()
        if quarantined_bars is not None:
            yield _gauge(
                "monitor_marketdata_quarantined_bars",
                "Bars marketdata quarantined (its heartbeat's detail)",
                quarantined_bars,
            )
        epoch = obs.marketdata_health()["epoch"]
        if epoch is not None:
            yield _gauge("monitor_marketdata_epoch", "Marketdata's current epoch", epoch)
        yield _labelled(
            CounterMetricFamily,
            "monitor_decisions",
            "Decisions recorded in the ledger per model version (live: signal.*)",
            "version",
            s.ledger.signal_counts(),
        )
        yield CounterMetricFamily(
            "monitor_shadow_decisions",
            "Shadow targets recorded (shadow.*; never traded)",
            value=s.ledger.shadow_count(),
        )
        deviation = s.comparison()["max_deviation"]
        if deviation is not None:
            yield _gauge(
                "monitor_backtest_max_deviation",
                "verdict.max_deviation of the newest paper-vs-backtest report",
                deviation,
            )
        active = {name: 1.0 for name in s.alerts.active}
        for name in s.alert_names():
            active.setdefault(name, 0.0)
        yield _labelled(
            GaugeMetricFamily, "monitor_alert_active", "Alert holds now", "alert", active
        )
        yield _labelled(
            CounterMetricFamily,
            "monitor_alerts_fired",
            "Alert transitions to firing (and one-shot alerts)",
            "alert",
            dict(s.alerts.fired),
        )
        if s.webhook is not None:
            yield CounterMetricFamily(
                "monitor_alert_webhook_failures",
                "Webhook POSTs that failed",
                value=s.webhook.failed,
            )
