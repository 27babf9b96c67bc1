"""python -m inference — online features + ONNX policy -> signal.<SYM> (settings: INFERENCE_*).

Exit codes: 0 stopped, 2 bad configuration, 3 the initial model could not be served.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from inference.config import InferenceSettings
from inference.service import InferenceService
from shared.config import ConfigError, from_env
from shared.logs import configure, event
from shared.manifest import ArtifactError
from shared.runtime import connect_bus, run_until_stopped


async def main() -> int:
    log = configure("inference")
    try:
        settings = from_env(InferenceSettings, "INFERENCE_")
        bus = connect_bus("inference")
    except ConfigError as exc:
        event(log, "config_error", logging.ERROR, error=str(exc))
        return 2
    try:
        service = InferenceService(settings, bus)
    except ConfigError as exc:  # settings checked against each other (e.g. the shard timing)
        event(log, "config_error", logging.ERROR, error=str(exc))
        bus.close()
        return 2
    except ArtifactError as exc:
        event(
            log,
            "model_refused_at_start",
            logging.ERROR,
            error=str(exc),
            model_dir=settings.model_dir,
            model_version=settings.model_version,
        )
        bus.close()
        return 3
    server = bus.command_server()
    server.register("push_model", service.cmd_push_model)
    server.register("rollback", service.cmd_rollback)
    server.register("status", service.cmd_status)
    server.register("shadow_load", service.cmd_shadow_load)
    server.register("shadow_promote", service.cmd_shadow_promote)
    server.register("shadow_drop", service.cmd_shadow_drop)
    event(
        log,
        "started",
        model=service.model.describe(),
        symbols=list(settings.symbols) or "all",
        shard_mode=settings.shard_mode,
        shadow=service.shadow.version if service.shadow is not None else None,
        producer=bus.producer,
        fingerprint=service.pipeline.fingerprint,
    )
    try:
        await run_until_stopped(
            [
                server.serve_forever(),
                service.consume(),
                service.warm_known_symbols(),
                service.heartbeats(),
                service.membership(),
            ],
            log,
        )
    finally:
        service.close()
        server.close()
        bus.close()
        event(log, "stopped", **{k: v for k, v in vars(service.counters).items()})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
