"""Where marketdata's bars come from: one interface, three sources (``MARKETDATA_SOURCE``).

* ``replay`` (the code default; research and tests): packaged history (``shared.data``) replayed at
  ``MARKETDATA_BARS_PER_SECOND`` (``marketdata.service.MarketDataService``, unchanged behaviour).
* ``ib`` (the default of ``make run``, ``make paper-trading`` and compose): TWS / IB Gateway /
  ibsim through ib_async (``marketdata.ib_source``): the warm-up window
  is backfilled with ``reqHistoricalData`` (pacing respected), then live bars are published at
  their close; a reconnect backfills the missed bars once, in order.
* ``file``: a user's CSV or Parquet (``marketdata.file_source``), replayed like ``replay``.

Every source hands its bars to ``marketdata.pipeline`` (validation, quarantine, epoch, bar
store) and publishes the same ``shared.messages.Bar`` (``bar.<SYM>``), answers ``snapshot`` and
``status`` on the command port and sends heartbeats.
"""

from __future__ import annotations

from typing import Any, Protocol

from marketdata.config import MarketDataSettings
from marketdata.pipeline import BarPipeline
from shared.runtime import BusConnection


class BarSource(Protocol):
    """What ``python -m marketdata`` runs, whatever the source."""

    pipeline: BarPipeline

    @property
    def published(self) -> int: ...

    async def run(self) -> None: ...

    async def heartbeats(self) -> None: ...

    async def snapshot(self, args: dict[str, Any]) -> dict[str, Any]: ...

    async def status(self, args: dict[str, Any]) -> dict[str, Any]: ...


def make_source(settings: MarketDataSettings, bus: BusConnection) -> BarSource:
    """The configured source; a bad file raises ``shared.data_validation.DataValidationError``."""
    if settings.kind == "ib":
        from marketdata.ib_source import IbBarSource

        return IbBarSource(settings, bus)
    if settings.kind == "file":
        from marketdata.file_source import file_service

        return file_service(settings, bus)
    from marketdata.service import MarketDataService

    return MarketDataService(settings, bus)
