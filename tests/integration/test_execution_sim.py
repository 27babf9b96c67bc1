"""``python -m execution`` with the in-process simulated broker (EXECUTION_BROKER=sim) over the bus:
fills at the next bar's open with the shared cost model, and a SIGKILL restart keeps positions
and never re-sends a reference."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from shared.costs import CostModel
from shared.messages import Fill, OrderEvent, Position
from tests.integration.execution_stack import ExecutionStack, trading_days

pytestmark = pytest.mark.integration

DAYS = trading_days(dt.date(2024, 3, 4), 5)
COSTS = '{"commission_per_share": 0.01, "commission_min": 2.0, "spread_bps": 4, "slippage_bps": 1}'


async def test_sim_broker_process_fills_next_open_and_survives_sigkill(
    tmp_path: Path, busproxy: dict[str, str]
) -> None:
    stack = ExecutionStack(
        tmp_path,
        busproxy,
        broker="sim",
        execution_env={"EXECUTION_SIM_COSTS": COSTS, "EXECUTION_SIM_INITIAL_CASH": "50000"},
    )
    await stack.start()
    try:
        b1 = await stack.bar(DAYS[0], 99, 101, 98, 100)
        ref = stack.signal(b1, 1.0)  # 1% of 50k over a 2% stop of 100 = 250 -> max_position 100
        await stack.wait_for(
            lambda m: (
                isinstance(m, OrderEvent) and m.order_ref == ref and m.status == "acknowledged"
            ),
            "ack",
        )
        b2 = await stack.bar(DAYS[1], 101, 102, 100, 101.5)
        fill = await stack.wait_for(lambda m: isinstance(m, Fill) and m.order_ref == ref, "fill")
        costs = CostModel.from_dict(
            {
                "commission_per_share": 0.01,
                "commission_min": 2.0,
                "spread_bps": 4,
                "slippage_bps": 1,
            }
        )
        assert fill.price == pytest.approx(costs.fill_price(1, 101.0))
        assert fill.commission == pytest.approx(costs.commission(100, fill.price))
        assert fill.quantity == 100 and fill.account == "SIM0001"

        stack.kill_execution()
        await stack.start_execution()
        await stack.wait_for(
            lambda m: isinstance(m, Position) and m.quantity == 100 and m.producer != fill.producer,
            "position after restart",
        )
        stack.signal(b1, 1.0)  # replayed: known reference
        stack.signal(b2, 1.0)  # already at target: nothing to do
        ref3 = stack.signal(await stack.bar(DAYS[2], 101, 102, 100, 101), -1.0)
        sell = await stack.wait_for(
            lambda m: isinstance(m, OrderEvent) and m.order_ref == ref3 and m.status == "submitted",
            "sell",
        )
        assert (sell.side, sell.quantity) == ("SELL", 200.0)
        await asyncio.sleep(0.2)
        submitted = [m.order_ref for m in stack.messages(OrderEvent, status="submitted")]
        assert submitted == [ref, ref3]
        assert (await stack.status())["duplicates"] == 1
    finally:
        await stack.close()
