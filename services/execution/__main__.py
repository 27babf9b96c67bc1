"""python -m execution — target positions to orders (settings: EXECUTION_*, IB_*, paper config).

Commands on the ROUTER endpoint (``EXECUTION_CMD_ENDPOINT``, default tcp://127.0.0.1:5562):
``status`` (``ready`` = bus loop running and broker connected), ``kill`` (kill switch: cancel all,
flatten, refuse new orders until ``rearm``), ``rearm`` (``{"clear_daily_loss": true}`` also lifts
today's daily-loss halt), ``positions``, ``orders`` (``{"limit": n}``), ``flatten``,
``reduce_only`` (``{"on": true|false}``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from execution.broker import Broker
from execution.config import ExecutionConfig, load_config
from execution.input_guard import StateFileError
from execution.order_journal import OrderJournal
from execution.service import ExecutionService
from shared.config import ConfigError
from shared.logs import configure, event
from shared.runtime import connect_bus, run_until_stopped

STATE_DIR_VAR = "EXECUTION_STATE_DIR"


def make_broker(config: ExecutionConfig) -> Broker:
    settings = config.settings
    if settings.broker == "sim":
        from execution.sim_broker import SimBroker

        return SimBroker(
            config.costs,
            settings.sim_initial_cash,
            state_file=Path(settings.state_dir) / "sim_broker.json",
        )
    from execution.ib_broker import IBBroker

    return IBBroker(
        config.paper.ib,
        symbols=config.paper.symbols,
        reconnect_min_s=settings.reconnect_min_s,
        reconnect_max_s=settings.reconnect_max_s,
        commission_wait_s=settings.commission_wait_s,
    )


async def main() -> int:
    log = configure("execution")
    try:
        config = load_config()
        bus = connect_bus("execution")
    except ConfigError as exc:
        event(log, "config_error", logging.ERROR, error=str(exc))
        return 2
    if "LOG_LEVEL" not in os.environ:
        logging.getLogger().setLevel(config.paper.logging.level)
    try:
        journal = OrderJournal(
            Path(config.settings.state_dir) / "journal.sqlite",
            synchronous=config.settings.journal_sync.upper(),
        )
        try:
            broker = make_broker(config)
            service = ExecutionService(config, bus, broker, journal)
        except BaseException:
            journal.close()
            raise
    except StateFileError as exc:  # a broken state file stops the start: never a crash loop
        event(log, "state_file_error", logging.ERROR, error=str(exc), state_dir=STATE_DIR_VAR)
        bus.close()
        return 2
    server = bus.command_server()
    service.commands.register(server)  # execution.commands: status, kill, rearm, ...
    event(
        log,
        "started",
        broker=config.settings.broker,
        paper_config=config.paper_path,
        symbols=list(config.paper.symbols),
        ib=f"{config.paper.ib.host}:{config.paper.ib.port}",
        client_id=config.paper.ib.client_id,
        order_type=config.paper.order_type,
        clock=config.settings.clock,
        killed=service.safety.killed,
        producer=bus.producer,
    )
    try:
        await run_until_stopped([server.serve_forever(), service.run()], log)
    finally:
        server.close()
        journal.close()
        bus.close()
        event(log, "stopped", **service.counters)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
