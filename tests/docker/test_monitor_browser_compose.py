"""The dashboard of the real compose stack, in a real browser, while the stack trades.

Starts the trading services under ``docker compose`` (its own project ``rlt-monitor-browser-<hex>``;
no trainer: the light image only, built offline like ``test_compose``), waits for fills, then
opens the monitor's published port in headless Chromium from Debian (``chromium``; driven over
the DevTools protocol as the native dashboard test does, no WebDriver needed) and checks:

* the page follows the live stream: its update counter and its fills move while the stack trades;
* once trading is stopped (marketdata stopped: no new bar, so no new mark and no new order) and
  the ledger has settled, the equity, the open positions and the last fill shown on the page
  equal the ledger's, read from the monitor's JSON API (``/pnl``, ``/fills``);
* ``/metrics`` parses with ``prometheus_client``'s parser and says the same fills and equity;
* the equity chart has drawn pixels.

A screenshot goes to the test's ``tmp_path`` and, when ``RLTRADER_SCREENSHOT_DIR`` is set, there
too (``docs/img/dashboard.png`` was made so). Needs the engine (``.ci/docker-setup.sh``) and the
browser (``apt-get install -y chromium``): skipped without them, failed instead with
``RLTRADER_REQUIRE_DOCKER=1`` / ``RLTRADER_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.docker.test_compose import REPO, Stack, _ensure_engine, _wait
from tests.integration.test_monitor_dashboard import DevTools, chromium, start_chromium

pytestmark = pytest.mark.docker

TAG = os.environ.get("RLTRADER_TAG", "test")
SERVICES = ["bus", "ibsim", "marketdata", "inference", "execution", "monitor"]
STARTUP_LIMIT_S = 240  # every service healthy after `up` (the image already built)
FILLS_LIMIT_S = 120  # the first fills in the ledger
SETTLE_LIMIT_S = 60  # the ledger still once marketdata is stopped
PAGE_LIMIT_S = 60  # the page shows what the ledger holds


def _get_json(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}{path}", timeout=10) as reply:
        return json.loads(reply.read())


@pytest.fixture(scope="module")
def browser_stack() -> Iterator[tuple[Stack, str]]:
    if chromium() is None:
        why = "needs Debian's headless browser on PATH: apt-get install -y chromium"
        if os.environ.get("RLTRADER_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    _ensure_engine()
    wheels = subprocess.run(
        ["bash", str(REPO / "docker/wheelhouse.sh")], capture_output=True, text=True, timeout=1800
    )
    assert wheels.returncode == 0, f"docker/wheelhouse.sh failed:\n{wheels.stderr[-3000:]}"
    env = dict(os.environ)
    if "BASE_IMAGE" not in env:
        local = subprocess.run(
            ["docker", "image", "inspect", "rltrader/base:bookworm"], capture_output=True
        )
        env["BASE_IMAGE"] = (
            "rltrader/base:bookworm" if local.returncode == 0 else "python:3.11-slim"
        )
    env["RLTRADER_TAG"] = TAG
    env.pop("COMPOSE_PROJECT_NAME", None)
    stack = Stack(f"rlt-monitor-browser-{uuid.uuid4().hex[:8]}", env)
    try:
        stack.compose("build", "keygen", timeout=1800)  # the light image: every service here
        stack.compose(
            "up", "-d", "--wait", "--wait-timeout", str(STARTUP_LIMIT_S), *SERVICES,
            timeout=STARTUP_LIMIT_S + 60,
        )  # fmt: skip
        host, port = stack.compose("port", "monitor", "8080").stdout.strip().rsplit(":", 1)
        assert host == "127.0.0.1", host
        yield stack, f"http://127.0.0.1:{port}"
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.compose("down", "-v", "--remove-orphans", "-t", "10", timeout=300, check=False)


def _page_positions(rows: list[list[str]]) -> dict[str, float]:
    """The positions table's (symbol, quantity) cells; quantities are shown as 1,234."""
    return {row[0]: float(row[1].replace(",", "")) for row in rows[1:] if len(row) > 1}


ROWS_JS = (
    "[...document.querySelectorAll('#positions tr')].map(r => [...r.cells].map(c => c.textContent))"
)


def test_the_dashboard_shows_the_ledger_while_the_stack_trades(
    browser_stack: tuple[Stack, str], tmp_path: Path
) -> None:
    import aiohttp

    stack, base = browser_stack
    _wait(
        "fills in the monitor's ledger", FILLS_LIMIT_S, lambda: len(_get_json(base, "/fills")) >= 2
    )
    profile = tmp_path / "chromium"
    browser = start_chromium(profile, f"{base}/")
    shot = tmp_path / "dashboard.png"

    async def scenario() -> None:
        active = _wait(
            "chromium's DevTools port",
            60,
            lambda: (
                (profile / "DevToolsActivePort").exists()
                and (profile / "DevToolsActivePort").read_text().split()
            ),
            every_s=0.2,
        )
        devtools = f"http://127.0.0.1:{active[0]}"
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                async with session.get(f"{devtools}/json/list") as reply:
                    pages = [t for t in await reply.json() if t["type"] == "page"]
                if pages and pages[0]["url"].startswith(base):
                    break
                assert time.monotonic() < deadline, f"no dashboard page: {pages}"
                await asyncio.sleep(0.2)
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = DevTools(ws)
                await page.until("Number(document.body.dataset.updates || 0) >= 2", "updates")
                assert await page.evaluate("document.getElementById('live').textContent") == "live"
                # live while trading: the stream brings new fills without a reload
                first = len(_get_json(base, "/fills"))
                await page.until(
                    "document.querySelectorAll('#fills tr').length > 1", "the recent fills", 60
                )
                shown_before = await page.evaluate("document.body.dataset.lastFill")
                _wait("a new fill while trading", FILLS_LIMIT_S,
                      lambda: len(_get_json(base, "/fills")) > first)  # fmt: skip
                await page.until(
                    f"document.body.dataset.lastFill !== {json.dumps(shown_before)}",
                    "a new last fill arriving over the stream",
                    PAGE_LIMIT_S,
                )
                # stop the market, let the ledger settle, then the page must equal the ledger
                stack.compose("stop", "-t", "10", "marketdata", timeout=120)
                ledger = _settled(base)
                fills = _get_json(base, "/fills")
                last = fills[-1]
                with urllib.request.urlopen(f"{base}/metrics", timeout=10) as reply:
                    metrics = {
                        (s.name, tuple(sorted(s.labels.items()))): s.value
                        for family in text_string_to_metric_families(reply.read().decode())
                        for s in family.samples
                    }
                assert metrics[("monitor_fills_total", ())] == len(fills)
                assert metrics[("monitor_equity", ())] == pytest.approx(ledger["equity"], abs=0.01)
                await page.until(
                    f"Math.abs(Number(document.body.dataset.equity) - {ledger['equity']}) < 0.01"
                    f" && document.body.dataset.lastFill === {json.dumps(last['exec_id'])}",
                    f"the ledger's equity {ledger['equity']} and last fill {last['exec_id']}",
                    PAGE_LIMIT_S,
                )
                shown_equity = await page.evaluate("document.getElementById('equity').textContent")
                assert shown_equity == f"{ledger['equity']:,.2f}"
                open_positions = {s: q for s, q in ledger["positions"].items() if q != 0}
                assert _page_positions(await page.evaluate(ROWS_JS)) == open_positions
                card = await page.evaluate("document.getElementById('last-fill').textContent")
                assert card.split() == [
                    last["side"],
                    f"{last['quantity']:,.0f}",
                    last["symbol"],
                    "@",
                    f"{last['price']:,.4f}",
                ], card
                row = await page.evaluate(
                    "[...document.querySelectorAll('#fills tr')[1].cells].map(c => c.textContent)"
                )
                assert row[1:5] == [
                    last["symbol"],
                    last["side"],
                    f"{last['quantity']:,.0f}",
                    f"{last['price']:,.4f}",
                ], row
                pixels = await page.until(
                    "Number(document.getElementById('equity-chart').dataset.pixels || 0)",
                    "a drawn equity chart",
                )
                assert pixels > 100
                shot.write_bytes(await _full_page_png(page))

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
    extra = os.environ.get("RLTRADER_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(extra) / "dashboard.png")


async def _full_page_png(page: DevTools) -> bytes:
    """The whole page, not only the window (the health tables sit below the fold)."""
    layout = await page.send("Page.getLayoutMetrics")
    size = layout.get("cssContentSize") or layout["contentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    png = await page.send(
        "Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip
    )
    return base64.b64decode(png["data"])


def _settled(base: str) -> dict[str, Any]:
    """The ledger's PnL once two reads 3 s apart agree (no new fill, no new mark)."""
    seen: dict[str, Any] = {}

    def still() -> dict[str, Any] | None:
        now = _get_json(base, "/pnl")
        count = len(_get_json(base, "/fills"))
        key = (round(now["equity"], 2), count, json.dumps(now["positions"], sort_keys=True))
        before = seen.get("key")
        seen["key"] = key
        return now if key == before else None

    settled: dict[str, Any] = _wait("the ledger settled", SETTLE_LIMIT_S, still, every_s=3.0)
    return settled
