"""What every service process needs to join the bus, and a clean way to run until SIGTERM/Ctrl-C.

bus = connect_bus("execution")
server = bus.command_server()
await run_until_stopped([server.serve_forever(), my_loop(bus)], log)
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio

from shared.auth import AuthError, load_or_create_key
from shared.bus import Publisher, Subscriber, producer_id
from shared.command_channel import CommandClient, CommandServer
from shared.config import BusSettings, ConfigError, bus_settings, command_bind, command_endpoint
from shared.curve import BusSecurity
from shared.heap import settle_heap
from shared.keys import KeyFileError
from shared.logs import event


@dataclass
class BusConnection:
    service: str
    settings: BusSettings
    ctx: zmq.asyncio.Context
    key: bytes
    publisher: Publisher
    security: BusSecurity | None = None  # None only with BUS_CURVE=0

    @property
    def producer(self) -> str:
        return self.publisher.producer

    def subscriber(self, topics: Iterable[str]) -> Subscriber:
        return Subscriber(
            self.ctx,
            self.settings.sub_endpoint,
            topics,
            security=self.security,
            max_message_bytes=self.settings.max_message_bytes,
        )

    def command_server(self, env: Mapping[str, str] | None = None) -> CommandServer:
        bind = command_bind(self.service, self.settings, env)
        return CommandServer(
            self.ctx,
            bind,
            self.key,
            self.service,
            security=self.security,
            max_message_bytes=self.settings.max_message_bytes,
        )

    def command_client(
        self, target_service: str, env: Mapping[str, str] | None = None
    ) -> CommandClient:
        return CommandClient(
            self.ctx,
            command_endpoint(target_service, env),
            self.key,
            sender=self.producer,
            security=self.security,
            server=target_service,
        )

    def close(self) -> None:
        self.publisher.close()
        self.ctx.destroy(linger=200)


def connect_bus(service: str, env: Mapping[str, str] | None = None) -> BusConnection:
    """Read ``BUS_*`` settings, load (or create) the command key and the CURVE key pairs, open
    the publisher as ``service``'s identity.

    Raises ``ConfigError`` naming the variable or the file when settings or keys are unusable.
    """
    settings = bus_settings(env)
    try:
        key = load_or_create_key(settings.secret_file)
        security = BusSecurity.load(settings.resolved_keys_dir, service) if settings.curve else None
    except (OSError, AuthError, KeyFileError) as exc:
        raise ConfigError(f"BUS_SECRET_FILE/BUS_KEYS_DIR: {exc}") from None
    ctx = zmq.asyncio.Context()
    publisher = Publisher(ctx, settings.pub_endpoint, producer_id(service), security=security)
    return BusConnection(service, settings, ctx, key, publisher, security)


async def run_until_stopped(jobs: Iterable[Coroutine[Any, Any, Any]], log: logging.Logger) -> None:
    """Run the service's coroutines until SIGTERM/SIGINT or until one of them fails.

    A job that finishes normally (a replay that reached its end) leaves the others running.
    """
    settle_heap()  # start-up is done: imports, settings, model (see settle_heap)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pending = {asyncio.create_task(job) for job in jobs}
    stopper = asyncio.create_task(stop.wait())
    failure: BaseException | None = None
    while pending and failure is None and not stop.is_set():
        done, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
        pending.discard(stopper)
        for task in done - {stopper}:
            if not task.cancelled() and task.exception() is not None:
                failure = task.exception()
                event(log, "task_failed", logging.ERROR, error=repr(failure))
    for task in [*pending, stopper]:
        task.cancel()
    await asyncio.gather(*pending, stopper, return_exceptions=True)
    if failure is not None:
        raise failure
