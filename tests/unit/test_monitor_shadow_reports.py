"""Shadow targets are recorded (idempotently) and compared with the live model, never traded;
the paper-vs-backtest reports are found, read and served read-only and path-traversal safe; the
deviation alert fires from the newest report; /metrics carries reconnects, rejections, dropped
frames, quarantined bars, the epoch and the shadow figures, parsed by prometheus_client."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from monitor import reports
from monitor.http import build_app
from monitor.shadow import live_vs_shadow
from monitor.view import shadow_table
from msgspec.structs import replace

from shared.messages import Heartbeat, OrderEvent, ShadowTarget, TargetPosition
from tests.unit.test_monitor_alerts import T0, bar, feed, make_service
from tests.unit.test_monitor_metrics import samples

pytestmark = pytest.mark.unit


def decision(kind: type, seq: int, close: float, target: float, version: str) -> Any:
    return kind(
        symbol="AAPL",
        target_position=target,
        model_version=version,
        bar_seq=seq,
        bar_close_ts=T0 + seq,
        bar_close=close,
        ts_event=T0 + seq,
    )


# ---------------------------------------------------------------------- shadow
def test_a_shadow_target_is_recorded_once_and_never_traded(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    shadow = decision(ShadowTarget, 1, 10.0, 1.0, "cand")
    feed(svc, bar(10.0), shadow, shadow, replace(shadow, ts_publish=5))  # the same one thrice
    assert svc.ledger.shadow_count() == 1
    assert svc.fills_booked == 0 and svc.ledger.known_order_count() == 0
    assert svc.book.symbol("AAPL").quantity == 0 and svc.ledger.signal_counts() == {}
    assert svc.observer.latency_summary()["bar_to_signal"]["count"] == 0  # not a live signal
    feed(svc, replace(shadow, target_position=float("nan")))  # refused, not recorded
    assert svc.ledger.shadow_count() == 1
    svc.close()


def test_live_versus_shadow_marks_each_target_to_the_next_close() -> None:
    closes = {1: 100.0, 2: 110.0, 3: 99.0, 4: 120.0}
    live = [_row("v1", s, closes[s], t) for s, t in ((1, 1.0), (2, 0.0), (3, 1.0))]
    shadow = [_row("cand", s, closes[s], t) for s, t in ((1, -1.0), (2, 1.0), (3, 0.5), (4, 1.0))]
    table = {(r["role"], r["version"]): r for r in live_vs_shadow(live, shadow)}
    v1 = table[("live", "v1")]
    # bar 1 -> 2: +10 %, bar 2: flat, bar 3 -> 4: +21.21 %
    assert v1["decisions"] == 3 and v1["marked"] == 3
    assert v1["return_pct"] == pytest.approx((0.1 + 0 + (120 / 99 - 1)) * 100, abs=1e-3)
    cand = table[("shadow", "cand")]
    assert cand["decisions"] == 4 and cand["marked"] == 3  # bar 4 is open: no next close
    expected = (-0.1 + (99 / 110 - 1) + 0.5 * (120 / 99 - 1)) * 100
    assert cand["return_pct"] == pytest.approx(expected, abs=1e-3)
    assert cand["bars_with_live"] == 3
    assert cand["live_on_same_bars_pct"] == pytest.approx(v1["return_pct"], abs=1e-3)


def _row(version: str, seq: int, close: float, target: float) -> dict[str, Any]:
    return {
        "model_version": version,
        "symbol": "AAPL",
        "bar_seq": seq,
        "bar_close": close,
        "target": target,
    }


def test_the_dashboard_shows_live_and_shadow_per_version(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    feed(
        svc,
        decision(TargetPosition, 1, 10.0, 1.0, "v1"),
        decision(ShadowTarget, 1, 10.0, -1.0, "cand"),
        decision(TargetPosition, 2, 11.0, 0.0, "v1"),
        decision(ShadowTarget, 2, 11.0, 0.0, "cand"),
    )
    rows = {r["role"]: r for r in svc.dashboard()["models"]["shadow"]["rows"]}
    assert rows["live"]["return_pct"] == pytest.approx(10.0)
    assert rows["shadow"]["return_pct"] == pytest.approx(-10.0)
    assert rows["shadow"]["live_on_same_bars_pct"] == pytest.approx(10.0)
    svc.close()


# ---------------------------------------------------------------------- reports
def write_report(root: Path, period: str, body: dict[str, Any] | str) -> Path:
    folder = root / f"{reports.PREFIX}{period}"
    folder.mkdir(parents=True)
    (folder / "report.html").write_text(f"<h1>{period}</h1><script>alert(1)</script>")
    text = body if isinstance(body, str) else json.dumps(body)
    (folder / "report.json").write_text(text)
    return folder


def test_without_a_report_the_dashboard_says_run_make_compare(tmp_path: Path) -> None:
    out = reports.summary(tmp_path / "missing")
    assert out["reports"] == [] and out["backtest"] is None and out["max_deviation"] is None
    assert out["note"] == "no comparison yet: run make compare"


@pytest.mark.parametrize(
    "curve",
    [
        {"t": [1_600_000_000, 1_600_086_400], "equity": [100.0, 101.5]},
        [[1_600_000_000_000_000_000, 100.0], [1_600_086_400_000_000_000, 101.5]],
        [
            {"ts": "2020-09-13T12:26:40Z", "equity": 100.0},
            {"ts": 1_600_086_400_000, "equity": 101.5},
        ],
    ],
)
def test_the_newest_report_gives_the_backtest_curve_and_deviation(tmp_path: Path, curve) -> None:
    old = write_report(tmp_path, "2026-01", {"verdict": {"max_deviation": 9.0}})
    os.utime(old / "report.json", (1, 1))
    write_report(
        tmp_path, "2026-02", {"verdict": {"max_deviation": 0.25}, "backtest": {"equity": curve}}
    )
    out = reports.summary(tmp_path)
    assert [r["period"] for r in out["reports"]] == ["2026-02", "2026-01"]
    assert out["latest"] == "2026-02" and out["max_deviation"] == 0.25
    assert out["backtest"] == {
        "t": [1_600_000_000.0, 1_600_086_400.0],
        "equity": [100.0, 101.5],
        "paper": None,
    }


def test_the_compare_reports_curves_are_read_with_the_paper_curve_on_the_same_bars(
    tmp_path: Path,
) -> None:
    """``monitor.compare_report`` writes ``curves.<name> = {"t": [ISO], "equity": [...]}``."""
    stamps = ["2016-01-04T21:00:00+00:00", "2016-01-05T21:00:00+00:00"]
    curves = {
        "backtest_equity": {"t": stamps, "equity": [1e6, 1.001e6]},
        "paper_equity": {"t": stamps, "equity": [1e6, 1.0005e6]},
        "backtest_priced_equity": {"t": stamps, "equity": [1e6, 1.0004e6]},
    }
    write_report(tmp_path, "2016-01", {"verdict": {"max_deviation": 0.0002}, "curves": curves})
    out = reports.summary(tmp_path)
    assert out["max_deviation"] == 0.0002
    assert out["backtest"] == {
        "t": [1_451_941_200.0, 1_452_027_600.0],
        "equity": [1e6, 1.001e6],
        "paper": [1e6, 1.0005e6],
    }
    assert out["note"] == "backtest of the bars of 2016-01 (report.json)"


def test_an_unreadable_report_is_shown_never_raised(tmp_path: Path) -> None:
    write_report(tmp_path, "bad", "{not json")
    out = reports.summary(tmp_path)
    assert out["latest"] == "bad" and out["max_deviation"] is None
    assert "unreadable" in out["note"]


def test_report_files_are_served_only_inside_the_reports_dir(tmp_path: Path) -> None:
    root = tmp_path / "evaluation_results"
    folder = write_report(root, "2026-02", {})
    (tmp_path / "secret.json").write_text("{}")
    (folder / "leak.json").symlink_to(tmp_path / "secret.json")
    (folder / "run.sh").write_text("echo")
    (folder / ".hidden.json").write_text("{}")
    assert reports.report_file(root, "2026-02", "report.html") == (
        (folder / "report.html").resolve(),
        "text/html",
    )
    for period, name in [
        ("2026-02", "leak.json"),  # a symlink out of the tree
        ("2026-02", "run.sh"),  # not a report file type
        ("2026-02", ".hidden.json"),
        ("..", "secret.json"),
        ("2026-02/..", "report.html"),
        ("2026-02", "../../secret.json"),
        ("2026-02", "missing.json"),
        ("nope", "report.html"),
    ]:
        assert reports.report_file(root, period, name) is None, (period, name)


def test_reports_over_http_read_only_and_no_traversal(tmp_path: Path) -> None:
    root = tmp_path / "evaluation_results"
    write_report(root, "2026-02", {"verdict": {"max_deviation": 0.1}})
    (tmp_path / "secret.json").write_text('{"secret": 1}')
    svc = make_service(tmp_path, reports_dir=str(root))

    async def scenario() -> None:
        async with TestClient(TestServer(build_app({}, svc))) as client:
            page = await client.get("/reports/2026-02/report.html")
            assert page.status == 200 and "2026-02" in await page.text()
            csp = page.headers["Content-Security-Policy"]
            assert "sandbox" in csp and "script-src" not in csp and "default-src 'none'" in csp
            listing = await client.get("/reports")
            assert '<a href="/reports/2026-02/report.html">' in await listing.text()
            assert (await (await client.get("/reports.json")).json())[0]["period"] == "2026-02"
            for path in (
                "/reports/..%2F/secret.json",
                "/reports/2026-02/..%2F..%2Fsecret.json",
                "/reports/%2E%2E/secret.json",
                "/reports/2026-02/nothing.html",
            ):
                reply = await client.get(path)
                assert reply.status == 404, path
                assert "secret" not in await reply.text()
            refused = await client.post("/reports/2026-02/report.html")
            assert refused.status == 405

    asyncio.run(scenario())
    svc.close()


def test_the_deviation_alert_fires_from_the_newest_report(tmp_path: Path, caplog) -> None:
    root = tmp_path / "evaluation_results"
    svc = make_service(tmp_path, reports_dir=str(root), alert_backtest_deviation=0.5)
    caplog.set_level(logging.INFO, logger="monitor.alerts")
    assert svc.tick() == []  # no report: nothing to compare
    write_report(root, "2026-03", {"verdict": {"max_deviation": 0.75}})
    svc._comparison = None  # re-read now (normally every REPORTS_REFRESH_S)
    fired = svc.tick()
    assert [(t["alert"], t["state"]) for t in fired] == [("backtest_deviation", "fired")]
    assert "0.75 > 0.5" in fired[0]["message"] and "2026-03" in fired[0]["message"]
    assert [a["alert"] for a in svc.dashboard()["alerts"]["active"]] == ["backtest_deviation"]
    assert any("alert_fired" in r.getMessage() for r in caplog.records)
    assert list(svc.alerts.outbox)[-1]["alert"] == "backtest_deviation"  # queued for the webhook
    svc.close()


# ---------------------------------------------------------------------- metrics
def test_metrics_carry_reconnects_rejections_drops_and_marketdata_health(tmp_path: Path) -> None:
    svc = make_service(tmp_path, reports_dir=str(tmp_path / "r"))
    write_report(tmp_path / "r", "p1", {"verdict": {"max_deviation": 0.2}})

    def hb(service: str, **detail: Any) -> Heartbeat:
        return Heartbeat(service=service, ready=True, detail=detail, ts_event=T0)

    rejected = OrderEvent(
        symbol="AAPL",
        order_ref="rl-AAPL-9",
        side="BUY",
        quantity=1,
        order_type="MKT",
        status="rejected",
        bar_seq=9,
        ts_event=T0,
    )
    feed(
        svc,
        replace(bar(10.0, seq=1), epoch=1),
        replace(bar(10.0, seq=2), epoch=2),  # marketdata restarted
        hb("execution", broker_connected=False),  # starting: not connected yet
        hb("execution", broker_connected=True),  # the first connection: no reconnect
        hb("execution", broker_connected=False),
        hb("execution", broker_connected=True),  # one broker reconnect
        hb("marketdata", quarantined=3, epoch=2),
        rejected,
        decision(ShadowTarget, 1, 10.0, 1.0, "cand"),
        decision(TargetPosition, 1, 10.0, 1.0, "v1"),
    )
    svc.subscriber.stats.malformed = 2
    svc.subscriber.stats.duplicates = 4
    svc.tick()
    got = samples(svc.metrics.render().decode())
    assert got[("monitor_reconnects_total", (("source", "broker"),))] == 1
    assert got[("monitor_reconnects_total", (("source", "marketdata"),))] == 1
    assert got[("monitor_order_rejections_total", ())] == 1
    assert got[("monitor_dropped_frames_total", (("reason", "malformed"),))] == 2
    assert got[("monitor_dropped_frames_total", (("reason", "duplicate"),))] == 4
    assert got[("monitor_marketdata_quarantined_bars", ())] == 3
    assert got[("monitor_marketdata_epoch", ())] == 2
    assert got[("monitor_shadow_decisions_total", ())] == 1
    assert got[("monitor_decisions_total", (("version", "v1"),))] == 1
    assert got[("monitor_backtest_max_deviation", ())] == 0.2
    health = svc.dashboard()["health"]
    assert (health["quarantined_bars"], health["epoch"]) == (3, 2)
    assert health["reconnects"] == {"broker": 1, "marketdata": 1}
    svc.close()


def test_signal_to_ack_latency_is_measured_at_the_acknowledgement(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    ack = OrderEvent(
        symbol="AAPL",
        order_ref="rl-AAPL-1",
        side="BUY",
        quantity=1,
        order_type="MKT",
        status="acknowledged",
        bar_seq=1,
        ts_event=T0,
    )
    feed(svc, bar(10.0), decision(TargetPosition, 1, 10.0, 1.0, "v1"), ack, ack)
    got = samples(svc.metrics.render().decode())
    assert got[("monitor_latency_seconds_count", (("stage", "signal_to_ack"),))] == 1
    assert svc.observer.latency_summary()["signal_to_ack"]["count"] == 1
    svc.close()


def test_live_vs_shadow_is_recomputed_when_decisions_arrive_but_throttled_by_its_cost(
    tmp_path: Path,
) -> None:
    svc = make_service(tmp_path)
    feed(
        svc,
        decision(TargetPosition, 1, 10.0, 1.0, "v1"),
        decision(TargetPosition, 2, 11.0, 0.0, "v1"),
    )
    first = shadow_table(svc)
    assert [r["marked"] for r in first] == [1]
    assert shadow_table(svc) is first  # nothing new: the cached rows
    when, key, _, rows = svc.shadow_cache  # type: ignore[misc]
    svc.shadow_cache = (when, key, 0.0, rows)  # as if the last pass had cost nothing
    feed(svc, decision(ShadowTarget, 1, 10.0, -1.0, "cand"))
    assert [r["role"] for r in shadow_table(svc)] == ["live", "shadow"]  # recomputed at once
    when, key, _, rows = svc.shadow_cache  # type: ignore[misc]
    svc.shadow_cache = (when, key, 3600.0, rows)  # as if the last pass had taken an hour
    feed(svc, decision(ShadowTarget, 2, 11.0, 0.0, "cand"))
    assert shadow_table(svc) is rows  # throttled: not before 20 x that duration
    svc.shadow_cache = (when - 20 * 3600.0, key, 3600.0, rows)
    assert shadow_table(svc)[1]["decisions"] == 2
    svc.close()


def test_the_comparison_reads_only_the_newest_decisions(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    for seq in range(1, 6):
        feed(svc, decision(ShadowTarget, seq, 10.0 + seq, 1.0, "cand"))
        feed(svc, decision(TargetPosition, seq, 10.0 + seq, 1.0, "v1"))
    assert [r["bar_seq"] for r in svc.ledger.shadow_rows(2)] == [4, 5]
    assert [r["bar_seq"] for r in svc.ledger.signal_rows(3)] == [3, 4, 5]
    assert len(svc.ledger.signal_rows()) == 5
    svc.close()
