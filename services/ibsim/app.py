"""Wiring: settings -> journal, contracts, exchange, API server, control server, price feed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import zmq.asyncio

from ibsim.config import IbsimSettings
from ibsim.contracts import ContractRegistry
from ibsim.control import ControlServer
from ibsim.exchange import Exchange
from ibsim.faults import FaultSwitches
from ibsim.journal import ExecutionJournal
from ibsim.server import IbServer

if TYPE_CHECKING:
    from ibsim.replayfeed import ReplayFeed
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
        self.replay: ReplayFeed | None = None
        if settings.price_source == "replay":
            from ibsim.replayfeed import ReplayFeed

            self.replay = ReplayFeed(
                self.exchange,
                settings.replay_dataset,
                [s.upper() for s in settings.replay_symbols],
                settings.replay_start,
                settings.replay_end,
                settings.replay_speed,
                settings.replay_autostart,
                # a restart resumes the market where it stopped (state dir only)
                Path(settings.state_dir) / "replay-cursor.json" if settings.state_dir else None,
            )
            self.ib_server.market_clock = self.replay.now_ns
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
        elif self.replay is not None:
            self.replay.load_history()
            self._feed = asyncio.create_task(self.replay.run(), name="ibsim-replay")

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
