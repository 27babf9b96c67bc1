"""signal_to_order_ack: a TargetPosition on the bus -> the order acknowledged by the IB gateway
simulator, through the real execution process and the real ib_async client over TCP.

Baseline in the same run: the bare ``ib_async`` ``placeOrder`` -> acknowledgement against the same
simulator, without the bus or the execution service. Signals are paced at 20/s, under ib_async's
own 45 requests/s throttle, so the sample count is bounded by time, not by the 10,000 the other
latency rows use; ``n`` says how many.
"""

from __future__ import annotations

from typing import Any

from execution.bench import bench_signal_to_ack
from ibsim.bench import bench_order_ack


def bench_execution(bus_env: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    n = 200 if quick else 2000
    bare = bench_order_ack(n)
    result = bench_signal_to_ack(n)
    p50 = float(result["signal_to_ack_p50_ms"])
    base_p50 = float(bare["p50_ms"])
    return [
        {
            "name": "signal_to_order_ack",
            "unit": "ms",
            "value": p50,
            "p50": p50,
            "p99": float(result["signal_to_ack_p99_ms"]),
            "n": int(result["n"]),
            "baseline": {"name": "bare ib_async placeOrder->ack", "value": base_p50},
            "ratio": round(p50 / base_p50, 3) if base_p50 else None,
            "goal": "p99 < 5 ms",
            "note": f"20 signals/s; baseline p99 {bare['p99_ms']} ms",
        }
    ]
