"""``python -m ibsim``: the TWS-API gateway simulator (default broker of ``make run``)."""

from __future__ import annotations

import asyncio
import sys

from ibsim.app import Simulator
from ibsim.config import load_settings
from shared.config import ConfigError
from shared.logs import configure, event
from shared.runtime import run_until_stopped


async def main() -> None:
    log = configure("ibsim")
    settings = load_settings()
    sim = Simulator(settings)
    await sim.start()
    event(
        log,
        "ready",
        port=sim.port,
        control_port=sim.control_port,
        account=settings.account,
        price_source=settings.price_source,
        replay=(
            {
                "symbols": list(settings.replay_symbols),
                "start": settings.replay_start,
                "end": settings.replay_end or None,
                "speed": settings.replay_speed,
                "worst_case_orders_per_minute": settings.replay_orders_per_minute,
            }
            if settings.price_source == "replay"
            else None
        ),
        state_dir=settings.state_dir or None,
    )
    try:
        await run_until_stopped([sim.serve_forever()], log)
    finally:
        await sim.stop()
        event(log, "stopped")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ConfigError as exc:
        print(f"ibsim: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
