"""The replay loop: publish every symbol's bars in close-time order at a fixed pace.

Every bar goes through ``marketdata.pipeline`` (validated, stamped with the epoch, stored), as
with the other sources.

The cursor (how many timeline steps were published) is saved after each step, so a restarted
marketdata resumes where it stopped instead of publishing the same bars again. A replay that
reached the end stays finished across restarts; ``replay_finished`` (INFO) says so and what to do:
``MARKETDATA_LOOP=true`` to start over at the end, ``make reset`` (``docker compose down -v`` for
the Docker stack) to clear the cursor with the rest of the runtime state, or a new period
(``MARKETDATA_REPLAY_START`` / ``MARKETDATA_REPLAY_END``; a different start ignores the cursor).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from marketdata.config import MarketDataSettings, worst_case_orders_per_minute
from marketdata.pipeline import BarPipeline
from marketdata.replay import SymbolSeries
from shared.bus import heartbeat_loop
from shared.logs import event
from shared.runtime import BusConnection

log = logging.getLogger("marketdata")

END_OF_REPLAY_HINT = (
    "no more bars to publish; a restart resumes here, so it stays finished. To replay again: "
    "set MARKETDATA_LOOP=true (start over at the end), run `make reset` (clears the replay "
    "cursor, ledger and broker state under var/; Docker: `make docker-reset` or "
    "`docker compose down -v`), or pick a new period with MARKETDATA_REPLAY_START / "
    "MARKETDATA_REPLAY_END"
)


class MarketDataService:
    def __init__(
        self,
        settings: MarketDataSettings,
        bus: BusConnection,
        series: dict[str, SymbolSeries] | None = None,
        cursor_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        dataset = settings.replay_dataset
        self.series = series or {
            symbol: SymbolSeries.load(dataset, symbol, settings.replay_start, settings.replay_end)
            for symbol in settings.symbols
        }
        # The timeline: every distinct close time at or after replay_start, over all symbols.
        live = [s.close_ts[s.first_live :] for s in self.series.values()]
        self.timeline = np.unique(np.concatenate(live))
        self._next_index = {sym: s.first_live for sym, s in self.series.items()}
        self._cursor_file = Path(settings.state_dir) / f"cursor-{cursor_name or dataset}.json"
        self.cursor = 0
        # validation, quarantine, epoch and bar store (marketdata.pipeline)
        self.pipeline = BarPipeline(settings.state_dir, bus.publisher.publish, settings.bar_store)
        self.finished = False
        self._restore_cursor()

    @property
    def published(self) -> int:
        return self.pipeline.published

    # ------------------------------------------------------------------ cursor persistence
    def _restore_cursor(self) -> None:
        if not self._cursor_file.exists():
            return
        saved = json.loads(self._cursor_file.read_text())
        if (
            saved.get("symbols") != list(self.settings.symbols)
            or saved.get("replay_start") != self.settings.replay_start
        ):
            event(log, "cursor_ignored", reason="different symbols or replay_start")
            return
        self._seek(int(saved["cursor"]))
        event(log, "cursor_restored", cursor=self.cursor, of=len(self.timeline))

    def _seek(self, cursor: int) -> None:
        self.cursor = min(cursor, len(self.timeline))
        horizon = self.timeline[self.cursor - 1] if self.cursor else None
        for sym, s in self.series.items():
            if horizon is None:
                self._next_index[sym] = s.first_live
            else:
                self._next_index[sym] = int(np.searchsorted(s.close_ts, horizon, side="right"))

    def _save_cursor(self) -> None:
        self._cursor_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._cursor_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "cursor": self.cursor,
                    "symbols": list(self.settings.symbols),
                    "replay_start": self.settings.replay_start,
                }
            )
        )
        os.replace(tmp, self._cursor_file)

    # ------------------------------------------------------------------ the loop
    def publish_step(self) -> int:
        """Publish all bars that close at the next timeline instant; returns how many."""
        ts = self.timeline[self.cursor]
        count = 0
        for sym, s in self.series.items():
            i = self._next_index[sym]
            if i < len(s) and s.close_ts[i] == ts:
                self.pipeline.offer(s.bar(i))
                self._next_index[sym] = i + 1
                count += 1
        self.cursor += 1
        return count

    async def run(self) -> None:
        await asyncio.sleep(self.settings.start_delay_s)
        interval = 1.0 / self.settings.bars_per_second if self.settings.bars_per_second else 0.0
        event(
            log,
            "replay_started",
            symbols=list(self.series),
            steps=len(self.timeline),
            from_step=self.cursor,
            bars_per_second=self.settings.bars_per_second,
            worst_case_orders_per_minute=worst_case_orders_per_minute(
                self.settings.bars_per_second, len(self.series)
            ),
        )
        next_at = time.monotonic()
        while True:
            if self.cursor >= len(self.timeline):
                if not self.settings.loop:
                    break
                event(log, "replay_looped", steps=self.cursor, published=self.published)
                self._seek(0)
            self.publish_step()
            self._save_cursor()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        self.finished = True
        last = self.timeline[-1] if len(self.timeline) else None
        event(
            log,
            "replay_finished",
            published=self.published,
            steps=self.cursor,
            last_bar=str(np.datetime64(int(last), "ns")) if last is not None else None,
            cursor_file=str(self._cursor_file),
            hint=END_OF_REPLAY_HINT,
        )

    # ------------------------------------------------------------------ commands
    async def snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        """The last ``n`` bars of a symbol already known (history plus what was published)."""
        symbol = str(args.get("symbol", ""))
        if symbol not in self.series:
            raise ValueError(f"unknown symbol {symbol!r}; serving {list(self.series)}")
        n = min(int(args.get("n", self.settings.snapshot_size)), self.settings.snapshot_size)
        s = self.series[symbol]
        end = self._next_index[symbol]
        epoch = self.pipeline.epoch  # a subscriber warming up from it is in this epoch
        bars = [
            msgspec.to_builtins(msgspec.structs.replace(s.bar(i), epoch=epoch))
            for i in range(max(0, end - n), end)
        ]
        return {"symbol": symbol, "bars": bars}

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status_detail()

    def status_detail(self) -> dict[str, Any]:
        return {
            "ready": True,
            "cursor": self.cursor,
            "steps": len(self.timeline),
            "finished": self.finished,
            "symbols": list(self.series),
            **self.pipeline.status(),
        }

    async def heartbeats(self) -> None:
        await heartbeat_loop(
            self.bus.publisher,
            "marketdata",
            self.bus.settings.heartbeat_interval_s,
            self.status_detail,
        )
