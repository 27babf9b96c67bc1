"""Alert rules: settings are validated by name, each rule fires on a crafted stream, an alert is
logged once per transition (not every tick), and the webhook gets each transition as JSON while a
failing webhook is only logged."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from monitor.alerts import AlertBook, AlertRules, Facts, WebhookSender, conditions, drawdown_pct
from monitor.config import MonitorSettings
from monitor.service import MonitorService

from shared.bus import StreamStats
from shared.config import ConfigError, from_env
from shared.messages import Bar, Fill, Heartbeat, Message, ModelStatus, OrderEvent
from tests.conftest import free_port

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000_000_000


# ---------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MONITOR_ALERT_DRAWDOWN_PCT", "nan"),
        ("MONITOR_ALERT_DRAWDOWN_PCT", "inf"),
        ("MONITOR_ALERT_DRAWDOWN_PCT", "-1"),
        ("MONITOR_ALERT_DRAWDOWN_PCT", "101"),
        ("MONITOR_ALERT_DAILY_LOSS", "-5"),
        ("MONITOR_ALERT_DAILY_LOSS", "inf"),
        ("MONITOR_ALERT_STALE_BAR_S", "-1"),
        ("MONITOR_ALERT_STALE_BAR_S", "nan"),
        ("MONITOR_ALERT_STALE_BAR_S", "1e9"),
        ("MONITOR_ALERT_WEBHOOK_URL", "ftp://example.invalid/hook"),
        ("MONITOR_ALERT_WEBHOOK_TIMEOUT_S", "0"),
        ("MONITOR_ALERT_WEBHOOK_TIMEOUT_S", "inf"),
        ("MONITOR_DASHBOARD_INTERVAL_S", "0"),
        ("MONITOR_ALERT_DRAWDOWN_PCT", "ten"),
    ],
)
def test_bad_alert_settings_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        from_env(MonitorSettings, "MONITOR_", {name: value})


def test_alert_settings_from_the_environment() -> None:
    settings = from_env(
        MonitorSettings,
        "MONITOR_",
        {
            "MONITOR_ALERT_DRAWDOWN_PCT": "2.5",
            "MONITOR_ALERT_DAILY_LOSS": "1000",
            "MONITOR_ALERT_STALE_BAR_S": "90",
            "MONITOR_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        },
    )
    assert (settings.alert_drawdown_pct, settings.alert_daily_loss) == (2.5, 1000)
    assert settings.alert_stale_bar_s == 90
    assert settings.alert_webhook_url == "http://127.0.0.1:9/hook"


# ---------------------------------------------------------------------- pure rules
BASE = Facts(equity=100.0, peak_equity=100.0, day_start_equity=100.0, bar_age_s=1.0)


def test_each_rule_fires_on_its_condition_and_only_then() -> None:
    rules = AlertRules(drawdown_pct=5, daily_loss=10, stale_bar_s=60)
    assert conditions(rules, BASE) == {}
    assert set(conditions(rules, Facts(95.0, 100.0, 200.0))) == {"drawdown", "daily_loss"}
    assert set(conditions(rules, Facts(96.0, 100.0, 96.0))) == set()  # 4 % < 5 %
    assert set(conditions(rules, Facts(90.0, 90.0, 100.0))) == {"daily_loss"}
    stale = Facts(100.0, 100.0, 100.0, bar_age_s=60.0)
    assert set(conditions(rules, stale)) == {"stale_market_data"}
    broker = Facts(100.0, 100.0, 100.0, broker_connected=False, killed=True)
    assert set(conditions(rules, broker)) == {"broker_disconnected", "kill_switch"}
    unknown = Facts(100.0, 100.0, 100.0, broker_connected=None, killed=None)
    assert conditions(rules, unknown) == {}  # execution not heard from: no claim


def test_a_rule_set_to_zero_is_off() -> None:
    off = AlertRules()
    assert conditions(off, Facts(1.0, 100.0, 100.0, bar_age_s=1e6)) == {}


def test_drawdown_is_safe_with_odd_numbers() -> None:
    assert drawdown_pct(90.0, 100.0) == pytest.approx(10.0)
    assert drawdown_pct(110.0, 100.0) == 0.0
    assert drawdown_pct(math.nan, 100.0) == 0.0
    assert drawdown_pct(1.0, 0.0) == 0.0


def test_an_alert_is_logged_once_per_transition_not_every_tick(caplog) -> None:
    book = AlertBook(clock=lambda: 1.0)
    caplog.set_level(logging.INFO, logger="monitor.alerts")
    fired = [book.update({"drawdown": f"dd {i}"}) for i in range(50)]
    assert [len(t) for t in fired] == [1] + [0] * 49
    assert book.active["drawdown"]["message"] == "dd 49"  # the figure is kept current
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "alert_fired" in warnings[0].getMessage()
    cleared = book.update({})
    assert [t["state"] for t in cleared] == ["cleared"]
    assert book.update({}) == []
    again = book.update({"drawdown": "dd"})
    assert [t["state"] for t in again] == ["fired"]
    assert book.fired["drawdown"] == 2
    assert [r["state"] for r in book.history] == ["fired", "cleared", "fired"]


# ---------------------------------------------------------------------- a crafted stream
class FakeSubscriber:
    def __init__(self) -> None:
        self.stats = StreamStats()

    def close(self) -> None:
        pass


class FakeExecution:
    async def request(self, name: str, args: dict[str, Any], timeout_s: float) -> Any:
        raise AssertionError("not used here")

    def close(self) -> None:
        pass


@dataclass
class FakeBus:
    settings: Any = field(
        default_factory=lambda: type(
            "S", (), {"command_timeout_s": 1.0, "heartbeat_interval_s": 1}
        )()
    )

    def subscriber(self, topics: list[str]) -> FakeSubscriber:
        return FakeSubscriber()

    def command_client(self, target: str) -> FakeExecution:
        return FakeExecution()


def make_service(tmp_path: Path, **settings: Any) -> MonitorService:
    settings.setdefault("reports_dir", str(tmp_path / "reports"))  # not the repository's
    config = MonitorSettings(
        ledger_path=str(tmp_path / "ledger.sqlite"), http_port=0, initial_cash=10_000, **settings
    )
    return MonitorService(config, FakeBus())  # type: ignore[arg-type]


def feed(svc: MonitorService, *messages: Message) -> None:
    for message in messages:
        svc.accountant.handle_safely(message)
        svc.observe_safely(message)


def order(ref: str = "rl-AAPL-1", quantity: float = 100) -> OrderEvent:
    return OrderEvent(
        symbol="AAPL",
        order_ref=ref,
        side="BUY",
        quantity=quantity,
        order_type="MKT",
        status="submitted",
        bar_seq=1,
        ts_event=T0,
    )


def fill(price: float, exec_id: str = "e1", quantity: float = 100) -> Fill:
    return Fill(
        symbol="AAPL",
        exec_id=exec_id,
        order_ref="rl-AAPL-1",
        side="BUY",
        quantity=quantity,
        price=price,
        commission=0.0,
        ts_event=T0,
    )


def bar(close: float, seq: int = 1) -> Bar:
    return Bar(
        symbol="AAPL",
        timeframe="1m",
        bar_open_ts=T0,
        open=close,
        high=close,
        low=close,
        close=close,
        volume=1,
        seq=seq,
        ts_event=T0,
    )


def test_every_rule_fires_on_a_crafted_stream(tmp_path: Path, caplog) -> None:
    svc = make_service(tmp_path, alert_drawdown_pct=5, alert_daily_loss=300, alert_stale_bar_s=30)
    caplog.set_level(logging.INFO, logger="monitor.alerts")
    feed(svc, order(), fill(10.0), bar(10.0))
    assert svc.tick() == []  # flat equity, fresh bar, execution unknown: nothing
    feed(svc, bar(14.0, seq=2))  # +400
    svc.tick()
    feed(svc, bar(9.0, seq=3))  # peak 10,400 -> 9,900: -4.8 %, day loss 100
    assert svc.tick() == []
    feed(svc, bar(6.0, seq=4))  # 9,600: -7.7 % from the peak, 400 below the day's start
    names = {t["alert"] for t in svc.tick()}
    assert names == {"drawdown", "daily_loss"}
    clock = svc.observer.clock_ns
    svc.observer.clock_ns = lambda: clock() + 31 * 10**9  # 31 s without a bar
    assert {t["alert"] for t in svc.tick()} == {"stale_market_data"}
    svc.observer.clock_ns = clock
    hb = Heartbeat(
        service="execution",
        ready=False,
        detail={"broker_connected": False, "killed": True},
        ts_event=T0,
    )
    feed(svc, hb)
    transitions = {(t["alert"], t["state"]) for t in svc.tick()}
    assert transitions == {
        ("broker_disconnected", "fired"),
        ("kill_switch", "fired"),
        ("stale_market_data", "cleared"),  # the clock is back: the data is fresh again
    }
    feed(
        svc,
        ModelStatus(
            instance="inference-1",
            serving_version="v1",
            requested_version="v1",
            accepted=True,
            ts_event=T0,
        ),
        ModelStatus(
            instance="inference-1",
            serving_version="v2",
            requested_version="v2",
            accepted=True,
            ts_event=T0,
        ),
        ModelStatus(
            instance="inference-1",
            serving_version="v2",
            requested_version="v3",
            accepted=False,
            reason="checksum mismatch",
            ts_event=T0,
        ),
    )
    events = svc.tick()
    assert [t["alert"] for t in events] == ["model_swapped", "model_swapped", "model_refused"]
    assert "checksum mismatch" in events[-1]["message"]
    assert svc.tick() == []  # nothing new: no new log line
    fired = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(fired) == 8  # one per transition
    snapshot = svc.dashboard()
    assert {a["alert"] for a in snapshot["alerts"]["active"]} == {
        "drawdown",
        "daily_loss",
        "broker_disconnected",
        "kill_switch",
    }
    assert snapshot["execution"]["killed"] is True
    svc.close()


# ---------------------------------------------------------------------- webhook
async def _hook_server(received: list[dict[str, Any]], status: int = 200) -> tuple[Any, int]:
    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def test_the_webhook_gets_each_transition_as_json() -> None:
    async def scenario() -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        runner, port = await _hook_server(received)
        book = AlertBook(clock=lambda: 5.0)
        sender = WebhookSender(f"http://127.0.0.1:{port}/hook", 2.0, book)
        task = asyncio.create_task(sender.run())
        try:
            book.update({"drawdown": "dd 6%"})
            book.event("model_refused", "bad model")
            sender.wake.set()
            async with asyncio.timeout(10):
                while len(received) < 2:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            await runner.cleanup()
        assert sender.sent == 2 and sender.failed == 0
        return received

    received = asyncio.run(scenario())
    assert received[0] == {
        "source": "monitor",
        "alert": "drawdown",
        "state": "fired",
        "message": "dd 6%",
        "ts": 5.0,
    }
    assert received[1]["alert"] == "model_refused" and received[1]["state"] == "event"


def test_a_failing_webhook_is_logged_and_never_raises(caplog) -> None:
    async def scenario() -> WebhookSender:
        received: list[dict[str, Any]] = []
        runner, port = await _hook_server(received, status=500)
        book = AlertBook()
        answering = WebhookSender(f"http://127.0.0.1:{port}/hook", 2.0, book)
        refused = WebhookSender(f"http://127.0.0.1:{free_port()}/hook", 1.0, AlertBook())
        tasks = [asyncio.create_task(answering.run()), asyncio.create_task(refused.run())]
        try:
            book.update({"drawdown": "dd"})
            refused.book.update({"stale_market_data": "old"})
            answering.wake.set()
            refused.wake.set()
            async with asyncio.timeout(10):
                while answering.failed < 1 or refused.failed < 1:
                    assert not any(t.done() for t in tasks), "the sender stopped"
                    await asyncio.sleep(0.02)
        finally:
            for task in tasks:
                task.cancel()
            await runner.cleanup()
        return answering

    caplog.set_level(logging.WARNING, logger="monitor.alerts")
    sender = asyncio.run(scenario())
    assert sender.sent == 0
    failures = [r for r in caplog.records if "alert_webhook_failed" in r.getMessage()]
    assert len(failures) == 2
    assert any("HTTP 500" in r.fields["error"] for r in failures)  # type: ignore[attr-defined]
