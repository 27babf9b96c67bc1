"""Schema of ``paper_trading/paper_trading_config.json``: the seed's paper trading settings.

The file holds everything a paper trading session needs besides the model: the Interactive
Brokers connection, the symbols, sizing and risk limits, trading hours and days, and logging and
monitoring settings. The execution service reads it at start (``PAPER_TRADING_CONFIG``, default
``paper_trading/paper_trading_config.json`` and, when that does not exist, the example file next to
it); the trainer writes one with the same schema when it exports a model for paper trading.

Every value is validated at load time; a bad value raises ``ConfigError`` naming the file and the
key (``ib.port``, ``trading_hours.start`` ...), unknown keys are refused (a typo must not silently
fall back to a default). All money amounts are in the account's base currency.

    cfg = load_paper_config("paper_trading/paper_trading_config.json")
    cfg.ib.port, cfg.risk_per_trade, cfg.trading_hours.start

Keys (defaults in brackets):

* ``ib``: ``host`` [127.0.0.1], ``port`` [4002; IB Gateway paper; TWS paper is 7497],
  ``client_id`` [17], ``account`` ["" = the single account the gateway manages],
  ``exchange`` [SMART], ``currency`` [USD], ``connect_timeout_s`` [10].
* ``symbols``: symbols the service may trade; signals for other symbols are refused. Required.
* ``strategy`` [rl]: first part of every order reference ``<strategy>-<symbol>-<bar_seq>``.
* ``risk_per_trade`` [0.01]: fraction of equity lost if the stop is hit on a full-size position;
  full size = equity * risk_per_trade / (stop_atr_multiple * ATR).
* ``atr_period`` [14], ``stop_atr_multiple`` [2.0], ``take_profit_atr_multiple`` [3.0]:
  the ATR stop distance used for sizing, and the bracket's stop-loss / take-profit distances.
* ``fallback_stop_pct`` [0.02]: stop distance as a fraction of price while the ATR warms up.
* ``rebalance_threshold`` [0.1]: a change smaller than this fraction of the full size is not
  traded while the position keeps its side (equity moves re-size every bar; this stops
  one-share orders that would only pay commission). Going flat or flipping always trades.
* ``order_type`` [MKT]: ``MKT``, ``LMT`` (limit at the signal bar's close +/- ``limit_offset_bps``)
  or ``BRACKET`` (limit entry with stop-loss and take-profit children).
* ``max_position`` [100]: most shares held per symbol (long or short).
* ``max_gross_exposure`` [100000]: most sum of |shares * price| over all symbols.
* ``max_orders_per_minute`` [30]: orders sent in any 60 s window (flattening is exempt).
* ``max_daily_loss`` [5000]: when the day's equity falls this much below the day's start,
  everything is flattened and no new order is sent until the next trading day.
* ``reduce_only`` [false]: only orders that reduce a position are sent.
* ``trading_hours``: ``tz`` [America/New_York], ``start`` [09:30], ``end`` [16:00] (both
  inclusive, local time), ``calendar`` [XNYS; "" disables the exchange holiday check].
* ``trading_days`` [Mon..Fri]: weekday names, three letters.
* ``flatten_on_dead_man`` [false]: when inference or market data go silent, working orders are
  always cancelled; true also flattens the positions, false holds them.
* ``allow_live`` [false]: the first of two keys to trade a non-paper account (the second is the
  environment variable ``EXECUTION_CONFIRM_LIVE=yes-i-mean-live``).
* ``logging``: ``level`` [INFO], ``log_trades`` [true], ``track_record_interval_s`` [60].
* ``monitoring``: ``heartbeat_timeout_s`` [10], ``watch_services`` [inference, marketdata].
* ``model_dir`` [""]: the exported model folder this file was written for (informational).
"""

from __future__ import annotations

import math
import re
import zoneinfo
from pathlib import Path
from typing import Literal

import msgspec

from shared.config import ConfigError, require

__all__ = [
    "WEEKDAYS",
    "IBConnection",
    "LoggingSettings",
    "MonitoringSettings",
    "PaperTradingConfig",
    "TradingHours",
    "dump_paper_config",
    "load_paper_config",
    "parse_paper_config",
    "validation_key",
]

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,14}$")


# Upper bounds: a limit above these is a typo (or ``inf``, which would disable the limit).
MAX_MONEY = 1e12  # exposure, daily loss: currency amounts
MAX_SECONDS = 86_400.0  # timeouts and intervals
MAX_MULTIPLE = 100.0  # ATR multiples


def require_bounded(value: float, field_name: str, low: float, high: float) -> None:
    """``low < value <= high`` and finite (NaN and inf are refused by name)."""
    require(math.isfinite(value), field_name, f"must be a finite number, got {value}")
    require(low < value <= high, field_name, f"must be in ({low:g}, {high:g}], got {value}")


class _Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class IBConnection(_Base, frozen=True, kw_only=True):
    """Where TWS / IB Gateway (or the bundled simulator) listens and who we are to it."""

    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 17
    account: str = ""
    exchange: str = "SMART"
    currency: str = "USD"
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        require(bool(self.host), "host", "must not be empty")
        require(0 < self.port < 65536, "port", f"must be a TCP port 1..65535, got {self.port}")
        require(0 <= self.client_id < 2**31, "client_id", f"must be >= 0, got {self.client_id}")
        require(bool(self.exchange), "exchange", "must not be empty")
        require(
            len(self.currency) == 3, "currency", f"must be a 3-letter code, got {self.currency!r}"
        )
        require_bounded(self.connect_timeout_s, "connect_timeout_s", 0, MAX_SECONDS)


class TradingHours(_Base, frozen=True, kw_only=True):
    """Local session window (both ends inclusive) and the exchange calendar for holidays."""

    tz: str = "America/New_York"
    start: str = "09:30"
    end: str = "16:00"
    calendar: str = "XNYS"

    def __post_init__(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            require(False, "tz", f"unknown time zone {self.tz!r}")
        for name in ("start", "end"):
            value = getattr(self, name)
            require(bool(_HHMM.match(value)), name, f"must be HH:MM (24 h), got {value!r}")
        require(self.start <= self.end, "end", f"{self.end} is before start {self.start}")
        if self.calendar:
            try:  # an execution dependency; other services may write the file without it
                import exchange_calendars
            except ImportError:
                return
            names = exchange_calendars.get_calendar_names(include_aliases=True)
            require(
                self.calendar in names,
                "calendar",
                f"unknown exchange calendar {self.calendar!r} (e.g. XNYS; '' for none)",
            )

    def minutes(self) -> tuple[int, int]:
        """(start, end) as minutes after local midnight."""
        sh, sm = self.start.split(":")
        eh, em = self.end.split(":")
        return int(sh) * 60 + int(sm), int(eh) * 60 + int(em)


class LoggingSettings(_Base, frozen=True, kw_only=True):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_trades: bool = True
    track_record_interval_s: float = 60.0

    def __post_init__(self) -> None:
        require_bounded(self.track_record_interval_s, "track_record_interval_s", 0, MAX_SECONDS)


class MonitoringSettings(_Base, frozen=True, kw_only=True):
    heartbeat_timeout_s: float = 10.0
    watch_services: list[str] = msgspec.field(default_factory=lambda: ["inference", "marketdata"])

    def __post_init__(self) -> None:
        require_bounded(self.heartbeat_timeout_s, "heartbeat_timeout_s", 0, MAX_SECONDS)
        for name in self.watch_services:
            require(
                bool(re.match(r"^[a-z][a-z0-9_-]*$", name)),
                "watch_services",
                f"{name!r} is not a service name",
            )


class PaperTradingConfig(_Base, frozen=True, kw_only=True):
    """The whole file. See the module docstring for every key."""

    symbols: list[str]
    ib: IBConnection = msgspec.field(default_factory=IBConnection)
    strategy: str = "rl"
    risk_per_trade: float = 0.01
    atr_period: int = 14
    stop_atr_multiple: float = 2.0
    take_profit_atr_multiple: float = 3.0
    fallback_stop_pct: float = 0.02
    rebalance_threshold: float = 0.1
    order_type: Literal["MKT", "LMT", "BRACKET"] = "MKT"
    limit_offset_bps: float = 5.0
    max_position: int = 100
    max_gross_exposure: float = 100_000.0
    max_orders_per_minute: int = 30
    max_daily_loss: float = 5_000.0
    reduce_only: bool = False
    trading_hours: TradingHours = msgspec.field(default_factory=TradingHours)
    trading_days: list[str] = msgspec.field(
        default_factory=lambda: ["Mon", "Tue", "Wed", "Thu", "Fri"]
    )
    flatten_on_dead_man: bool = False
    allow_live: bool = False
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    monitoring: MonitoringSettings = msgspec.field(default_factory=MonitoringSettings)
    model_dir: str = ""

    def __post_init__(self) -> None:
        require(len(self.symbols) > 0, "symbols", "at least one symbol")
        for symbol in self.symbols:
            require(
                bool(_SYMBOL.match(symbol)), "symbols", f"{symbol!r} is not an upper-case ticker"
            )
        require(len(set(self.symbols)) == len(self.symbols), "symbols", "duplicate symbol")
        require(
            bool(re.match(r"^[A-Za-z0-9_]+$", self.strategy)),
            "strategy",
            f"must be letters, digits or _ (it is part of order references), got {self.strategy!r}",
        )
        require(
            math.isfinite(self.risk_per_trade) and 0 < self.risk_per_trade <= 0.2,
            "risk_per_trade",
            f"must be a fraction of equity in (0, 0.2], got {self.risk_per_trade}",
        )
        require(1 <= self.atr_period <= 1000, "atr_period", "must be in 1..1000")
        require_bounded(self.stop_atr_multiple, "stop_atr_multiple", 0, MAX_MULTIPLE)
        require_bounded(self.take_profit_atr_multiple, "take_profit_atr_multiple", 0, MAX_MULTIPLE)
        require(0 < self.fallback_stop_pct < 1, "fallback_stop_pct", "must be in (0, 1)")
        require(0 <= self.rebalance_threshold < 1, "rebalance_threshold", "must be in [0, 1)")
        require(0 <= self.limit_offset_bps < 10_000, "limit_offset_bps", "must be in [0, 10000)")
        require(0 < self.max_position <= 10**9, "max_position", "must be in 1..1e9 shares")
        require_bounded(self.max_gross_exposure, "max_gross_exposure", 0, MAX_MONEY)
        require(
            0 < self.max_orders_per_minute <= 100_000, "max_orders_per_minute", "must be 1..1e5"
        )
        require_bounded(self.max_daily_loss, "max_daily_loss", 0, MAX_MONEY)
        require(len(self.trading_days) > 0, "trading_days", "at least one day")
        for day in self.trading_days:
            require(day in WEEKDAYS, "trading_days", f"{day!r} is not one of {list(WEEKDAYS)}")

    def weekday_numbers(self) -> frozenset[int]:
        """Trading days as ``datetime.weekday()`` numbers (Mon = 0)."""
        return frozenset(WEEKDAYS.index(day) for day in self.trading_days)


_AT = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.S)
_FIELD_MSG = re.compile(r"^(?P<field>[a-z_][a-z0-9_]*): (?P<why>.+)$", re.S)
_UNKNOWN = re.compile(r"unknown field `(?P<field>[^`]+)`")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


def validation_key(exc: msgspec.ValidationError) -> tuple[str, str]:
    """Turn msgspec's ``why - at `$.a.b``` into ("a.b", why), naming the offending key."""
    text = str(exc)
    match = _AT.match(text)
    message, path = (match["msg"], match["path"]) if match else (text, "")
    path = path.lstrip(".")
    field = _FIELD_MSG.match(message)
    if field:  # a __post_init__ validator: "field: why" at the struct's path
        return (f"{path}.{field['field']}" if path else field["field"]), field["why"]
    for pattern in (_UNKNOWN, _MISSING):
        found = pattern.search(message)
        if found:
            key = f"{path}.{found['field']}" if path else found["field"]
            return key, message
    return path or "(file)", message


def parse_paper_config(data: bytes | str, source: str = "<paper config>") -> PaperTradingConfig:
    """Decode and validate JSON text; ``ConfigError`` names the source and the key."""
    try:
        return msgspec.json.decode(data, type=PaperTradingConfig)
    except msgspec.ValidationError as exc:
        key, why = validation_key(exc)
        raise ConfigError(f"{source}: key '{key}': {why}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}") from None


def load_paper_config(path: str | Path) -> PaperTradingConfig:
    """Read and validate the file at ``path``."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read paper trading config: {exc.strerror}") from None
    return parse_paper_config(data, str(file))


def dump_paper_config(config: PaperTradingConfig) -> bytes:
    """Pretty JSON with every key (what the trainer writes next to an exported model)."""
    return msgspec.json.format(msgspec.json.encode(config), indent=2) + b"\n"
