"""Monitor settings, from ``MONITOR_*`` environment variables."""

from __future__ import annotations

import msgspec

from shared.config import require


class MonitorSettings(msgspec.Struct, frozen=True, kw_only=True):
    ledger_path: str = "var/ledger/ledger.sqlite"
    initial_cash: float = 100_000.0  # equity = initial cash + realised + unrealised - fees
    pnl_interval_s: float = 5.0  # how often a pnl line is logged while anything changed
    reconcile_interval_s: float = 10.0  # how often fills are back-filled from execution's journal
    account: str = "default"
    http_host: str = "127.0.0.1"  # the read-only JSON API; 0.0.0.0 inside a container
    http_port: int = 8080  # 0 disables it

    def __post_init__(self) -> None:
        require(bool(self.ledger_path), "ledger_path", "must not be empty")
        require(self.initial_cash > 0, "initial_cash", "must be > 0")
        require(self.pnl_interval_s > 0, "pnl_interval_s", "must be > 0")
        require(self.reconcile_interval_s > 0, "reconcile_interval_s", "must be > 0")
        require(0 <= self.http_port < 65536, "http_port", "must be a TCP port or 0")
