"""``MARKETDATA_SOURCE=file``: a user's CSV or Parquet bars, replayed like the packaged history.

The file is read with ``shared.data_files.load_file`` and every row is validated at start; a bad
row refuses the start with the file, the row (CSV: line, header = 1; Parquet: 1-based row) and the
rule. Column mapping and time zone:

* ``MARKETDATA_FILE_PATH``: the file; ``{symbol}`` in it is replaced by each of
  ``MARKETDATA_SYMBOLS`` (one file per symbol), e.g. ``data/{symbol}.csv``.
* columns ``open high low close volume`` and one time column ``timestamp`` or ``date`` (names
  compared case-insensitively); ``MARKETDATA_FILE_COLUMNS="Date=date,Adj Close=close"`` renames
  yours. ``date`` (daily bars) is labelled at 16:00 America/New_York, the session close.
* ``MARKETDATA_FILE_TZ``: the time zone of naive ``timestamp`` values (default UTC; aware values
  are converted). ``MARKETDATA_FILE_LABEL=close`` (default): the stamp is the bar's close;
  ``open``: it is the bar's open and ``MARKETDATA_FILE_BAR`` (``1h``, ``30m`` ...) is added.

Replay period, pace, cursor and snapshots work as with ``replay``
(``MARKETDATA_REPLAY_START`` / ``_END``, ``MARKETDATA_BARS_PER_SECOND``).
"""

from __future__ import annotations

import hashlib

from marketdata.config import MarketDataSettings
from marketdata.replay import SymbolSeries
from marketdata.service import MarketDataService
from shared.data_files import load_file, parse_column_map
from shared.runtime import BusConnection


def load_file_series(settings: MarketDataSettings) -> dict[str, SymbolSeries]:
    columns = parse_column_map(settings.file_columns)
    out = {}
    for symbol in settings.symbols:
        path = settings.file_path.replace("{symbol}", symbol)
        df = load_file(
            path,
            symbol=symbol,
            columns=columns,
            tz=settings.file_tz,
            label=settings.file_label,
            bar=settings.file_bar or None,
        )
        if not df.attrs.get("timeframe"):
            df.attrs["timeframe"] = settings.file_bar or settings.bar_size
        out[symbol] = SymbolSeries.from_frame(
            df, "file", symbol, settings.replay_start, settings.replay_end
        )
    return out


def file_service(settings: MarketDataSettings, bus: BusConnection) -> MarketDataService:
    digest = hashlib.sha256(settings.file_path.encode()).hexdigest()[:12]
    return MarketDataService(
        settings, bus, series=load_file_series(settings), cursor_name=f"file-{digest}"
    )
