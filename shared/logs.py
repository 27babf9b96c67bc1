"""JSON-lines logging on stdout, one object per line (so ``docker compose logs -f`` is a feed).

Use ``log = get_logger("execution")`` and ``event(log, "order_sent", order_ref=..., qty=...)``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
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


def configure(service: str, level: str | None = None) -> logging.Logger:
    """Route the service's logs (and library warnings) to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.Formatter.converter = time.gmtime
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
