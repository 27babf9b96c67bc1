"""Monitor settings, from ``MONITOR_*`` environment variables.

``MONITOR_INITIAL_CASH`` is the account the monitor's equity starts from. Its default, 1,000,000,
is the default account of the bundled broker simulator (``IBSIM_INITIAL_CASH``, like an IB paper
account), which is execution's default broker, so the monitor and the broker report the same
account. With another account (``EXECUTION_BROKER=sim`` starts from ``EXECUTION_SIM_INITIAL_CASH``,
100,000; a real paper account has its own) set it to that account's starting cash. ``status`` and
``pnl`` show the figure used (``initial_cash``) and what the equity is computed from
(``equity_basis``): the monitor's own ledger, not the broker's account report.
"""

from __future__ import annotations

import math

import msgspec

from shared.config import require

SIMULATOR_INITIAL_CASH = 1_000_000.0  # services/ibsim/config.py: IB paper accounts start with 1M


class MonitorSettings(msgspec.Struct, frozen=True, kw_only=True):
    ledger_path: str = "var/ledger/ledger.sqlite"
    initial_cash: float = SIMULATOR_INITIAL_CASH  # equity = cash + realised + unrealised - fees
    pnl_interval_s: float = 5.0  # how often a pnl line is logged while anything changed
    reconcile_interval_s: float = 10.0  # how often fills are back-filled from execution's journal
    account: str = "default"
    http_host: str = "127.0.0.1"  # the read-only JSON API; 0.0.0.0 inside a container
    http_port: int = 8080  # 0 disables it

    def __post_init__(self) -> None:
        require(bool(self.ledger_path), "ledger_path", "must not be empty")
        require(
            math.isfinite(self.initial_cash) and self.initial_cash > 0,
            "initial_cash",
            "must be a finite number > 0",
        )
        require(
            math.isfinite(self.pnl_interval_s) and self.pnl_interval_s > 0,
            "pnl_interval_s",
            "must be a finite number > 0",
        )
        require(
            math.isfinite(self.reconcile_interval_s) and self.reconcile_interval_s > 0,
            "reconcile_interval_s",
            "must be a finite number > 0",
        )
        require(0 <= self.http_port < 65536, "http_port", "must be a TCP port or 0")
