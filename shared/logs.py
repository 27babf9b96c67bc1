"""Logging on stdout, one line per event (so ``docker compose logs -f`` is a feed).

Use ``log = get_logger("execution")`` and ``event(log, "order_sent", order_ref=..., qty=...)``.

``LOG_FORMAT`` picks the line format: ``json`` (default; one JSON object per line, for machines)
or ``pretty`` (a trading blotter for people: fills, orders, positions, PnL with the drawdown from
the equity's peak, and alerts each on one aligned line; every other event as ``name key=value``).
Anything else stops the service at start with exit code 2 and a message naming ``LOG_FORMAT``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgspec


def _default(obj: Any) -> Any:
    return str(obj)


_json = msgspec.json.Encoder(enc_hook=_default)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "service": record.name,
            "event": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if extra:
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _json.encode(entry).decode()


# event name -> the blotter's tag; every other event is printed generically
_TAGS: Mapping[str, str] = MappingProxyType(
    {
        "fill": "FILL",
        "order": "ORDER",
        "pnl": "PNL",
        "alert_fired": "ALERT",
        "alert_cleared": "CLEARED",
        "position_mismatch": "POSITION",
        "position": "POSITION",
    }
)


class PrettyFormatter(logging.Formatter):
    """One aligned, human-readable line per event: ``time TAG body``.

    Keeps the highest equity it has printed (per formatter, i.e. per process) so a PnL line can
    show the drawdown from that peak.
    """

    def __init__(self) -> None:
        super().__init__()
        self.peak_equity: float | None = None

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.gmtime(record.created))
        stamp += f".{int(record.msecs):03d}"
        name = record.getMessage()
        values: dict[str, Any] = dict(getattr(record, "fields", None) or {})
        tag = _TAGS.get(name)
        body = self._body(name, values) if tag else None
        if body is None:
            tag = record.levelname[:8]
            body = f"{record.name:<11} {name:<22} {_pairs(values)}".rstrip()
        line = f"{stamp} {tag:<8} {body}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line

    def _see_equity(self, equity: float) -> float:
        """The peak equity so far, this figure included (0 and non-finite are ignored)."""
        if math.isfinite(equity) and equity > 0:
            self.peak_equity = max(equity, self.peak_equity or equity)
        return self.peak_equity or 0.0

    def _body(self, name: str, v: dict[str, Any]) -> str | None:
        try:
            if name == "fill":
                self._see_equity(float(v.get("equity", 0.0)))
                return (
                    f"{v['symbol']:<8} {v['side']:<4} {_qty(v['quantity'])} @ {v['price']:>11.4f}"
                    f"  fee {v.get('commission', 0.0):>8.2f}  pos {_qty(v.get('position', 0.0))}"
                    f"  realized {v.get('realized', 0.0):>12,.2f}"
                    f"  equity {v.get('equity', 0.0):>14,.2f}  {v.get('order_ref', '')}"
                ).rstrip()
            if name == "order":
                reason = f"  {v['reason']}" if v.get("reason") else ""
                return (
                    f"{v['symbol']:<8} {v['side']:<4} {_qty(v['quantity'])}"
                    f"   {v['status']:<12} {v.get('order_ref', '')}{reason}"
                )
            if name == "pnl":
                equity = float(v["equity"])
                peak = self._see_equity(equity)
                drawdown = 1.0 - equity / peak if peak > 0 else 0.0
                positions = " ".join(f"{s}={_num(q)}" for s, q in v.get("positions", {}).items())
                omitted = v.get("positions_omitted", 0)
                more = f" +{omitted} more" if omitted else ""
                return (
                    f"equity {equity:>14,.2f}  realized {v.get('realized', 0.0):>12,.2f}"
                    f"  unrealized {v.get('unrealized', 0.0):>12,.2f}"
                    f"  fees {v.get('fees', 0.0):>9,.2f}  drawdown {drawdown:>6.2%}"
                    f"  {positions or 'flat'}{more}"
                )
            if name in ("alert_fired", "alert_cleared"):
                state = v.get("state", "cleared" if name == "alert_cleared" else "")
                return f"{v['alert']:<22} {state:<8} {v.get('message', '')}".rstrip()
            if name == "position_mismatch":
                return (
                    f"{v['symbol']:<8} MISMATCH broker {_num(v['broker'])}"
                    f" ledger {_num(v['ledger'])}"
                )
            if name == "position":
                return f"{v['symbol']:<8} {_qty(v['quantity'])} avg {v.get('avg_cost', 0.0):.4f}"
        except (KeyError, TypeError, ValueError):
            return None  # an unexpected shape: the generic key=value line instead
        return None


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _qty(value: Any) -> str:
    return f"{_num(value):>9}"


def _pairs(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={_num(v)}" for k, v in values.items())


LOG_FORMATS = ("json", "pretty")


def configure(service: str, level: str | None = None, fmt: str | None = None) -> logging.Logger:
    """Route the service's logs (and library warnings) to stdout, one line per event.

    ``fmt`` (else ``LOG_FORMAT``, else ``json``): ``json`` or ``pretty`` (see the module doc).
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.Formatter.converter = time.gmtime
    chosen = (fmt or os.environ.get("LOG_FORMAT", "") or "json").lower()
    if chosen not in LOG_FORMATS:
        root.setLevel(logging.INFO)
        event(
            logging.getLogger(service),
            "config_error",
            logging.ERROR,
            error=f"LOG_FORMAT={chosen[:40]!r} is invalid: one of {', '.join(LOG_FORMATS)}",
        )
        raise SystemExit(2)
    if chosen == "pretty":
        handler.setFormatter(PrettyFormatter())
    wanted = (level or os.environ.get("LOG_LEVEL", "INFO")).upper()
    if wanted not in _LEVELS:
        root.setLevel(logging.INFO)
        event(
            logging.getLogger(service),
            "config_error",
            logging.ERROR,
            error=f"LOG_LEVEL={wanted[:40]!r} is invalid: one of {', '.join(_LEVELS)}",
        )
        raise SystemExit(2)
    root.setLevel(wanted)
    return logging.getLogger(service)


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def fields(**values: Any) -> dict[str, Any]:
    return {"fields": values}


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **values: Any) -> None:
    logger.log(level, name, extra={"fields": values})
