"""Repeated refusals summarised: one WARNING line per reason per minute, with a count.

A replay of daily bars at 10 bars/s against ``max_orders_per_minute`` refused 121 signals a minute,
one log line each, which buried everything else. Now the first refusal of a reason is logged at
once (an operator sees it without waiting), and the rest of that reason's refusals are counted and
logged as one ``orders_refused`` line when its minute is over. A reason that stops recurring costs
one more line (its last count) and is then forgotten. Every single refusal is still published on
the bus (``OrderEvent`` status "skipped") and logged at DEBUG with its order reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from shared.logs import event


@dataclass
class _Window:
    started: float  # wall-clock start of this reason's minute
    count: int = 0  # refusals in it not yet logged


@dataclass
class RefusalSummary:
    logger: logging.Logger
    window_s: float = 60.0
    _windows: dict[str, _Window] = field(default_factory=dict)

    def record(self, reason: str, now: float) -> None:
        window = self._windows.get(reason)
        if window is None:
            self._windows[reason] = _Window(started=now)
            self._log(reason, 1, first=True)
            return
        window.count += 1
        self.flush(now)

    def flush(self, now: float) -> None:
        """Log every reason whose minute is over (called on each refusal and by the watchdog)."""
        for reason in list(self._windows):
            window = self._windows[reason]
            if now - window.started < self.window_s:
                continue
            if window.count:
                self._log(reason, window.count, first=False)
                self._windows[reason] = _Window(started=now)
            else:
                del self._windows[reason]  # quiet for a whole minute: the next one is news again

    def _log(self, reason: str, count: int, *, first: bool) -> None:
        event(
            self.logger,
            "orders_refused",
            logging.WARNING,
            reason=reason,
            count=count,
            window_s=0 if first else self.window_s,
        )
