"""Where marketdata's bars come from: one interface, three sources (``MARKETDATA_SOURCE``).

* ``replay`` (default): packaged history (``shared.data``) replayed at
  ``MARKETDATA_BARS_PER_SECOND`` (``marketdata.service.MarketDataService``, unchanged behaviour).
* ``ib``: TWS / IB Gateway / ibsim through ib_async (``marketdata.ib_source``): the warm-up window
  is backfilled with ``reqHistoricalData`` (pacing respected), then live bars are published at
  their close; a reconnect backfills the missed bars once, in order.
* ``file``: a user's CSV or Parquet (``marketdata.file_source``), replayed like ``replay``.

Every source publishes the same ``shared.messages.Bar`` (``bar.<SYM>``), answers ``snapshot`` and
``status`` on the command port and sends heartbeats.
"""

from __future__ import annotations

from typing import Any, Protocol

from marketdata.config import MarketDataSettings
from shared.runtime import BusConnection


class BarSource(Protocol):
    """What ``python -m marketdata`` runs, whatever the source."""

    published: int

    async def run(self) -> None: ...

    async def heartbeats(self) -> None: ...

    async def snapshot(self, args: dict[str, Any]) -> dict[str, Any]: ...

    async def status(self, args: dict[str, Any]) -> dict[str, Any]: ...


def make_source(settings: MarketDataSettings, bus: BusConnection) -> BarSource:
    """The configured source; a bad file raises ``shared.data.DataValidationError``."""
    if settings.kind == "ib":
        from marketdata.ib_source import IbBarSource

        return IbBarSource(settings, bus)
    if settings.kind == "file":
        from marketdata.file_source import file_service

        return file_service(settings, bus)
    from marketdata.service import MarketDataService

    return MarketDataService(settings, bus)
