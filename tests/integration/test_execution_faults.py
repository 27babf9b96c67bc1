"""Fault paths through the execution service against the simulator (issue 17, item 4).

Real processes (busproxy, ``python -m ibsim``, ``python -m execution``), the real ``ib_async``
client over TCP; faults are flipped on the simulator's control port. Every wait is on a probe (a
bus message, a status field, the simulator's ``orders``/``executions``) with a deadline; a "nothing
else was sent" check waits for an explicit end marker: a signal for a symbol outside the config,
published after the signal under test on the same socket, whose refusal ("skipped") proves the
signal before it was decided.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import zoneinfo
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ibsim.faults import FaultSwitches

from shared.messages import Bar, Fill, OrderEvent, Position
from tests.integration.execution_stack import ExecutionStack, trading_days

pytestmark = pytest.mark.integration

DAYS = trading_days(dt.date(2024, 3, 4), 12)
NY = zoneinfo.ZoneInfo("America/New_York")
MARKER_SYMBOL = "ZZZZ"  # not in the config's symbols: every signal for it is refused


async def _stack(
    tmp_path: Path,
    busproxy: dict[str, str],
    paper: dict[str, Any] | None = None,
    execution_env: dict[str, str] | None = None,
) -> ExecutionStack:
    return await ExecutionStack(
        tmp_path, busproxy, paper=paper, execution_env=execution_env
    ).start()


@pytest.fixture
async def stack(tmp_path: Path, busproxy: dict[str, str]) -> AsyncIterator[ExecutionStack]:
    s = await _stack(tmp_path, busproxy)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def lmt_stack(tmp_path: Path, busproxy: dict[str, str]) -> AsyncIterator[ExecutionStack]:
    s = await _stack(
        tmp_path,
        busproxy,
        paper={"limit_offset_bps": 10.0},
        execution_env={"EXECUTION_ORDER_TYPE": "LMT"},
    )
    try:
        yield s
    finally:
        await s.close()


# ---------------------------------------------------------------------- helpers
def is_event(ref: str, status: str) -> Any:
    return lambda m: isinstance(m, OrderEvent) and m.order_ref == ref and m.status == status


async def end_marker(stack: ExecutionStack, bar: Bar) -> None:
    """Publish a marker signal after the signals under test and wait for its refusal."""
    stack.bar_seq += 1
    marker = Bar(
        symbol=MARKER_SYMBOL,
        timeframe="1d",
        bar_open_ts=bar.bar_open_ts,
        open=1,
        high=1,
        low=1,
        close=1,
        volume=0,
        ts_event=bar.ts_event,
        seq=stack.bar_seq,
    )
    ref = stack.signal(marker, 0.0)
    await stack.wait_for(is_event(ref, "skipped"), "end marker refusal")


def journal_fills(stack: ExecutionStack) -> dict[str, tuple[float, float]]:
    """exec_id -> (quantity, commission) as execution journaled them."""
    db = sqlite3.connect(str(stack.tmp / "execution" / "journal.sqlite"))
    try:
        rows = db.execute("SELECT exec_id, quantity, commission FROM fills").fetchall()
    finally:
        db.close()
    return {r[0]: (r[1], r[2]) for r in rows}


async def push(stack: ExecutionStack, bar: Bar) -> int:
    """The same bar into the simulator only (execution already has it): number of fills."""
    reply = await stack.ctl(
        {
            "cmd": "push_bar",
            "symbol": bar.symbol,
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": 1e6,
            "ts": bar.ts_event,
            "bar_open_ts": bar.bar_open_ts,
        }
    )
    assert reply["ok"], reply
    return int(reply["fills"])


async def filled_not_booked(stack: ExecutionStack, fault: dict[str, Any]) -> tuple[Bar, str]:
    """With a commission fault set: BUY 100 on a signal, filled by the simulator at the next
    bar's open; returns once IB said "Filled" (the fill is booked only with its commission
    report, which the fault holds back). The filling bar and the order's reference."""
    await stack.ctl({"cmd": "faults", "set": fault})
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    ref1 = stack.signal(b1, 1.0)
    await stack.wait_for(is_event(ref1, "acknowledged"), "ack")
    b2 = await stack.bar(DAYS[1], 101, 102, 100, 101.5)  # the simulator fills ref1 at its open
    await stack.wait_for(is_event(ref1, "filled"), "IB's Filled status")
    return b2, ref1


async def ready_with_reconnects(stack: ExecutionStack, n: int) -> bool:
    status = await stack.status()
    return bool(status.get("ready")) and status.get("reconnects", 0) >= n


# ---------------------------------------------------------------------- partial fills
async def test_partial_fills_are_booked_each_once_and_the_working_rest_counts(
    stack: ExecutionStack,
) -> None:
    await stack.ctl({"cmd": "faults", "set": {"partial_fill_fraction": 0.4}})
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    # equity 1M, stop 2% of 100 = 2 -> 5000 shares, capped at max_position 100
    ref = stack.signal(b1, 1.0)
    ack = await stack.wait_for(is_event(ref, "acknowledged"), "ack")
    assert (ack.side, ack.quantity) == ("BUY", 100.0)

    b2 = await stack.bar(DAYS[1], 100, 101, 99, 100)  # fills 40 of 100
    await stack.wait_for(lambda m: isinstance(m, Fill) and m.order_ref == ref, "first part")
    # the same full target on the next bar: 40 held + 60 working = 100, nothing to send
    ref2 = stack.signal(b2, 1.0)
    await end_marker(stack, b2)
    assert not stack.messages(OrderEvent, order_ref=ref2)
    assert len(await stack.sim_orders()) == 1

    await stack.bar(DAYS[2], 100, 101, 99, 100)  # 40 more
    await stack.bar(DAYS[3], 100, 101, 99, 100)  # the last 20
    await stack.wait_for(is_event(ref, "filled"), "filled")
    await stack.wait_until(lambda: len(stack.messages(Fill, order_ref=ref)) >= 3, "3 fills")
    executions = await stack.sim_executions(ref)
    assert [e["qty"] for e in executions] == [40.0, 40.0, 20.0]
    fills = stack.messages(Fill, order_ref=ref)
    assert sorted(f.exec_id for f in fills) == sorted(e["exec_id"] for e in executions)
    by_id = {e["exec_id"]: e for e in executions}
    for f in fills:
        assert f.quantity == by_id[f.exec_id]["qty"]
        assert f.commission == pytest.approx(by_id[f.exec_id]["commission"])
    # IB's per-order minimum: the parts of one order together pay it (a later part may pay 0)
    assert sum(f.commission for f in fills) == pytest.approx(
        sum(e["commission"] for e in executions)
    )
    assert sum(f.commission for f in fills) > 0
    await stack.wait_for(
        lambda m: isinstance(m, Position) and m.symbol == "AAPL" and m.quantity == 100,
        "position 100",
    )
    # a fractional target now reduces from the full position: 0.35 * 100 = 35 -> SELL 65
    b5 = await stack.bar(DAYS[4], 100, 101, 99, 100)
    ref5 = stack.signal(b5, 0.35)
    sell = await stack.wait_for(is_event(ref5, "acknowledged"), "sell ack")
    assert (sell.side, sell.quantity) == ("SELL", 65.0)
    assert (await stack.status())["fills"] == 3


# ---------------------------------------------------------------------- working order + new target
async def test_new_target_while_a_limit_order_works_counts_it(lmt_stack: ExecutionStack) -> None:
    stack = lmt_stack
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    ref1 = stack.signal(b1, 0.6)  # 60 shares, LMT at 100 * (1 + 10 bps) = 100.10
    ack = await stack.wait_for(is_event(ref1, "acknowledged"), "ack 1")
    assert (ack.side, ack.quantity, ack.order_type) == ("BUY", 60.0, "LMT")
    [order] = await stack.sim_orders(ref1)
    assert order["order_type"] == "LMT" and order["lmt_price"] == pytest.approx(100.10)

    # the market runs away: the limit does not fill and the order keeps working
    b2 = await stack.bar(DAYS[1], 110, 112, 109, 111)
    assert (await stack.sim_executions()) == []
    ref2 = stack.signal(b2, 1.0)  # full size 100: 60 are working -> 40 more, not 100
    ack2 = await stack.wait_for(is_event(ref2, "acknowledged"), "ack 2")
    assert (ack2.side, ack2.quantity) == ("BUY", 40.0)
    [order2] = await stack.sim_orders(ref2)
    assert order2["lmt_price"] == pytest.approx(round(111 * 1.001, 2))

    # the same target again (a new bar): 100 already working, nothing more
    b3 = await stack.bar(DAYS[2], 112, 113, 111, 112, to_broker=False)
    ref3 = stack.signal(b3, 1.0)
    await end_marker(stack, b3)
    assert not stack.messages(OrderEvent, order_ref=ref3)
    assert len(await stack.sim_orders()) == 2

    # the price comes back: both limits fill; the position is exactly the target, not 200
    await push(stack, b3)
    b4 = await stack.bar(DAYS[3], 99, 100, 98, 99)
    for ref in (ref1, ref2):
        await stack.wait_for(is_event(ref, "filled"), f"{ref} filled")
    await stack.wait_for(
        lambda m: isinstance(m, Position) and m.symbol == "AAPL" and m.quantity == 100,
        "position 100",
    )
    executions = await stack.sim_executions()
    assert sum(e["qty"] for e in executions) == 100
    for e in executions:  # a buy limit fills at the open when it gaps below, never above
        order = (await stack.sim_orders(e["order_ref"]))[0]
        assert e["price"] <= order["lmt_price"] + 1e-9
    ref4 = stack.signal(b4, 1.0)
    await end_marker(stack, b4)
    assert not stack.messages(OrderEvent, order_ref=ref4)


async def test_new_target_before_the_first_order_is_acknowledged_counts_it(
    stack: ExecutionStack,
) -> None:
    """Acks held back 3 s: the second target is decided while the first order is still
    unacknowledged, and must count it (placed is working, acknowledged or not)."""
    await stack.ctl({"cmd": "faults", "set": {"delay_acks_ms": 3000}})
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    ref1 = stack.signal(b1, 0.6)
    await stack.wait_for(is_event(ref1, "submitted"), "submitted 1")
    await stack.wait_until(lambda: _has_sim_order(stack, ref1), "ibsim got order 1")
    b2 = await stack.bar(DAYS[1], 100, 101, 99, 100, to_broker=False)
    ref2 = stack.signal(b2, 1.0)
    sub2 = await stack.wait_for(is_event(ref2, "submitted"), "submitted 2")
    assert (sub2.side, sub2.quantity) == ("BUY", 40.0)
    received = list(stack.received)
    i_sub2 = received.index(sub2)
    assert not any(is_event(ref1, "acknowledged")(m) for m in received[:i_sub2]), (
        "the first ack came before the second decision: the test proved nothing"
    )
    # both fill on the next bar: exactly the target
    await push(stack, b2)
    await stack.wait_for(
        lambda m: isinstance(m, Position) and m.symbol == "AAPL" and m.quantity == 100,
        "position 100",
    )
    orders = await stack.sim_orders()
    assert sorted((o["order_ref"], o["quantity"]) for o in orders) == [(ref1, 60.0), (ref2, 40.0)]


async def _has_sim_order(stack: ExecutionStack, ref: str) -> bool:
    return bool(await stack.sim_orders(ref))


# ---------------------------------------------------------------------- disconnect, pending order
async def test_disconnect_with_a_working_order_then_reconnect(lmt_stack: ExecutionStack) -> None:
    stack = lmt_stack
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    ref1 = stack.signal(b1, 0.5)  # BUY 50 LMT 100.10
    await stack.wait_for(is_event(ref1, "acknowledged"), "ack")
    b2 = await stack.bar(DAYS[1], 110, 112, 109, 111)  # no fill: still working
    reconnects = int((await stack.status()).get("reconnects", 0))

    await stack.ctl({"cmd": "faults", "set": {"outage_seconds": 2.0}})
    await stack.wait_until(
        lambda: _status_is(stack, "broker_connected", False),
        "execution saw the disconnect",
    )
    # a signal during the outage is refused, never queued and sent later
    ref_out = stack.signal(b2, 1.0)
    refused = await stack.wait_for(is_event(ref_out, "skipped"), "refused while disconnected")
    assert "not connected" in refused.reason

    await stack.wait_until(
        lambda: ready_with_reconnects(stack, reconnects + 1), "reconnected", timeout_s=30
    )
    # the working order came back from the broker and still counts: target 1.0 -> BUY 50 more
    b3 = await stack.bar(DAYS[2], 110, 112, 109, 111)
    ref3 = stack.signal(b3, 1.0)
    ack3 = await stack.wait_for(is_event(ref3, "acknowledged"), "ack 3")
    assert (ack3.side, ack3.quantity) == ("BUY", 50.0)

    # both fill on a bar that comes back: each fill exactly once
    await stack.bar(DAYS[3], 99, 100, 98, 99)
    for ref in (ref1, ref3):
        await stack.wait_for(lambda m, r=ref: isinstance(m, Fill) and m.order_ref == r, ref)
    await stack.wait_for(
        lambda m: isinstance(m, Position) and m.symbol == "AAPL" and m.quantity == 100,
        "position 100",
    )
    # another drop and reconnect re-requests executions: still one fill per execution
    before = int((await stack.status()).get("reconnects", 0))
    await stack.ctl({"cmd": "faults", "set": {"drop_connection_now": True}})
    await stack.wait_until(lambda: ready_with_reconnects(stack, before + 1), "reconnect 2")
    b5 = await stack.bar(DAYS[4], 99, 100, 98, 99, to_broker=False)
    stack.signal(b1, 0.5)  # replayed signals: duplicates, never a second order
    stack.signal(b3, 1.0)
    await end_marker(stack, b5)
    executions = await stack.sim_executions()
    fills = stack.messages(Fill)
    assert sorted(f.exec_id for f in fills) == sorted(e["exec_id"] for e in executions)
    orders = await stack.sim_orders()
    refs = [o["order_ref"] for o in orders]
    assert sorted(refs) == sorted({ref1, ref3}) and len(refs) == len(set(refs))
    assert ref_out not in refs
    assert (await stack.status())["fills"] == len(executions)
    await stack.wait_until(
        lambda: journal_fills(stack).keys() == {e["exec_id"] for e in executions},
        "every execution journaled once",
    )


async def test_rest_of_a_partial_fill_during_an_outage_is_recovered_once(
    stack: ExecutionStack,
) -> None:
    await stack.ctl({"cmd": "faults", "set": {"partial_fill_fraction": 0.5}})
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    ref = stack.signal(b1, 1.0)  # BUY 100 MKT
    await stack.wait_for(is_event(ref, "acknowledged"), "ack")
    await stack.bar(DAYS[1], 100, 101, 99, 100)  # 50 live
    await stack.wait_for(lambda m: isinstance(m, Fill) and m.order_ref == ref, "live part")
    reconnects = int((await stack.status()).get("reconnects", 0))
    await stack.ctl({"cmd": "faults", "set": {"outage_seconds": 2.0}})
    await stack.wait_until(
        lambda: _status_is(stack, "broker_connected", False), "execution saw the outage"
    )
    b3 = await stack.bar(DAYS[2], 100, 101, 99, 100, to_broker=False)
    assert await push(stack, b3) == 1  # the other 50 fill while execution is away
    await stack.wait_until(
        lambda: ready_with_reconnects(stack, reconnects + 1), "reconnected", timeout_s=30
    )
    await stack.wait_until(lambda: len(stack.messages(Fill, order_ref=ref)) >= 2, "recovered")
    await stack.wait_for(
        lambda m: isinstance(m, Position) and m.symbol == "AAPL" and m.quantity == 100,
        "position 100",
    )
    # one more drop: executions are requested again, nothing is booked twice
    before = int((await stack.status()).get("reconnects", 0))
    await stack.ctl({"cmd": "faults", "set": {"drop_connection_now": True}})
    await stack.wait_until(lambda: ready_with_reconnects(stack, before + 1), "reconnect 2")
    b4 = await stack.bar(DAYS[3], 100, 101, 99, 100, to_broker=False)
    ref4 = stack.signal(b4, 1.0)  # on target: nothing
    await end_marker(stack, b4)
    assert not stack.messages(OrderEvent, order_ref=ref4)
    executions = await stack.sim_executions(ref)
    fills = stack.messages(Fill, order_ref=ref)
    assert [e["qty"] for e in executions] == [50.0, 50.0]
    assert sorted(f.exec_id for f in fills) == sorted(e["exec_id"] for e in executions)
    by_id = {e["exec_id"]: e for e in executions}
    for f in fills:
        assert f.commission == pytest.approx(by_id[f.exec_id]["commission"])
    status = await stack.status()
    assert status["fills"] == 2 and status["recovered_fills"] == 1
    assert [o["order_ref"] for o in await stack.sim_orders()] == [ref]


async def _status_is(stack: ExecutionStack, key: str, value: Any) -> bool:
    status = await stack.status()
    return key in status and status[key] == value


async def _not_ready(stack: ExecutionStack) -> bool:
    status = await stack.status()
    return bool(status) and not status.get("ready")


# ---------------------------------------------------------------------- commission reports
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"delay_commission_ms": 2500}, id="late"),  # after the 1 s commission wait
        pytest.param({"drop_commission_next_n": 1}, id="missing"),
    ],
)
async def test_fill_is_booked_with_its_commission_never_zero(
    stack: ExecutionStack, fault: dict[str, Any]
) -> None:
    reply = await stack.ctl({"cmd": "faults", "set": fault})
    assert reply["ok"], reply
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    ref = stack.signal(b1, 1.0)
    await stack.wait_for(is_event(ref, "acknowledged"), "ack")
    await stack.bar(DAYS[1], 101, 102, 100, 101.5)
    [execution] = await stack.sim_executions(ref)
    assert execution["commission"] > 0
    fill = await stack.wait_for(
        lambda m: isinstance(m, Fill) and m.order_ref == ref, "fill", timeout_s=30
    )
    assert fill.exec_id == execution["exec_id"]
    assert fill.commission == pytest.approx(execution["commission"])
    # published first, journaled right after: wait for the row
    await stack.wait_until(lambda: fill.exec_id in journal_fills(stack), "fill journaled")
    assert journal_fills(stack)[fill.exec_id][1] == pytest.approx(execution["commission"])
    # the late report, once it comes, books nothing twice
    b3 = await stack.bar(DAYS[2], 101, 102, 100, 101.5)
    await end_marker(stack, b3)
    assert len(stack.messages(Fill)) == 1
    assert all(f.commission > 0 for f in stack.messages(Fill))


async def test_a_target_between_ibs_filled_and_the_booked_fill_orders_nothing_twice(
    stack: ExecutionStack,
) -> None:
    """Commission reports held back 2.5 s: IB says "Filled" at once, but the fill is booked only
    with its report, so for 2.5 s the order is neither working at IB nor in the position book.
    The same target on the next bar must count those shares (on target: no second order).
    Found by the stability loop: under load, a commission report came after the next signal and
    execution sold the same 20 shares twice."""
    b2, ref1 = await filled_not_booked(stack, {"delay_commission_ms": 2500})
    ref2 = stack.signal(b2, 1.0)
    await end_marker(stack, b2)  # ref2 was decided before this
    received = list(stack.received)
    booked = [m for m in received if isinstance(m, Fill)]
    assert not booked, "the fill was booked before the second decision: the test proved nothing"
    orders = await stack.sim_orders()
    assert [o["order_ref"] for o in orders] == [ref1], [
        (o["order_ref"], o["action"], o["quantity"], o.get("status")) for o in orders
    ]
    assert not stack.messages(OrderEvent, order_ref=ref2)  # on target: nothing sent or refused
    # once the report comes, the fill is booked once and the position is the target
    fill = await stack.wait_for(
        lambda m: isinstance(m, Fill) and m.order_ref == ref1, "fill", timeout_s=30
    )
    await stack.wait_for(
        lambda m: isinstance(m, Position) and m.symbol == "AAPL" and m.quantity == fill.quantity,
        "position after the booked fill",
    )
    b3 = await stack.bar(DAYS[2], 101, 102, 100, 101.5)
    ref3 = stack.signal(b3, 1.0)
    await end_marker(stack, b3)
    assert not stack.messages(OrderEvent, order_ref=ref3)
    assert [o["order_ref"] for o in await stack.sim_orders()] == [ref1]


@pytest.mark.parametrize("drop", ["connection_drop", "outage"])
async def test_a_fill_unbooked_when_the_connection_drops_is_booked_once_after_it(
    stack: ExecutionStack, drop: str
) -> None:
    """IB said "Filled", the commission report never came (dropped), then the connection
    dropped. On reconnect ib_async rebuilds the completed order with a fill count of 0, so the
    done order no longer holds the unbooked shares; the broker's position report and the
    executions re-requested since the last one must: the same target orders nothing, the fill
    is booked once, with IB's commission, and the position is the target."""
    b2, ref1 = await filled_not_booked(stack, {"drop_commission_next_n": 1})
    assert not stack.messages(Fill), "booked before the drop: the test would prove nothing"
    reconnects = int((await stack.status()).get("reconnects", 0))
    fault = {"drop_connection_now": True} if drop == "connection_drop" else {"outage_seconds": 2.0}
    await stack.ctl({"cmd": "faults", "set": fault})
    await stack.wait_until(
        lambda: ready_with_reconnects(stack, reconnects + 1), "reconnected", timeout_s=30
    )
    # at once after the reconnect (not waiting for the recovered fill): on target, nothing
    b3 = await stack.bar(DAYS[2], 101, 102, 100, 101.5)
    ref3 = stack.signal(b3, 1.0)
    ref2 = stack.signal(b2, 1.0)  # the bar the order filled on, replayed: nothing either
    await end_marker(stack, b3)
    fill = await stack.wait_for(
        lambda m: isinstance(m, Fill) and m.order_ref == ref1, "recovered fill", timeout_s=30
    )
    [execution] = await stack.sim_executions(ref1)
    assert fill.exec_id == execution["exec_id"]
    assert fill.commission == pytest.approx(execution["commission"]) and fill.commission > 0
    assert not stack.messages(OrderEvent, order_ref=ref3)
    assert not stack.messages(OrderEvent, order_ref=ref2)
    assert [o["order_ref"] for o in await stack.sim_orders()] == [ref1]
    assert [f.exec_id for f in stack.messages(Fill)] == [execution["exec_id"]]
    await stack.wait_until(lambda: fill.exec_id in journal_fills(stack), "fill journaled")
    assert journal_fills(stack)[fill.exec_id] == (
        pytest.approx(execution["qty"]),
        pytest.approx(execution["commission"]),
    )
    status = await stack.status()
    assert status["fills"] == 1 and status["recovered_fills"] == 1


def test_commission_fault_switches_are_validated() -> None:
    faults = FaultSwitches()
    faults.update({"delay_commission_ms": 250, "drop_commission_next_n": 2})
    assert faults.delay_commission_ms == 250.0
    assert [faults.take_commission_drop() for _ in range(3)] == [True, True, False]
    for bad in (
        {"delay_commission_ms": -1},
        {"delay_commission_ms": float("nan")},
        {"delay_commission_ms": 600_001},
        {"drop_commission_next_n": -1},
        {"drop_commission_next_n": "x"},
    ):
        with pytest.raises(ValueError):
            FaultSwitches().update(bad)
    faults.clear()
    assert faults.delay_commission_ms == 0.0 and faults.drop_commission_next_n == 0


async def test_commission_faults_on_the_control_port(stack: ExecutionStack) -> None:
    reply = await stack.ctl({"cmd": "faults", "set": {"delay_commission_ms": -5}})
    assert not reply["ok"]
    reply = await stack.ctl({"cmd": "faults", "set": {"drop_commission_next_n": 3}})
    assert reply["ok"] and reply["faults"]["drop_commission_next_n"] == 3
    reply = await stack.ctl({"cmd": "faults", "clear": True})
    assert reply["faults"]["drop_commission_next_n"] == 0


# ---------------------------------------------------------------------- wall clock
async def test_wall_clock_refuses_outside_the_configured_days(
    tmp_path: Path, busproxy: dict[str, str]
) -> None:
    """EXECUTION_CLOCK=wall: the wall clock, not the bar's timestamp, decides. Trading days
    exclude today and tomorrow (New York), so a bar dated on a Tuesday in session is refused."""
    today = dt.datetime.now(NY).date()
    names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    excluded = {names[today.weekday()], names[(today.weekday() + 1) % 7]}
    days = [d for d in names if d not in excluded]
    stack = await _stack(
        tmp_path,
        busproxy,
        paper={
            "trading_days": days,
            "trading_hours": {"start": "00:00", "end": "23:59", "calendar": ""},
        },
        execution_env={"EXECUTION_CLOCK": "wall"},
    )
    try:
        assert (await stack.status())["clock"] == "wall"
        tuesday = await stack.bar(dt.date(2024, 3, 5), 99, 101, 98, 100)
        ref = stack.signal(tuesday, 1.0)
        refused = await stack.wait_for(is_event(ref, "skipped"), "refusal")
        assert "outside trading days" in refused.reason
        assert await stack.sim_orders() == []
    finally:
        await stack.close()


async def test_wall_clock_trades_a_bar_dated_outside_the_days(
    tmp_path: Path, busproxy: dict[str, str]
) -> None:
    """The converse: every day and hour open on the wall clock, a bar dated on a Saturday (which
    the bar clock refuses) is traded."""
    stack = await _stack(
        tmp_path,
        busproxy,
        paper={
            "trading_days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            "trading_hours": {"start": "00:00", "end": "23:59", "calendar": ""},
        },
        execution_env={"EXECUTION_CLOCK": "wall"},
    )
    try:
        saturday = await stack.bar(dt.date(2024, 3, 9), 99, 101, 98, 100)
        ref = stack.signal(saturday, 0.25)
        ack = await stack.wait_for(is_event(ref, "acknowledged"), "ack")
        assert (ack.side, ack.quantity) == ("BUY", 25.0)
    finally:
        await stack.close()
