"""python -m monitor — the ledger and PnL feed (settings: MONITOR_* variables)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from monitor.config import MonitorSettings
from monitor.http import Route, build_app, serve
from monitor.ledger import LedgerError
from monitor.service import MonitorService
from shared.config import ConfigError, from_env
from shared.logs import configure, event
from shared.runtime import connect_bus, run_until_stopped


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor", description=__doc__)
    parser.add_argument(
        "--pretty", action="store_true", help="blotter log lines for people (LOG_FORMAT=pretty)"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    log = configure("monitor", fmt="pretty" if args.pretty else None)
    try:
        settings = from_env(MonitorSettings, "MONITOR_")
        bus = connect_bus("monitor")
    except ConfigError as exc:
        event(log, "config_error", logging.ERROR, error=str(exc))
        return 2
    try:
        service = MonitorService(settings, bus)
    except LedgerError as exc:  # a state file that does not open stops here: no crash loop
        event(log, "state_error", logging.ERROR, file=settings.ledger_path, error=str(exc))
        bus.close()
        return 2
    server = bus.command_server()
    for name in ("status", "fills", "orders", "pnl", "quarantine"):
        server.register(name, getattr(service, name))
    jobs = [
        server.serve_forever(),
        service.consume(),
        service.pnl_loop(),
        service.reconcile_loop(),
        service.heartbeats(),
        service.tick_loop(),
        service.execution_status_loop(),
    ]
    if service.webhook is not None:
        jobs.append(service.webhook.run())
    if settings.http_port:
        routes: dict[str, Route] = {
            "/health": service.status,
            "/pnl": service.pnl,
            "/fills": service.fills,
            "/orders": service.orders,
            "/quarantine": service.quarantine,
        }
        jobs.append(serve(build_app(routes, service), settings.http_host, settings.http_port))
    event(log, "started", ledger=settings.ledger_path, fills_in_ledger=service.fills_booked)
    try:
        await run_until_stopped(jobs, log)
    finally:
        service.publish_pnl()
        service.close()
        server.close()
        bus.close()
        event(log, "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
