"""Wiring: settings -> journal, contracts, exchange, API server, control server, price feed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

import zmq.asyncio

from ibsim.config import IbsimSettings
from ibsim.contracts import ContractRegistry
from ibsim.control import ControlServer
from ibsim.exchange import Exchange
from ibsim.faults import FaultSwitches
from ibsim.journal import ExecutionJournal
from ibsim.server import IbServer
from shared.config import bus_settings

log = logging.getLogger("ibsim")


class Simulator:
    """The whole gateway simulator in one event loop.

    async with Simulator(settings) as sim:
        sim.exchange.on_bar("AAPL", ts, 100, 101, 99, 100.5, 1e4)
    """

    def __init__(self, settings: IbsimSettings) -> None:
        self.settings = settings
        self.faults = FaultSwitches()
        self.journal = ExecutionJournal(settings.state_dir)
        self.exchange = Exchange(
            settings, ContractRegistry(settings.universe), self.journal, self.faults
        )
        self.ib_server = IbServer(settings, self.exchange, self.faults)
        self.control = ControlServer(self)
        self._feed: asyncio.Task[None] | None = None
        self._zmq: zmq.asyncio.Context | None = None

    @property
    def port(self) -> int:
        return self.ib_server.port

    @property
    def control_port(self) -> int:
        return self.control.port

    async def start(self) -> None:
        await self.ib_server.start()
        await self.control.start()
        if self.settings.price_source == "bus":
            from ibsim.pricefeed import run_bus_feed

            self._zmq = zmq.asyncio.Context()
            self._feed = asyncio.create_task(
                run_bus_feed(self.exchange, bus_settings(), self._zmq), name="ibsim-price-feed"
            )

    async def serve_forever(self) -> None:
        """Until cancelled; a price feed that dies ends it (so the process exits, loudly)."""
        if self._feed is not None:
            await self._feed
        await asyncio.Event().wait()

    async def stop(self) -> None:
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed
        await self.control.close()
        await self.ib_server.close()
        self.journal.close()
        if self._zmq is not None:
            self._zmq.destroy(linger=0)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
