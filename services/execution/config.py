"""Execution settings: ``EXECUTION_*`` and ``IB_*`` environment variables plus the paper config.

Environment (defaults in brackets):

* ``EXECUTION_BROKER`` [ib]: ``ib`` (Interactive Brokers through ib_async: TWS, IB Gateway or the
  bundled simulator ``python -m ibsim``) or ``sim`` (in-process broker, next bar's open + costs).
* ``IB_HOST`` [127.0.0.1], ``IB_PORT`` [4002], ``IB_CLIENT_ID`` [17]: override ``ib.*`` of the
  paper config (the defaults point at the simulator).
* ``PAPER_TRADING_CONFIG``: the paper config file [``paper_trading/paper_trading_config.json``
  when it exists, else ``paper_trading/paper_trading_config.example.json``].
* ``EXECUTION_STATE_DIR`` [var/execution]: order journal (and the sim broker's state).
* ``EXECUTION_CONFIRM_LIVE`` [""]: must be ``yes-i-mean-live`` (and ``allow_live`` true in the file)
  to trade an account that is not a paper account.
* ``EXECUTION_LIVE_TRACK_SESSIONS`` [20], ``EXECUTION_LIVE_TRACK_BOUND`` [0.005],
  ``EXECUTION_REPORTS_DIR`` [evaluation_results]: the third condition for a live account: the
  last N sessions of the ``make compare`` reports there each within the deviation bound
  (``execution.live_record``). Never consulted for a paper account.
* Overrides of the file's risk settings, each unset by default: ``EXECUTION_SYMBOLS``,
  ``EXECUTION_RISK_PER_TRADE``, ``EXECUTION_MAX_POSITION``, ``EXECUTION_MAX_GROSS_EXPOSURE``,
  ``EXECUTION_MAX_ORDERS_PER_MINUTE``, ``EXECUTION_MAX_DAILY_LOSS``, ``EXECUTION_ORDER_TYPE``,
  ``EXECUTION_REDUCE_ONLY``, ``EXECUTION_FLATTEN_ON_DEAD_MAN``, ``EXECUTION_HEARTBEAT_TIMEOUT_S``,
  ``EXECUTION_TRADING_DAYS``, ``EXECUTION_TRADING_START``, ``EXECUTION_TRADING_END``,
  ``EXECUTION_CALENDAR``, ``EXECUTION_STRATEGY``.
* ``EXECUTION_CLOCK`` [bar]: trading hours/days and the daily-loss day are judged on the bar's
  timestamp (``bar``, so replayed history trades) or on the wall clock (``wall``).
* ``EXECUTION_SIM_INITIAL_CASH`` [100000], ``EXECUTION_SIM_COSTS`` [""]: JSON of
  ``shared.costs.CostModel`` fields for the sim broker (empty: the cost model's defaults).
* ``EXECUTION_RECONNECT_MIN_S`` [0.5] / ``EXECUTION_RECONNECT_MAX_S`` [30]: IB reconnect backoff.
* ``EXECUTION_COMMISSION_WAIT_S`` [2]: how long a fill waits for its commission report.
* ``EXECUTION_WARMUP_BARS`` [true]: ask marketdata's ``snapshot`` for ATR warm-up bars at start.
* ``EXECUTION_JOURNAL_SYNC`` [normal]: ``normal`` or ``full`` (either case), the order journal's
  SQLite ``synchronous``. ``normal``: a committed reservation survives a process crash (SIGKILL
  included), and a host crash may lose the last ones, which restart reconciliation recovers from
  the broker by ``orderRef``; ``full`` adds an fsync per commit on the signal path so a host crash
  loses nothing either (README, "Order journal durability").
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from execution.live_record import TrackRecord, read_track_record
from shared.config import ConfigError, from_env, require
from shared.costs import CostModel
from shared.paper_config import (
    MAX_MONEY,
    MAX_SECONDS,
    PaperTradingConfig,
    load_paper_config,
    require_bounded,
    validation_key,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PAPER_CONFIG = "paper_trading/paper_trading_config.json"
EXAMPLE_PAPER_CONFIG = "paper_trading/paper_trading_config.example.json"
LIVE_CONFIRMATION = "yes-i-mean-live"


class ExecutionSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``EXECUTION_*`` variables (see the module docstring)."""

    broker: Literal["ib", "sim"] = "ib"
    state_dir: str = "var/execution"
    journal_sync: Literal["normal", "full", "NORMAL", "FULL"] = "normal"
    confirm_live: str = ""
    clock: Literal["bar", "wall"] = "bar"
    sim_initial_cash: float = 100_000.0
    sim_costs: str = ""
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    commission_wait_s: float = 2.0
    warmup_bars: bool = True
    # Bars of marketdata's snapshot the sizing ATR is warmed with at start. Wilder's ATR forgets
    # its seed as (1 - 1/period)^n: `make warmup-analysis` measured ~300 bars for a 14-bar ATR to
    # match the backtest's to 1e-9 (3 x period, the old value, left share counts up to 5 % off).
    atr_warmup_bars: int = 300
    live_track_sessions: int = 20
    live_track_bound: float = 0.005
    reports_dir: str = "evaluation_results"
    # overrides of the paper trading config (None: keep the file's value)
    symbols: list[str] | None = None
    strategy: str | None = None
    risk_per_trade: float | None = None
    max_position: int | None = None
    max_gross_exposure: float | None = None
    max_orders_per_minute: int | None = None
    max_daily_loss: float | None = None
    order_type: Literal["MKT", "LMT", "BRACKET"] | None = None
    reduce_only: bool | None = None
    flatten_on_dead_man: bool | None = None
    heartbeat_timeout_s: float | None = None
    trading_days: list[str] | None = None
    trading_start: str | None = None
    trading_end: str | None = None
    calendar: str | None = None

    def __post_init__(self) -> None:
        require(0 < self.atr_warmup_bars <= 10_000, "atr_warmup_bars", "must be in 1..10000")
        require_bounded(self.sim_initial_cash, "sim_initial_cash", 0, MAX_MONEY)
        require_bounded(self.reconnect_max_s, "reconnect_max_s", 0, MAX_SECONDS)
        require_bounded(self.reconnect_min_s, "reconnect_min_s", 0, MAX_SECONDS)
        require(
            self.reconnect_min_s <= self.reconnect_max_s,
            "reconnect_min_s",
            "must be > 0 and <= EXECUTION_RECONNECT_MAX_S",
        )
        require(
            math.isfinite(self.commission_wait_s) and 0 <= self.commission_wait_s <= 600,
            "commission_wait_s",
            f"must be a finite number of seconds in [0, 600], got {self.commission_wait_s}",
        )
        require(
            self.confirm_live in ("", LIVE_CONFIRMATION),
            "confirm_live",
            f"must be empty or exactly {LIVE_CONFIRMATION!r}",
        )
        require(
            1 <= self.live_track_sessions <= 10_000,
            "live_track_sessions",
            f"must be a whole number of sessions in [1, 10000], got {self.live_track_sessions}",
        )
        require(
            math.isfinite(self.live_track_bound) and 0 <= self.live_track_bound <= 1,
            "live_track_bound",
            f"must be a deviation fraction in [0, 1], got {self.live_track_bound}",
        )
        require(bool(self.reports_dir), "reports_dir", "must not be empty")
        if self.sim_costs:
            try:
                CostModel.from_dict(msgspec.json.decode(self.sim_costs))
            except (msgspec.DecodeError, ValueError, TypeError) as exc:
                require(False, "sim_costs", f"not a CostModel JSON object: {exc}")


class IBEnv(msgspec.Struct, frozen=True, kw_only=True):
    """``IB_HOST``, ``IB_PORT``, ``IB_CLIENT_ID`` (None: the paper config's ``ib`` section)."""

    host: str | None = None
    port: int | None = None
    client_id: int | None = None


# env override field -> (paper config path, env variable)
_OVERRIDES: dict[str, tuple[str, ...]] = {
    "symbols": ("symbols",),
    "strategy": ("strategy",),
    "risk_per_trade": ("risk_per_trade",),
    "max_position": ("max_position",),
    "max_gross_exposure": ("max_gross_exposure",),
    "max_orders_per_minute": ("max_orders_per_minute",),
    "max_daily_loss": ("max_daily_loss",),
    "order_type": ("order_type",),
    "reduce_only": ("reduce_only",),
    "flatten_on_dead_man": ("flatten_on_dead_man",),
    "heartbeat_timeout_s": ("monitoring", "heartbeat_timeout_s"),
    "trading_days": ("trading_days",),
    "trading_start": ("trading_hours", "start"),
    "trading_end": ("trading_hours", "end"),
    "calendar": ("trading_hours", "calendar"),
}
_IB_OVERRIDES = {"host": ("ib", "host"), "port": ("ib", "port"), "client_id": ("ib", "client_id")}


@dataclass(frozen=True)
class ExecutionConfig:
    settings: ExecutionSettings
    paper: PaperTradingConfig
    paper_path: str

    @property
    def costs(self) -> CostModel:
        if not self.settings.sim_costs:
            return CostModel()
        return CostModel.from_dict(msgspec.json.decode(self.settings.sim_costs))

    @property
    def live_confirmed(self) -> bool:
        return self.paper.allow_live and self.settings.confirm_live == LIVE_CONFIRMATION

    def live_track_record(self) -> TrackRecord:
        """The compare reports' track record, as the live guard judges it (read now)."""
        s = self.settings
        return read_track_record(s.reports_dir, s.live_track_sessions, s.live_track_bound)

    def live_track_refusal(self) -> str:
        """Why the paper track record does not allow a live account yet ('' when it does)."""
        return self.live_track_record().message


def paper_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``PAPER_TRADING_CONFIG``, else the user's file, else the example (cwd, then repo root)."""
    source = os.environ if env is None else env
    explicit = source.get("PAPER_TRADING_CONFIG", "")
    if explicit:
        return Path(explicit)
    for base in (Path.cwd(), REPO_ROOT):
        for name in (DEFAULT_PAPER_CONFIG, EXAMPLE_PAPER_CONFIG):
            if (base / name).is_file():
                return base / name
    return Path(DEFAULT_PAPER_CONFIG)


def _apply(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def load_config(env: Mapping[str, str] | None = None) -> ExecutionConfig:
    """Everything execution needs at start; ``ConfigError`` names the bad key."""
    settings = from_env(ExecutionSettings, "EXECUTION_", env)
    ib_env = from_env(IBEnv, "IB_", env)
    path = paper_config_path(env)
    paper = load_paper_config(path)
    data = msgspec.to_builtins(paper)
    applied: dict[str, str] = {}  # dotted paper key -> env variable that set it
    for name, cfg_path in _OVERRIDES.items():
        value = getattr(settings, name)
        if value is not None:
            _apply(data, cfg_path, value)
            applied[".".join(cfg_path)] = f"EXECUTION_{name.upper()}"
    for name, cfg_path in _IB_OVERRIDES.items():
        value = getattr(ib_env, name)
        if value is not None:
            _apply(data, cfg_path, value)
            applied[".".join(cfg_path)] = f"IB_{name.upper()}"
    if applied:
        try:
            paper = msgspec.convert(data, PaperTradingConfig)
        except msgspec.ValidationError as exc:
            key, why = validation_key(exc)
            variable = applied.get(key)
            where = f"{variable} (overrides '{key}' of {path})" if variable else f"{path}: '{key}'"
            raise ConfigError(f"{where}: {why}") from None
    return ExecutionConfig(settings=settings, paper=paper, paper_path=str(path))
