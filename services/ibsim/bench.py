"""placeOrder -> orderStatus(Submitted) latency with the real ib_async client over loopback.

The simulator runs as a separate process (``python -m ibsim``), as in ``make run``. Each sample
is one LMT order far from the market: the time from ``IB.placeOrder`` until the client has
processed the simulator's Submitted status; the order is then cancelled (not timed) so the book
stays small. ib_async's own request throttle (45 messages/s) is switched off: it would measure
the client's pacing, not the round trip.

    python -m ibsim.bench --n 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from typing import Any

from ib_async import IB, Contract, LimitOrder, Stock, Trade

from ibsim.process import SimulatorProcess


def _percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a real sample)."""
    rank = max(1, min(len(sorted_ms), round(q / 100.0 * len(sorted_ms) + 0.5)))
    return sorted_ms[rank - 1]


async def _await_status(trade: Trade, wanted: str) -> float:
    """perf_counter() at the moment the client processed ``wanted``."""
    loop = asyncio.get_running_loop()
    reached: asyncio.Future[float] = loop.create_future()

    def on_status(t: Trade) -> None:
        if t.orderStatus.status == wanted and not reached.done():
            reached.set_result(time.perf_counter())

    trade.statusEvent += on_status
    try:
        if trade.orderStatus.status == wanted:
            return time.perf_counter()
        return await asyncio.wait_for(reached, 10)
    finally:
        trade.statusEvent -= on_status


async def _measure(port: int, n: int, warmup: int) -> list[float]:
    ib = IB()
    ib.client.MaxRequests = 0  # measure the round trip, not the client-side throttle
    await ib.connectAsync("127.0.0.1", port, clientId=901, timeout=10)
    try:
        [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        assert isinstance(contract, Contract), "the simulator did not qualify AAPL"
        samples: list[float] = []
        for i in range(warmup + n):
            start = time.perf_counter()
            trade = ib.placeOrder(contract, LimitOrder("BUY", 1, 1.0, orderRef=f"bench-{i}"))
            acked = await _await_status(trade, "Submitted")
            if i >= warmup:
                samples.append((acked - start) * 1000.0)
            ib.cancelOrder(trade.order)
            await _await_status(trade, "Cancelled")
        return samples
    finally:
        ib.disconnect()


def bench_order_ack(n: int = 1000, warmup: int = 50) -> dict[str, Any]:
    """Latency stats in milliseconds over ``n`` samples (after ``warmup`` unrecorded orders)."""
    if n <= 0:
        raise ValueError("n must be > 0")
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    with SimulatorProcess({"IBSIM_FARM_STATUS_MESSAGES": "false"}) as sim:
        samples = asyncio.run(_measure(sim.port, n, warmup))
    ordered = sorted(samples)
    return {
        "name": "ibsim_order_ack",
        "unit": "ms",
        "n": len(samples),
        "p50_ms": round(_percentile(ordered, 50), 4),
        "p90_ms": round(_percentile(ordered, 90), 4),
        "p99_ms": round(_percentile(ordered, 99), 4),
        "mean_ms": round(statistics.fmean(ordered), 4),
        "min_ms": round(ordered[0], 4),
        "max_ms": round(ordered[-1], 4),
        "setup": "ib_async 2.1.0 -> python -m ibsim (separate process), loopback TCP, "
        "server version 157, client throttle off",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(bench_order_ack(args.n, args.warmup)))


if __name__ == "__main__":
    main()
