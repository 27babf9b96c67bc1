"""What every source does with a bar between reading it and the bus: validate, stamp, publish,
store.

* validation (``marketdata.validation``): a bad bar is quarantined, an exact duplicate dropped;
* the epoch (``Bar.epoch``): a counter in ``<state_dir>/epoch.json``, bumped on every marketdata
  start (``BarPipeline`` is made once per process) and on every reconnect to the data source
  (``new_epoch``), so subscribers see when the stream restarted;
* ``Bar.backfill``: set on bars published to fill a gap after a reconnect;
* the bar store: every published bar is appended to ``shared.barstore.BarStore``
  (``MARKETDATA_BAR_STORE``, default ``<state_dir>/bars.sqlite``); a conflict with a stored bar
  (a replay restarted over stored history with other data) is logged and counted, not fatal.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from marketdata.validation import BarValidator, Quarantine, Verdict
from shared.barstore import BarConflict, BarRefused, BarStore
from shared.logs import event
from shared.messages import Bar

log = logging.getLogger("marketdata.pipeline")

EPOCH_FILE = "epoch.json"
QUARANTINE_FILE = "quarantine.sqlite"
BAR_STORE_FILE = "bars.sqlite"


class EpochCounter:
    """A counter persisted in one small JSON file (written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value = int(json.loads(path.read_text())["epoch"]) if path.exists() else 0

    def bump(self) -> int:
        self.value += 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"epoch": self.value}))
        os.replace(tmp, self.path)
        return self.value


class BarPipeline:
    def __init__(
        self,
        state_dir: str | Path,
        publish: Callable[[Bar], object],
        bar_store_path: str = "",
        use_bar_store: bool = True,
    ) -> None:
        state = Path(state_dir)
        self._publish = publish
        self.quarantine = Quarantine(state / QUARANTINE_FILE)
        self.validator = BarValidator(self.quarantine)
        self.epochs = EpochCounter(state / EPOCH_FILE)
        self.epoch = self.epochs.bump()  # a start is a new epoch
        self.store_path = Path(bar_store_path) if bar_store_path else state / BAR_STORE_FILE
        self.store = BarStore(self.store_path) if use_bar_store else None
        self.published = 0
        self.backfilled = 0
        self.store_conflicts = 0
        self.last_bar_close_ts = 0

    def new_epoch(self) -> int:
        self.epoch = self.epochs.bump()
        event(log, "epoch", epoch=self.epoch)
        return self.epoch

    def offer(self, bar: Bar, *, publish: bool = True, backfill: bool = False) -> Bar | None:
        """Validate ``bar``; stamp it with the epoch and publish (and store) it when it passes
        and ``publish`` is set. ``publish=False`` (warm-up history) only teaches the validator
        what came before. Returns the stamped bar, or None when it was dropped (an exact
        duplicate) or quarantined."""
        if self.validator.check(bar) is not Verdict.PUBLISH:
            return None
        bar = msgspec.structs.replace(bar, epoch=self.epoch, backfill=backfill and publish)
        if not publish:
            return bar
        self._publish(bar)
        self.published += 1
        self.backfilled += int(backfill)
        self.last_bar_close_ts = max(self.last_bar_close_ts, bar.ts_event)
        if self.store is not None:
            self._store(bar)
        return bar

    def _store(self, bar: Bar) -> None:
        assert self.store is not None
        try:
            self.store.append(bar)
        except (BarConflict, BarRefused) as exc:  # the store holds another bar for that close
            self.store_conflicts += 1
            event(log, "bar_store_conflict", logging.WARNING, symbol=bar.symbol, error=str(exc))

    def status(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "published": self.published,
            "backfilled": self.backfilled,
            "last_bar_close_ts": self.last_bar_close_ts or None,
            "bar_store": str(self.store_path) if self.store is not None else None,
            "bar_store_conflicts": self.store_conflicts,
            **self.validator.status(),
        }

    def close(self) -> None:
        self.quarantine.close()
        if self.store is not None:
            self.store.close()
