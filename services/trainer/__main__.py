"""python -m trainer — the trainer service's command endpoint (settings: TRAINER_*, BUS_*).

Exit codes: 0 stopped, 2 bad configuration.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from shared.config import ConfigError
from shared.logs import configure, event
from shared.runtime import connect_bus, run_until_stopped
from trainer.config import trainer_settings
from trainer.retrain_config import retrain_settings
from trainer.service import TrainerService


async def main() -> int:
    log = configure("trainer")
    try:
        settings = trainer_settings()
        retrain = retrain_settings()
        bus = connect_bus("trainer")
    except ConfigError as exc:
        event(log, "config_error", logging.ERROR, error=str(exc))
        return 2
    service = TrainerService(settings, bus, retrain)
    server = bus.command_server()
    service.register(server)
    event(
        log,
        "started",
        model_dir=settings.model_dir,
        output_dir=settings.output_dir,
        profile=settings.profile,
        producer=bus.producer,
    )
    try:
        await run_until_stopped(
            [server.serve_forever(), service.heartbeats(), service.retrain_loop()], log
        )
    finally:
        await service.close()
        server.close()
        bus.close()
        event(log, "stopped", pushes=service.pushes, refused_pushes=service.refused_pushes)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
