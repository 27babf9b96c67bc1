"""The real monitor process on the real authenticated bus serves its dashboard, a live stream,
``/metrics`` and alerts. Messages are published as the identities that own their topics
(execution: orders, fills, heartbeats; marketdata: bars; inference: signals and model status).

``test_the_dashboard_renders_in_headless_chromium`` loads the page in a real browser (Debian's
``chromium``; skipped with the reason when it is not on PATH: ``apt-get install -y chromium``),
checks the DOM after the scripts ran (the equity shown equals the ledger's; the equity chart's
canvas has drawn pixels) and saves a screenshot beside the test's files.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from shared.auth import load_or_create_key
from shared.bus import Publisher, producer_id
from shared.command_channel import call
from shared.messages import Bar, Heartbeat, ModelStatus, ShadowTarget, TargetPosition
from tests.conftest import bus_security, free_port
from tests.integration.test_monitor_bad_input import (
    ORDER,
    T0,
    execution_publisher,
    good_fill,
    publish_order_until_known,
    start_monitor,
    stop,
    wait_status,
)
from tests.processes import wait_for

pytestmark = pytest.mark.integration

SHOTS = Path(os.environ.get("MONITOR_DASHBOARD_SHOTS", "var/test-output/monitor-dashboard"))


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return reply.status, dict(reply.headers), reply.read()


def publisher(ctx: zmq.Context, env: dict[str, str], identity: str) -> Publisher:
    return Publisher(
        ctx, env["BUS_PUB_ENDPOINT"], producer_id(identity), security=bus_security(env, identity)
    )


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", Hook.received
    finally:
        server.shutdown()
        server.server_close()


def bar(close: float, seq: int) -> Bar:
    return Bar(
        symbol="AAPL",
        timeframe="1m",
        bar_open_ts=T0,
        open=close,
        high=close,
        low=close,
        close=close,
        volume=100,
        ts_event=time.time_ns(),
    )


def signal_recorded(port: int) -> bool:
    """The dashboard's model table counts the signals recorded in the ledger."""
    try:
        return bool(json.loads(get(port, "/dashboard.json")[2])["models"]["known"])
    except OSError:  # the HTTP side not up yet
        return False


@pytest.fixture
def trading_monitor(
    busproxy: dict[str, str], tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> Iterator[dict[str, Any]]:
    """A monitor that has booked one fill (5 AAPL @ 10.0, decided at a close of 9.99 by model
    v7), marked at 12.0, with execution's heartbeat saying the broker is disconnected."""
    url, received = webhook
    port = free_port()
    ledger = tmp_path / "ledger.sqlite"
    proc = start_monitor(
        busproxy,
        ledger,
        MONITOR_HTTP_PORT=str(port),
        MONITOR_DASHBOARD_INTERVAL_S="0.2",
        MONITOR_ALERT_WEBHOOK_URL=url,
        MONITOR_ALERT_DRAWDOWN_PCT="5",
        MONITOR_REPORTS_DIR=str(tmp_path / "reports"),  # empty until a test writes one
    )
    key = load_or_create_key(busproxy["BUS_SECRET_FILE"])
    endpoint = busproxy["MONITOR_CMD_ENDPOINT"]
    ctx: zmq.Context = zmq.Context()
    execution = execution_publisher(ctx, busproxy)
    marketdata = publisher(ctx, busproxy, "marketdata")
    inference = publisher(ctx, busproxy, "inference")
    try:
        wait_status(endpoint, key, lambda s: s.get("ready"))
        publish_order_until_known(execution, endpoint, key)  # the subscription is live now
        # a candidate's would-be target for the same bar, before the live one (same socket: in
        # order), so it is recorded once the signal is; it must never be traded
        inference.publish(
            ShadowTarget(
                symbol="AAPL",
                target_position=-1.0,
                model_version="cand",
                bar_seq=ORDER.bar_seq,
                bar_close_ts=T0,
                bar_close=9.99,
                ts_event=T0,
            )
        )
        inference.publish(
            TargetPosition(
                symbol="AAPL",
                target_position=0.5,
                model_version="v7",
                bar_seq=ORDER.bar_seq,
                bar_close_ts=T0,
                bar_close=9.99,
                ts_event=T0,
            )
        )
        inference.publish(
            ModelStatus(
                instance="inference-1",
                serving_version="v7",
                requested_version="v8",
                accepted=False,
                reason="gate refused v8",
                ts_event=time.time_ns(),
            )
        )
        # the signal is recorded before the fill it explains
        wait_for(lambda: signal_recorded(port), "the signal in the monitor's ledger", 30)
        execution.publish(good_fill(quantity=5, price=10.0, commission=1.0))
        marketdata.publish(bar(12.0, 1))
        execution.publish(
            Heartbeat(
                service="execution",
                ready=False,
                detail={"broker_connected": False, "killed": False},
                ts_event=time.time_ns(),
            )
        )
        wait_status(endpoint, key, lambda s: s.get("fills") == 1)

        def settled() -> bool:
            view = json.loads(get(port, "/dashboard.json")[2])
            return bool(
                view["execution"]["known"] and view["alerts"]["active"] and view["health"]["bars"]
            )

        wait_for(settled, "the heartbeat, the bar and the first alert on the dashboard", 20)
        yield {
            "port": port,
            "endpoint": endpoint,
            "key": key,
            "received": received,
            "ledger": ledger,
            "proc": proc,
            "publish_bar": lambda close, seq: marketdata.publish(bar(close, seq)),
            "reports": tmp_path / "reports",
        }
    finally:
        for pub in (execution, marketdata, inference):
            pub.close()
        ctx.term()
        stop(proc)


def test_dashboard_metrics_stream_and_alerts_over_the_real_bus(trading_monitor) -> None:
    port = trading_monitor["port"]
    pnl = call(trading_monitor["endpoint"], "pnl", {}, trading_monitor["key"])
    status, headers, page = get(port, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = page.decode()
    assert '<script src="/static/uplot.js">' in html and "equity-chart" in html
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html
    status, _, js = get(port, "/static/uplot.js")
    assert status == 200 and b"uPlot" in js

    # /metrics: prometheus_client's own parser, the ledger's figures
    _, headers, text = get(port, "/metrics")
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }
    assert values[("monitor_fills_total", ())] == 1
    assert values[("monitor_position", (("symbol", "AAPL"),))] == 5
    assert values[("monitor_equity", ())] == pytest.approx(pnl["equity"])
    assert values[("monitor_broker_connected", ())] == 0
    assert values[("monitor_alert_active", (("alert", "broker_disconnected"),))] == 1
    assert ("monitor_bar_age_seconds", (("symbol", "AAPL"),)) in values
    assert values[("monitor_latency_seconds_count", (("stage", "order_to_fill"),))] == 1
    assert values[("monitor_shadow_decisions_total", ())] == 1  # recorded, not traded:
    assert values[("monitor_decisions_total", (("version", "v7"),))] == 1

    # a live update over server-sent events: a new bar moves the equity in the stream
    trading_monitor["publish_bar"](13.0, 2)
    expected = 1_000_000 - 1.0 + 5 * (13.0 - 10.0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/events", timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        deadline = time.monotonic() + 20
        snapshot: dict[str, Any] = {}
        while time.monotonic() < deadline:
            line = stream.readline().decode()
            if line.startswith("data: "):
                snapshot = json.loads(line[6:])
                if snapshot["equity"] == pytest.approx(expected):
                    break
        assert snapshot["equity"] == pytest.approx(expected), snapshot.get("equity")
    fill = snapshot["fills"][0]
    assert fill["model_version"] == "v7" and fill["bar_close"] == 9.99
    assert fill["slippage_bps"] == pytest.approx((10.0 - 9.99) / 9.99 * 1e4, abs=1e-3)
    assert snapshot["models"]["known"] and snapshot["models"]["versions"][0]["version"] == "v7"
    assert [v["version"] for v in snapshot["models"]["versions"]] == ["v7"]  # no shadow trades
    shadow = {(r["role"], r["version"]): r for r in snapshot["models"]["shadow"]["rows"]}
    assert shadow[("shadow", "cand")]["decisions"] == 1 and shadow[("live", "v7")]["decisions"] == 1
    assert snapshot["last_fill"]["exec_id"] == fill["exec_id"]
    assert snapshot["comparison"]["note"] == "no comparison yet: run make compare"
    assert snapshot["execution"]["known"] and snapshot["execution"]["broker_connected"] is False
    assert {a["alert"] for a in snapshot["alerts"]["active"]} == {"broker_disconnected"}
    assert snapshot["curve"]["equity"][-1] == pytest.approx(expected)

    # the webhook got the broker alert and the refused model, once each
    received = wait_for(
        lambda: (
            trading_monitor["received"]
            if {"broker_disconnected", "model_refused"}
            <= {r["alert"] for r in trading_monitor["received"]}
            else None
        ),
        "the webhook's alerts",
        timeout_s=20,
    )
    assert sorted(r["alert"] for r in received) == ["broker_disconnected", "model_refused"]
    log = Path(f"{trading_monitor['ledger']}.log").read_text()
    assert log.count("alert_fired") == 2  # once per transition, not once per tick

    # read-only: anything but GET is refused
    request = urllib.request.Request(f"http://127.0.0.1:{port}/pnl", method="POST", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405


def write_comparison(root: Path, period: str) -> None:
    """A paper-vs-backtest report as ``make compare`` leaves it (the fields the monitor reads)."""
    folder = root / f"paper-vs-backtest-{period}"
    folder.mkdir(parents=True)
    (folder / "report.html").write_text("<h1>paper vs backtest</h1>")
    stamps = [f"2016-01-0{d}T21:00:00+00:00" for d in range(4, 9)]  # as compare_report writes
    curves = {
        "backtest_equity": {"t": stamps, "equity": [1e6, 1.01e6, 1.005e6, 1.02e6, 1.03e6]},
        "paper_equity": {"t": stamps, "equity": [1e6, 1.008e6, 1.004e6, 1.018e6, 1.027e6]},
    }
    report = {"verdict": {"max_deviation": 0.003}, "curves": curves}
    (folder / "report.json").write_text(json.dumps(report))


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class DevTools:
    """A minimal Chrome DevTools protocol client over aiohttp's websocket client."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            reply = await self.ws.receive_json(timeout=30)
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def until(self, expression: str, what: str, timeout_s: float = 30) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"the page never showed {what}"
            await asyncio.sleep(0.2)


def start_chromium(profile: Path, url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            chromium(),  # type: ignore[list-item]
            "--headless",
            "--no-sandbox",  # root in CI and containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1280,2000",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",  # the port it picked goes to DevToolsActivePort
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_the_dashboard_renders_in_headless_chromium(trading_monitor, tmp_path: Path) -> None:
    """Headless Chromium opens the dashboard: the equity shown is the ledger's, the equity chart
    has drawn pixels, and a new bar on the bus changes the page without a reload (SSE).

    Skipped with the install command when no browser is on PATH, except where the browser is
    required (CI sets RLTRADER_REQUIRE_BROWSER=1 after installing it): then it fails."""
    import aiohttp

    if chromium() is None:
        why = "needs Debian's headless browser on PATH: apt-get install -y chromium"
        if os.environ.get("RLTRADER_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)

    port = trading_monitor["port"]
    ledger_pnl = call(trading_monitor["endpoint"], "pnl", {}, trading_monitor["key"])
    profile = tmp_path / "chromium"
    browser = start_chromium(profile, f"http://127.0.0.1:{port}/")
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "dashboard.png"

    async def scenario() -> None:
        active = wait_for(
            lambda: (
                (profile / "DevToolsActivePort").exists()
                and (profile / "DevToolsActivePort").read_text().split()
            ),
            "chromium's DevTools port",
            timeout_s=60,
        )
        base = f"http://127.0.0.1:{active[0]}"
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                async with session.get(f"{base}/json/list") as reply:
                    pages = [t for t in await reply.json() if t["type"] == "page"]
                if pages and pages[0]["url"].startswith(f"http://127.0.0.1:{port}"):
                    break
                assert time.monotonic() < deadline, f"no dashboard page: {pages}"
                await asyncio.sleep(0.2)
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = DevTools(ws)
                await page.until("Number(document.body.dataset.updates || 0) >= 2", "updates")
                shown = float(await page.evaluate("document.body.dataset.equity"))
                assert shown == pytest.approx(ledger_pnl["equity"], abs=0.01)  # the ledger's
                assert await page.evaluate("document.getElementById('equity').textContent") == (
                    f"{ledger_pnl['equity']:,.2f}"
                )
                pixels = await page.until(
                    "Number(document.getElementById('equity-chart').dataset.pixels || 0)",
                    "a drawn equity chart",
                )
                assert pixels > 100
                assert await page.evaluate(
                    "document.querySelectorAll('#equity-chart canvas').length"
                )
                positions = await page.evaluate("document.getElementById('positions').innerText")
                assert "AAPL" in positions
                fills = await page.evaluate("document.getElementById('fills').innerText")
                assert "v7" in fills and "10.0000" in fills
                assert "DOWN" in await page.evaluate(
                    "document.getElementById('broker').textContent"
                )
                # live: a new bar moves the equity on the page, no reload
                trading_monitor["publish_bar"](14.0, 3)
                expected = 1_000_000 - 1.0 + 5 * (14.0 - 10.0)
                await page.until(
                    f"Math.abs(Number(document.body.dataset.equity) - {expected}) < 0.01",
                    "the equity after a new bar",
                )
                await page.until(  # the chart has the new point (uPlot draws on setData)
                    "typeof equityChart !== 'undefined' && equityChart !== null"
                    f" && Math.abs(equityChart.data[1].at(-1) - {expected}) < 0.01",
                    "the new point on the equity chart",
                )
                # a comparison report appears: its backtest is drawn beside the paper curve
                # and linked (re-read within the monitor's REPORTS_REFRESH_S)
                write_comparison(trading_monitor["reports"], "2026-11-30")
                await page.until(
                    "Number(document.getElementById('backtest-chart').dataset.pixels || 0) > 100",
                    "the backtest equity chart",
                    timeout_s=40,
                )
                assert "2026-11-30" in await page.evaluate(
                    "document.getElementById('comparison-note').textContent"
                )
                assert await page.evaluate("backtestChart.series.length") == 3  # + the paper
                links = await page.evaluate(
                    "[...document.querySelectorAll('#reports a')].map(a => a.getAttribute('href'))"
                )
                assert links == [
                    "/reports/2026-11-30/report.html",
                    "/reports/2026-11-30/report.json",
                ]
                status, headers, body = get(port, links[0])
                assert status == 200 and b"paper vs backtest" in body
                assert "sandbox" in headers["Content-Security-Policy"]
                png = await page.send("Page.captureScreenshot", format="png")
                shot.write_bytes(base64.b64decode(png["data"]))

    try:
        asyncio.run(scenario())
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=15)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
    assert shot.stat().st_size > 10_000
