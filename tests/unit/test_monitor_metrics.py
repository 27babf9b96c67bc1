"""``/metrics`` text parses with prometheus_client's own parser and carries the ledger's figures:
equity, PnL, positions, fills, orders, refusals per reason, quarantine, conflicts, bar age,
latency histograms; and the dashboard prices a fill against its decision bar's close."""

from __future__ import annotations

from pathlib import Path

import pytest
from monitor.service import slippage_bps
from msgspec.structs import replace
from prometheus_client.parser import text_string_to_metric_families

from shared.messages import TargetPosition
from tests.unit.test_monitor_alerts import T0, bar, feed, fill, make_service, order

pytestmark = pytest.mark.unit


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def signal(bar_seq: int = 1, close: float = 10.0, version: str = "v7") -> TargetPosition:
    return TargetPosition(
        symbol="AAPL",
        target_position=0.5,
        model_version=version,
        bar_seq=bar_seq,
        bar_close_ts=T0,
        bar_close=close,
        ts_event=T0,
    )


def test_metrics_text_parses_and_matches_the_book(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    feed(svc, bar(10.0, seq=1), signal(), order(), fill(10.1), bar(12.0, seq=2))
    feed(svc, fill(11.0, exec_id="e1"))  # the same exec id, another price: a conflict
    feed(svc, replace(fill(10.0, exec_id="q1"), order_ref="rl-AAPL-99"))  # no such order
    feed(svc, replace(fill(10.0, exec_id="bad"), quantity=0.0))  # refused
    svc.tick()
    text = svc.metrics.render().decode()
    got = samples(text)
    assert got[("monitor_equity", ())] == pytest.approx(10_000 + 100 * (12.0 - 10.1))
    assert got[("monitor_realized_pnl", ())] == 0
    assert got[("monitor_unrealized_pnl", ())] == pytest.approx(190.0)
    assert got[("monitor_position", (("symbol", "AAPL"),))] == 100
    assert got[("monitor_fills_total", ())] == 1
    assert got[("monitor_order_events_total", (("status", "submitted"),))] == 1
    assert got[("monitor_quarantined_fills", (("reason", "unknown_order"),))] == 1
    assert got[("monitor_conflicts", ())] == 1
    refusals = {
        dict(labels)["reason"]: v for (n, labels), v in got.items() if n == "monitor_refusals_total"
    }
    assert refusals["exec_id_conflict"] == 1
    assert refusals["quarantine:unknown_order"] == 1
    assert [v for r, v in refusals.items() if r.startswith("refused_fill:")] == [1]
    assert 0 <= got[("monitor_bar_age_seconds", (("symbol", "AAPL"),))] < 60
    assert got[("monitor_latency_seconds_count", (("stage", "bar_to_signal"),))] == 1
    assert got[("monitor_latency_seconds_count", (("stage", "signal_to_order"),))] == 1
    assert got[("monitor_latency_seconds_count", (("stage", "order_to_fill"),))] == 1
    assert got[("monitor_alert_active", (("alert", "drawdown"),))] == 0
    assert got[("monitor_execution_seen", ())] == 0
    svc.close()


def test_a_fill_is_priced_against_its_decision_bar_and_attributed_to_its_model(
    tmp_path: Path,
) -> None:
    svc = make_service(tmp_path)
    feed(svc, signal(close=10.0, version="v7"), order(), fill(10.05))
    svc.dashboard()
    view = svc.dashboard()  # twice: the per-model figures are cached, the view must not lose them
    assert view["fills"][0]["slippage_bps"] == pytest.approx(50.0)
    assert view["fills"][0]["model_version"] == "v7"
    assert view["models"]["known"] is True
    assert view["models"]["versions"][0]["version"] == "v7"
    assert view["models"]["versions"][0]["fills"] == 1
    svc.close()


def test_without_signals_the_dashboard_says_the_model_version_is_unknown(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    feed(svc, order(), fill(10.0))
    view = svc.dashboard()
    assert view["models"]["known"] is False
    assert "does not know the model version" in view["models"]["note"]
    assert view["fills"][0]["slippage_bps"] is None
    svc.close()


def test_slippage_sign() -> None:
    assert slippage_bps("BUY", 10.1, 10.0) == pytest.approx(100.0)
    assert slippage_bps("SELL", 10.1, 10.0) == pytest.approx(-100.0)
    assert slippage_bps("BUY", 10.0, None) is None
    assert slippage_bps("BUY", 10.0, 0.0) is None
