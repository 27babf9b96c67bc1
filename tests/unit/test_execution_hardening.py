"""Execution defends itself: hostile numbers never reach money or state, a broken state file stops
the start by name, and no exception from a message leaves a receive loop.

Every test here failed on the code before the hardening (NaN target clamped to a full short,
``high=inf`` froze sizing, a NaN open filled at NaN and wrote an unloadable state file, a negative
close halted the day, a handler bug ended the bus loop)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from execution.broker import BrokerFill, BrokerPosition, OrderRequest
from execution.input_guard import StateFileError
from execution.order_journal import OrderJournal
from execution.risk import RiskLimits, RiskManager, WilderATR, target_shares
from execution.sim_broker import SimBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.messages import Bar, Fill, OrderEvent, TargetPosition
from tests.unit.test_execution_service import COSTS, MONDAY, Harness

pytestmark = pytest.mark.unit

DAYS = [MONDAY + dt.timedelta(days=i) for i in range(5)]  # Mon..Fri
HOSTILE_TARGETS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(min_value=1.0, exclude_min=True),
    st.floats(max_value=-1.0, exclude_max=True),
)
HOSTILE_PRICES = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0]),
    st.floats(max_value=0.0),
    st.floats(min_value=1e10, allow_infinity=True),
)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


async def wait_until(predicate: Callable[[], Any], what: str, timeout_s: float = 5.0) -> None:
    """A failure guard with a deadline, never a timing assertion."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def signal_for(bar: Bar, target: float, bar_seq: int) -> TargetPosition:
    return TargetPosition(
        symbol=bar.symbol,
        target_position=target,
        model_version="m1",
        bar_seq=bar_seq,
        bar_close_ts=bar.ts_event,
        bar_close=bar.close,
    )


def all_finite(values: Any) -> bool:
    if isinstance(values, float):
        return math.isfinite(values)
    if isinstance(values, dict):
        return all(all_finite(v) for v in values.values())
    if isinstance(values, list):
        return all(all_finite(v) for v in values)
    return True


# ====================================================================== target positions
@given(targets=st.lists(HOSTILE_TARGETS, min_size=1, max_size=8))
@FAST
def test_non_finite_or_out_of_range_target_is_refused_and_counted(targets: list[float]) -> None:
    async def scenario(tmp: Path) -> None:
        h = await Harness(tmp).start()
        bar = await h.bar(DAYS[0], 99, 101, 98, 100)
        for i, target in enumerate(targets):
            await h.svc.on_signal(signal_for(bar, target, bar_seq=100 + i))
        await h.svc.drain()
        assert h.sent(OrderEvent) == []  # no order, not even a "skipped" one with a side
        status = h.svc.status_detail()
        assert sum(status["refusals"].values()) == len(targets)
        assert status["positions"] == {}
        h.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))


def test_risk_sizing_never_turns_nan_into_a_position() -> None:
    with pytest.raises(ValueError, match="finite"):
        target_shares(math.nan, 100_000, 2.0, 0.01, 100)
    assert target_shares(1.0, math.inf, 2.0, 0.01, 100) == 0
    assert target_shares(1.0, 100_000, math.nan, 0.01, 100) == 0


# ====================================================================== bars
async def test_infinite_high_does_not_freeze_the_atr_or_sizing(tmp_path: Path) -> None:
    h = await Harness(tmp_path, atr_period=2).start()
    await h.bar(DAYS[0], 99, 101, 98, 100)
    await h.bar(DAYS[1], 100, 102, 99, 101)
    atr_before = h.svc.atr["AAPL"].value
    await h.bar(DAYS[2], 101, math.inf, 100, 101)
    assert h.svc.atr["AAPL"].value == atr_before
    b = await h.bar(DAYS[3], 101, 103, 100, 102)
    await h.signal(b, 1.0)
    (order,) = h.sent(OrderEvent, status="submitted")
    assert order.quantity > 0
    assert h.svc.status_detail()["refusals"] == {"bar:non_finite": 1}


@given(high=HOSTILE_PRICES, low=HOSTILE_PRICES, close=HOSTILE_PRICES)
@FAST
def test_wilder_atr_ignores_hostile_bars(high: float, low: float, close: float) -> None:
    atr = WilderATR(2)
    atr.update(101, 99, 100)
    atr.update(102, 100, 101)
    before = atr.value
    atr.update(high, low, close)
    assert atr.value == before and before is not None and math.isfinite(before)


@given(field=st.sampled_from(["open", "high", "low", "close"]), value=HOSTILE_PRICES)
@FAST
def test_hostile_bar_never_fills_never_persists_and_state_reloads(field: str, value: float) -> None:
    async def scenario(tmp: Path) -> None:
        h = await Harness(tmp).start()
        b1 = await h.bar(DAYS[0], 99, 101, 98, 100)
        await h.signal(b1, 1.0)
        assert h.sent(OrderEvent, status="submitted")
        prices = {"open": 101.0, "high": 102.0, "low": 100.0, "close": 101.5, field: value}
        await h.bar(DAYS[1], prices["open"], prices["high"], prices["low"], prices["close"])
        assert h.sent(Fill) == []  # the order keeps working: no fill at a broken price
        assert h.svc.risk.halted_day == ""
        await h.bar(DAYS[2], 101, 102, 100, 101.5)
        (fill,) = h.sent(Fill)
        assert math.isfinite(fill.price) and fill.price > 0
        await h.broker.close()
        saved = json.loads((tmp / "sim.json").read_text())
        assert all_finite(saved) and None not in saved["last_price"].values()
        assert all(all_finite(f) for f in h.journal.fills())
        SimBroker(COSTS, 100_000.0, state_file=tmp / "sim.json")  # loads again
        h.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))


def test_sim_broker_ignores_a_nan_open_directly() -> None:
    async def scenario() -> None:
        broker = SimBroker(COSTS, 100_000.0)
        await broker.connect()
        await broker.place(OrderRequest(order_ref="r1", symbol="AAPL", side="BUY", quantity=10))
        bar = Bar(
            symbol="AAPL",
            timeframe="1d",
            bar_open_ts=1,
            open=math.nan,
            high=math.nan,
            low=math.nan,
            close=math.nan,
            volume=0,
            ts_event=10,
        )
        broker.on_bar(bar)
        assert broker.positions() == {} and math.isfinite(broker.equity())
        assert broker.refusals.counts == {"sim_bar_prices": 1}

    asyncio.run(scenario())


@pytest.mark.parametrize("close", [-1000.0, 0.0, -math.inf])
async def test_negative_or_zero_close_does_not_trip_the_daily_loss_halt(
    tmp_path: Path, close: float
) -> None:
    h = await Harness(tmp_path, max_daily_loss=1000).start()
    b1 = await h.bar(DAYS[0], 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    await h.bar(DAYS[1], 100, 101, 99, 100)
    assert h.svc.positions["AAPL"].quantity > 0
    await h.bar(DAYS[1] + dt.timedelta(days=1), 100, 101, 99, close)
    assert h.svc.risk.halted_day == ""
    assert h.sent(OrderEvent, status="submitted", side="SELL") == []
    assert math.isfinite(h.broker.equity()) and h.broker.equity() > 50_000


def test_daily_loss_rule_ignores_non_finite_equity() -> None:
    h_limits = RiskLimits(
        risk_per_trade=0.01,
        max_position=10,
        max_gross_exposure=1e5,
        max_orders_per_minute=10,
        max_daily_loss=100,
        stop_atr_multiple=2,
        fallback_stop_pct=0.02,
    )
    risk = RiskManager(h_limits, schedule=None)  # type: ignore[arg-type]
    assert not risk.daily_loss_hit("d", 100_000, math.nan)
    assert not risk.daily_loss_hit("d", math.inf, 100_000)
    assert not risk.daily_loss_hit("d", -5.0, -1000.0)
    assert risk.daily_loss_hit("d", 100_000, 99_000)


# ====================================================================== broker events
async def test_broker_fill_or_position_with_nan_is_refused_before_state(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    b1 = await h.bar(DAYS[0], 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    (order,) = h.sent(OrderEvent, status="submitted")
    h.broker.events.put_nowait(
        BrokerFill(
            exec_id="x1",
            order_ref=order.order_ref,
            symbol="AAPL",
            side="BUY",
            quantity=10,
            price=math.nan,
            commission=1.0,
        )
    )
    h.broker.events.put_nowait(BrokerPosition(symbol="AAPL", quantity=math.inf))
    await h.svc.drain()
    assert h.sent(Fill) == [] and h.journal.fills() == []
    assert "AAPL" not in h.svc.positions
    refusals = h.svc.status_detail()["refusals"]
    assert refusals == {"broker_fill_non_finite": 1, "broker_position_non_finite": 1}


def test_journal_never_persists_a_non_finite_number(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "j.sqlite")
    fill = BrokerFill(
        exec_id="e", order_ref="r", symbol="A", side="BUY", quantity=1, price=math.nan, commission=0
    )
    with pytest.raises(ValueError, match="non-finite"):
        journal.save_fill(fill)
    with pytest.raises(ValueError, match="non-finite"):
        journal.observe_equity("2024-03-04", math.inf)
    with pytest.raises(ValueError):
        journal.set_value("x", math.nan)
    bad_order = OrderRequest(
        order_ref="r", symbol="A", side="BUY", quantity=1, order_type="LMT", limit_price=math.nan
    )
    with pytest.raises(ValueError, match="non-finite"):
        journal.reserve(bad_order)
    assert journal.fills() == [] and journal.equity_days() == [] and not journal.has("r")
    journal.close()


# ====================================================================== state files
def test_corrupt_sim_broker_state_is_a_named_error(tmp_path: Path) -> None:
    state = tmp_path / "sim_broker.json"
    state.write_text('{"cash": null, "positions": {}}')  # what a NaN used to leave behind
    with pytest.raises(StateFileError, match=r"sim_broker\.json"):
        SimBroker(COSTS, 100_000.0, state_file=state)
    state.write_text("{not json")
    with pytest.raises(StateFileError, match=r"sim_broker\.json"):
        SimBroker(COSTS, 100_000.0, state_file=state)


def test_corrupt_journal_is_a_named_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateFileError, match=r"journal\.sqlite"):
        OrderJournal(path)


@pytest.mark.parametrize(
    ("key", "raw"), [("killed", '"yes"'), ("halted_day", "42"), ("reduce_only", "{")]
)
def test_corrupt_safety_state_is_a_named_error(tmp_path: Path, key: str, raw: str) -> None:
    OrderJournal(tmp_path / "journal.sqlite").close()
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    db.execute("INSERT INTO kv (key, value) VALUES (?, ?)", (key, raw))
    db.commit()
    db.close()
    with pytest.raises(StateFileError, match=r"journal\.sqlite"):
        Harness(tmp_path)


# ====================================================================== receive loops
class QueueSubscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    async def recv(self) -> Any:
        return await self.queue.get()


async def test_a_handler_bug_is_logged_with_traceback_and_the_bus_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await Harness(tmp_path).start()
    b1 = await h.bar(DAYS[0], 99, 101, 98, 100)

    async def broken(_sig: TargetPosition) -> None:
        raise RuntimeError("injected handler bug")

    monkeypatch.setattr(h.svc, "_decide", broken)
    sub = QueueSubscriber()
    loop = asyncio.create_task(h.svc._bus_loop(sub))
    try:
        sub.queue.put_nowait(signal_for(b1, 0.5, bar_seq=50))
        sub.queue.put_nowait(msgspec.structs.replace(b1, ts_event=b1.ts_event + 1, seq=99))
        await wait_until(lambda: h.svc.counters["bars"] == 2, "the bar after the failure")
        assert not loop.done() and h.svc.bus_running
        assert h.svc.counters["handler_errors"] == 1
        failures = [r for r in caplog.records if r.getMessage() == "handler_failed"]
        assert failures and failures[0].exc_info is not None
        assert failures[0].levelno == logging.ERROR
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_a_broker_event_handler_bug_does_not_stop_the_events_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await Harness(tmp_path).start()
    calls: list[str] = []

    def broken(update: Any) -> None:
        calls.append(update.order_ref)
        raise RuntimeError("injected")

    monkeypatch.setattr(h.svc.reconciler, "on_order_update", broken)
    loop = asyncio.create_task(h.svc._events_loop())
    try:
        b1 = await h.bar(DAYS[0], 99, 101, 98, 100)
        await h.signal(b1, 1.0)  # acknowledged -> broken handler
        h.broker.events.put_nowait(BrokerPosition(symbol="MSFT", quantity=3.0))
        await wait_until(lambda: "MSFT" in h.svc.positions, "the event after the failure")
        assert calls and not loop.done()
        assert h.svc.counters["handler_errors"] >= 1
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
