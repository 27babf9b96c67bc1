"""Monitor settings, from ``MONITOR_*`` environment variables.

``MONITOR_INITIAL_CASH`` is the account the monitor's equity starts from. Its default, 1,000,000,
is the default account of the bundled broker simulator (``IBSIM_INITIAL_CASH``, like an IB paper
account), which is execution's default broker, so the monitor and the broker report the same
account. With another account (``EXECUTION_BROKER=sim`` starts from ``EXECUTION_SIM_INITIAL_CASH``,
100,000; a real paper account has its own) set it to that account's starting cash. ``status`` and
``pnl`` show the figure used (``initial_cash``) and what the equity is computed from
(``equity_basis``): the monitor's own ledger, not the broker's account report.

Dashboard and alerts (``monitor.alerts``): ``MONITOR_DASHBOARD_INTERVAL_S`` is how often the
dashboard is pushed (server-sent events) and the alert rules are evaluated. Rules, 0 = off:
``MONITOR_ALERT_DRAWDOWN_PCT`` (equity this many % below its peak), ``MONITOR_ALERT_DAILY_LOSS``
(equity this much below the UTC day's first figure, in account currency),
``MONITOR_ALERT_STALE_BAR_S`` (no bar for this many seconds). Broker disconnected, kill switch on
and model swapped/refused always alert. ``MONITOR_ALERT_WEBHOOK_URL`` (http:// or https://) gets
each alert as a JSON POST, with ``MONITOR_ALERT_WEBHOOK_TIMEOUT_S``.
``MONITOR_ALERT_BACKTEST_DEVIATION`` (0 = off) alerts when the newest paper-versus-backtest report
under ``MONITOR_REPORTS_DIR`` (``make compare``; the dashboard links and serves them read-only)
says ``verdict.max_deviation`` is above it (the report's units: the largest session deviation
as a fraction of that session's start equity, e.g. 0.005).
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
    dashboard_interval_s: float = 1.0  # dashboard push and alert evaluation period
    alert_drawdown_pct: float = 10.0  # % below the equity peak; 0 = off
    alert_daily_loss: float = 0.0  # account currency below the day's first equity; 0 = off
    alert_stale_bar_s: float = 0.0  # seconds without any bar; 0 = off (markets close)
    alert_webhook_url: str = ""  # POST JSON here on every alert transition; "" = none
    alert_webhook_timeout_s: float = 5.0
    alert_backtest_deviation: float = 0.0  # newest report's verdict.max_deviation above; 0 = off
    reports_dir: str = "evaluation_results"  # paper-vs-backtest-<period>/report.{html,json}
    # The shared model root (INFERENCE_MODEL_DIR / TRAINER_MODEL_DIR): retrain.json is read from
    # it, read-only, for the dashboard's Retraining panel (monitor.retraining).
    model_dir: str = "models"

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
        require(
            math.isfinite(self.dashboard_interval_s) and 0.05 <= self.dashboard_interval_s <= 60,
            "dashboard_interval_s",
            "must be a finite number of seconds in [0.05, 60]",
        )
        require(
            math.isfinite(self.alert_drawdown_pct) and 0 <= self.alert_drawdown_pct <= 100,
            "alert_drawdown_pct",
            "must be a finite percentage in [0, 100] (0 = off)",
        )
        require(
            math.isfinite(self.alert_daily_loss) and self.alert_daily_loss >= 0,
            "alert_daily_loss",
            "must be a finite amount >= 0 (0 = off)",
        )
        require(
            math.isfinite(self.alert_stale_bar_s) and 0 <= self.alert_stale_bar_s <= 7 * 86400,
            "alert_stale_bar_s",
            "must be a finite number of seconds in [0, 604800] (0 = off)",
        )
        url = self.alert_webhook_url
        require(
            url == "" or (url.startswith(("http://", "https://")) and len(url) <= 2048),
            "alert_webhook_url",
            "must be empty or an http:// or https:// URL",
        )
        require(
            math.isfinite(self.alert_backtest_deviation) and self.alert_backtest_deviation >= 0,
            "alert_backtest_deviation",
            "must be a finite number >= 0 (0 = off)",
        )
        require(bool(self.reports_dir), "reports_dir", "must not be empty")
        require(
            math.isfinite(self.alert_webhook_timeout_s) and 0 < self.alert_webhook_timeout_s <= 60,
            "alert_webhook_timeout_s",
            "must be a finite number of seconds in (0, 60]",
        )
