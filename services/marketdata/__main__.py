"""python -m marketdata — replay real bars onto the bus (settings: MARKETDATA_* variables)."""

from __future__ import annotations

import asyncio
import logging
import sys

from marketdata.config import load_settings
from marketdata.ib_source import SourceError
from marketdata.sources import make_source
from shared.config import ConfigError
from shared.data_validation import DataValidationError
from shared.logs import configure, event
from shared.runtime import connect_bus, run_until_stopped


async def main() -> int:
    log = configure("marketdata")
    try:
        settings = load_settings()
        bus = connect_bus("marketdata")
    except ConfigError as exc:
        event(log, "config_error", logging.ERROR, error=str(exc))
        return 2
    try:
        service = make_source(settings, bus)
    except (DataValidationError, FileNotFoundError) as exc:  # a bad user file: file, row, rule
        event(log, "config_error", logging.ERROR, variable="MARKETDATA_FILE_PATH", error=str(exc))
        print(f"marketdata: MARKETDATA_FILE_PATH: {exc}", file=sys.stderr)
        bus.close()
        return 2
    except ValueError as exc:  # e.g. no bars after MARKETDATA_REPLAY_START
        event(log, "config_error", logging.ERROR, error=str(exc))
        print(f"marketdata: configuration error: {exc}", file=sys.stderr)
        bus.close()
        return 2
    server = bus.command_server()
    server.register("snapshot", service.snapshot)
    server.register("status", service.status)
    event(
        log,
        "started",
        source=settings.kind,
        symbols=list(settings.symbols),
        gateway=settings.ib_endpoint if settings.kind == "ib" else None,
        epoch=service.pipeline.epoch,
        producer=bus.producer,
    )
    try:
        await run_until_stopped([server.serve_forever(), service.heartbeats(), service.run()], log)
    except SourceError as exc:  # an unknown symbol, no market data subscription: IB's words
        event(log, "source_refused", logging.ERROR, error=str(exc))
        print(f"marketdata: {exc}", file=sys.stderr)
        return 2
    finally:
        server.close()
        service.pipeline.close()
        bus.close()
        event(log, "stopped", published=service.published)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
