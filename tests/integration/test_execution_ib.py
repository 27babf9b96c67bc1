"""Execution against the TWS-protocol simulator: separate processes, real sockets, real ib_async.

busproxy, ``python -m ibsim`` and ``python -m execution`` (EXECUTION_BROKER=ib) run as processes;
the test drives them through the bus, the simulator's control port and execution's commands.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from shared.messages import Fill, OrderEvent, Position
from tests.integration.execution_stack import ExecutionStack, trading_days
from tests.track_records import write_passing_track_record

pytestmark = pytest.mark.integration

DAYS = trading_days(dt.date(2024, 3, 4), 10)


async def broker_end_marker(stack: ExecutionStack, day: dt.date) -> None:
    """An explicit end marker through the broker: a new MSFT order, acknowledged. The
    simulator answers on the same connection in order, and execution handles broker events in
    order, so everything the broker sent before this order's acknowledgement (a stray status, a
    re-reported execution) has been handled and published before the acknowledgement is."""
    marker_bar = await stack.bar(day, 50, 51, 49, 50, symbol="MSFT")
    ref = stack.signal(marker_bar, 0.1)
    await stack.wait_for(
        lambda m: isinstance(m, OrderEvent) and m.order_ref == ref and m.status == "acknowledged",
        "end marker order acknowledged",
    )


@pytest.fixture
async def stack(tmp_path: Path, busproxy: dict[str, str]):
    s = await ExecutionStack(tmp_path, busproxy).start()
    try:
        yield s
    finally:
        await s.close()


async def test_target_change_becomes_the_right_order_and_fills_with_commission(
    stack: ExecutionStack,
) -> None:
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    # equity 1M (ibsim), stop 2% of 100 -> full size capped at max_position 100 -> 0.5 = 50
    ref = stack.signal(b1, 0.5)
    ack = await stack.wait_for(
        lambda m: isinstance(m, OrderEvent) and m.order_ref == ref and m.status == "acknowledged",
        "ack",
    )
    assert (ack.side, ack.quantity) == ("BUY", 50.0)
    [order] = await stack.sim_orders(ref)
    assert (order["action"], order["quantity"], order["order_type"]) == ("BUY", 50.0, "MKT")
    assert order["client_id"] == 11

    await stack.bar(DAYS[1], 101, 102, 100, 101.5)
    fill = await stack.wait_for(lambda m: isinstance(m, Fill) and m.order_ref == ref, "fill")
    [execution] = await stack.sim_executions(ref)
    assert fill.exec_id == execution["exec_id"]
    assert fill.quantity == 50 and fill.price == pytest.approx(execution["price"])
    assert fill.commission == pytest.approx(execution["commission"]) and fill.commission > 0
    assert fill.account == "DU1234567"
    await stack.wait_for(
        lambda m: isinstance(m, Position) and m.symbol == "AAPL" and m.quantity == 50, "position 50"
    )
    await stack.wait_for(
        lambda m: isinstance(m, OrderEvent) and m.order_ref == ref and m.status == "filled",
        "filled event",
    )
    positions = await stack.command("positions")
    assert positions["AAPL"]["quantity"] == 50

    # the same signal again (a replayed message) sends nothing; a new target sends the delta
    stack.signal(b1, 0.5)
    b3 = await stack.bar(DAYS[2], 101, 102, 100, 101)
    ref3 = stack.signal(b3, -1.0)
    sell = await stack.wait_for(
        lambda m: isinstance(m, OrderEvent) and m.order_ref == ref3 and m.status == "acknowledged",
        "sell ack",
    )
    assert (sell.side, sell.quantity) == ("SELL", 150.0)
    assert len(await stack.sim_orders()) == 2
    status = await stack.status()
    assert status["duplicates"] >= 1 and status["paper"] is True


async def test_rejected_order_surfaces_as_rejected_with_code_and_reason(
    stack: ExecutionStack,
) -> None:
    await stack.ctl(
        {
            "cmd": "faults",
            "set": {"reject_next_n": 1, "reject_code": 201, "reject_reason": "insufficient margin"},
        }
    )
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    ref = stack.signal(b1, 1.0)
    rejected = await stack.wait_for(
        lambda m: isinstance(m, OrderEvent) and m.order_ref == ref and m.status == "rejected",
        "rejection",
    )
    assert "201" in rejected.reason and "insufficient margin" in rejected.reason
    await broker_end_marker(stack, DAYS[0])  # any stray status has arrived; none says "cancelled"
    statuses = [m.status for m in stack.messages(OrderEvent, order_ref=ref)]
    assert "cancelled" not in statuses and statuses[0] == "submitted"
    [order] = await stack.sim_orders(ref)
    assert order["reject_code"] == 201
    assert (await stack.status())["rejected"] == 1


async def test_fill_during_a_disconnect_is_recovered_exactly_once(stack: ExecutionStack) -> None:
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    ref = stack.signal(b1, 1.0)
    await stack.wait_for(
        lambda m: isinstance(m, OrderEvent) and m.order_ref == ref and m.status == "acknowledged",
        "ack",
    )
    # nightly-reset style outage: the connection drops and reconnects are refused for 1.5 s;
    # the order fills at the simulator meanwhile
    await stack.ctl({"cmd": "faults", "set": {"outage_seconds": 1.5}})
    reply = await stack.ctl(
        {
            "cmd": "push_bar",
            "symbol": "AAPL",
            "open": 101,
            "high": 102,
            "low": 100,
            "close": 101.5,
            "volume": 1e6,
            "ts": b1.ts_event + 86_400 * 10**9,
        }
    )
    assert reply["fills"] == 1
    assert not stack.messages(Fill)
    fill = await stack.wait_for(
        lambda m: isinstance(m, Fill) and m.order_ref == ref, "recovered fill"
    )
    [execution] = await stack.sim_executions(ref)
    assert fill.exec_id == execution["exec_id"]
    assert fill.commission == pytest.approx(execution["commission"])
    await stack.wait_for(lambda m: isinstance(m, Position) and m.quantity == 100, "position")
    status = await stack.wait_until(stack.status, "status")
    assert status["recovered_fills"] == 1 and status["reconnects"] >= 2
    # a second drop and reconnect re-requests executions again: still exactly one fill
    await stack.ctl({"cmd": "faults", "set": {"drop_connection_now": True}})
    await stack.wait_until(
        lambda: _reconnects_at_least(stack, status["reconnects"] + 1), "second reconnect"
    )
    await broker_end_marker(stack, DAYS[1])  # the reconnect's re-reported executions are in
    assert len(stack.messages(Fill)) == 1
    assert (await stack.status())["fills"] == 1


async def _reconnects_at_least(stack: ExecutionStack, n: int) -> bool:
    status = await stack.status()
    return bool(status.get("ready")) and status.get("reconnects", 0) >= n


async def test_sigkill_mid_order_and_restart_sends_no_duplicate(stack: ExecutionStack) -> None:
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    await stack.ctl({"cmd": "faults", "set": {"delay_acks_ms": 3000}})
    ref = stack.signal(b1, 1.0)
    await stack.wait_until(lambda: stack.sim_orders(ref), "order reached the simulator")
    assert not stack.messages(OrderEvent, order_ref=ref, status="acknowledged")
    stack.kill_execution()  # SIGKILL before the acknowledgement came back

    await stack.ctl({"cmd": "faults", "clear": True})
    await stack.start_execution()
    stack.signal(b1, 1.0)  # the same decision replayed after the restart
    stack.signal(b1, 0.3)  # and a different target for the same bar
    await stack.wait_until(lambda: _duplicates_at_least(stack, 2), "duplicates counted")
    orders = await stack.sim_orders()
    assert [o["order_ref"] for o in orders] == [ref]

    await stack.bar(DAYS[1], 101, 102, 100, 101.5)
    fill = await stack.wait_for(lambda m: isinstance(m, Fill) and m.order_ref == ref, "fill")
    assert fill.quantity == 100
    await stack.wait_for(lambda m: isinstance(m, Position) and m.quantity == 100, "position")
    assert (await stack.command("positions"))["AAPL"]["quantity"] == 100
    assert len(await stack.sim_orders()) == 1


async def _duplicates_at_least(stack: ExecutionStack, n: int) -> bool:
    return int((await stack.status()).get("duplicates", 0)) >= n


async def test_sigkill_after_fill_restart_reconciles_and_publishes_the_fill_once(
    stack: ExecutionStack,
) -> None:
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    ref = stack.signal(b1, 1.0)
    await stack.wait_for(
        lambda m: isinstance(m, OrderEvent) and m.order_ref == ref and m.status == "acknowledged",
        "ack",
    )
    stack.kill_execution()
    reply = await stack.ctl(
        {
            "cmd": "push_bar",
            "symbol": "AAPL",
            "open": 101,
            "high": 102,
            "low": 100,
            "close": 101.5,
            "volume": 1e6,
            "ts": b1.ts_event + 86_400 * 10**9,
        }
    )
    assert reply["fills"] == 1  # filled while execution was dead
    await stack.start_execution()
    fill = await stack.wait_for(lambda m: isinstance(m, Fill) and m.order_ref == ref, "fill")
    await stack.wait_for(lambda m: isinstance(m, Position) and m.quantity == 100, "position")
    stack.kill_execution()
    await stack.start_execution()  # once more: the fill is not published again
    await stack.wait_until(lambda: _reconnects_at_least(stack, 1), "reconciled")
    await broker_end_marker(stack, DAYS[1])  # the restart's re-reported executions are in
    assert [f.exec_id for f in stack.messages(Fill)] == [fill.exec_id]
    status = await stack.status()
    assert status["positions"] == {"AAPL": 100}


async def test_kill_switch_flattens_and_blocks_until_rearm(stack: ExecutionStack) -> None:
    b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
    stack.signal(b1, 1.0)
    b2 = await stack.bar(DAYS[1], 100, 101, 99, 100)
    await stack.wait_for(lambda m: isinstance(m, Position) and m.quantity == 100, "long 100")
    result = await stack.command("kill", {"reason": "test"})
    assert result["killed"] and result["orders"] == ["flat-AAPL-kill-1"]
    b3 = await stack.bar(DAYS[2], 100, 101, 99, 100)
    await stack.wait_for(lambda m: isinstance(m, Position) and m.quantity == 0, "flat")
    ref = stack.signal(b3, 1.0)
    refused = await stack.wait_for(
        lambda m: isinstance(m, OrderEvent) and m.order_ref == ref, "refusal"
    )
    assert refused.status == "skipped" and "kill switch" in refused.reason
    assert (await stack.status())["killed"] is True
    await stack.command("rearm")
    ref = stack.signal(b2, 0.5, bar_seq=1000)
    await stack.wait_for(
        lambda m: isinstance(m, OrderEvent) and m.order_ref == ref and m.status == "acknowledged",
        "trading again",
    )
    assert (await stack.status())["killed"] is False


async def test_outside_trading_hours_is_refused(stack: ExecutionStack) -> None:
    saturday = await stack.bar(dt.date(2024, 3, 9), 99, 101, 98, 100)
    ref = stack.signal(saturday, 1.0)
    refused = await stack.wait_for(
        lambda m: isinstance(m, OrderEvent) and m.order_ref == ref, "refusal"
    )
    assert refused.status == "skipped" and "outside trading days" in refused.reason
    assert await stack.sim_orders() == []


@pytest.mark.parametrize("confirm", [False, True])
async def test_live_account_is_refused(
    tmp_path: Path, busproxy: dict[str, str], confirm: bool
) -> None:
    execution_env = {"EXECUTION_CONFIRM_LIVE": "yes-i-mean-live"} if confirm else {}
    if confirm:  # the third condition: a paper track record (make compare reports)
        write_passing_track_record(tmp_path / "reports")
        execution_env["EXECUTION_REPORTS_DIR"] = str(tmp_path / "reports")
    s = await ExecutionStack(
        tmp_path,
        busproxy,
        paper={"allow_live": confirm},
        ibsim_env={"IBSIM_LIVE_ACCOUNT": "true"},
        execution_env=execution_env,
    ).start()
    try:
        status = await s.status()
        assert status["account"] == "U1234567" and status["paper"] is False
        b1 = await s.bar(DAYS[0], 99, 101, 98, 100)
        ref = s.signal(b1, 1.0)
        first = await s.wait_for(
            lambda m: isinstance(m, OrderEvent) and m.order_ref == ref, "decision"
        )
        if confirm:
            assert first.status == "submitted"
        else:
            assert first.status == "skipped" and "LIVE account" in first.reason
            assert "LIVE" in status["trading_blocked"]
            assert await s.sim_orders() == []
    finally:
        await s.close()


async def test_daily_loss_limit_flattens_and_blocks_the_day(
    tmp_path: Path, busproxy: dict[str, str]
) -> None:
    s = await ExecutionStack(tmp_path, busproxy, paper={"max_daily_loss": 500.0}).start()
    try:
        b1 = await s.bar(DAYS[0], 99, 101, 98, 100)
        s.signal(b1, 1.0)
        b2 = await s.bar(DAYS[1], 100, 100, 90, 90)  # long 100 from ~100, marked at 90: -1000
        await s.wait_until(lambda: _halted(s), "daily loss halt")
        flat = await s.wait_for(
            lambda m: (
                isinstance(m, OrderEvent)
                and m.order_ref.startswith("flat-AAPL-daily_loss")
                and m.status == "acknowledged"
            ),
            "flatten order",
        )
        assert (flat.side, flat.quantity) == ("SELL", 100.0)
        ref = s.signal(b2, 1.0, bar_seq=500)  # the same day: refused
        refused = await s.wait_for(
            lambda m: isinstance(m, OrderEvent) and m.order_ref == ref, "refusal"
        )
        assert refused.status == "skipped" and "max daily loss" in refused.reason
        await s.bar(DAYS[2], 90, 91, 89, 90)
        await s.wait_for(lambda m: isinstance(m, Position) and m.quantity == 0, "flat")
    finally:
        await s.close()


async def _halted(s: ExecutionStack) -> bool:
    return bool((await s.status()).get("halted_day"))


async def test_bracket_order_with_atr_stop_and_take_profit(
    tmp_path: Path, busproxy: dict[str, str]
) -> None:
    s = await ExecutionStack(
        tmp_path,
        busproxy,
        paper={
            "order_type": "BRACKET",
            "atr_period": 3,
            "stop_atr_multiple": 1.0,
            "take_profit_atr_multiple": 2.0,
        },
    ).start()
    try:
        for day in DAYS[:3]:  # ATR(3) of bars with a true range of 2 -> 2.0
            bar = await s.bar(day, 100, 101, 99, 100)
        ref = s.signal(bar, 1.0)
        ack = await s.wait_for(
            lambda m: (
                isinstance(m, OrderEvent) and m.order_ref == ref and m.status == "acknowledged"
            ),
            "bracket ack",
        )
        assert ack.order_type == "BRACKET"
        orders = {o["order_ref"]: o for o in await s.sim_orders()}
        parent, tp, sl = orders[ref], orders[f"{ref}-tp"], orders[f"{ref}-sl"]
        assert (parent["order_type"], parent["action"], parent["quantity"]) == ("LMT", "BUY", 100)
        assert parent["lmt_price"] == pytest.approx(100.05)  # close + 5 bps
        assert (tp["order_type"], tp["action"], tp["lmt_price"]) == ("LMT", "SELL", 104.0)
        assert (sl["order_type"], sl["action"], sl["aux_price"]) == ("STP", "SELL", 98.0)
        assert tp["parent_id"] == sl["parent_id"] == parent["order_id"]

        await s.bar(DAYS[3], 100, 100.5, 99.5, 100)  # parent fills at the open
        await s.wait_for(lambda m: isinstance(m, Position) and m.quantity == 100, "long")
        await s.bar(DAYS[4], 99, 99, 97, 97.5)  # through the stop
        stop_fill = await s.wait_for(
            lambda m: isinstance(m, Fill) and m.order_ref == f"{ref}-sl", "stop fill"
        )
        assert stop_fill.side == "SELL" and stop_fill.quantity == 100
        await s.wait_for(lambda m: isinstance(m, Position) and m.quantity == 0, "flat")
        await s.wait_for(
            lambda m: (
                isinstance(m, OrderEvent) and m.order_ref == f"{ref}-tp" and m.status == "cancelled"
            ),
            "take-profit cancelled (OCA)",
        )
    finally:
        await s.close()
