"""Persistence: the execution record survives a simulator restart (``IBSIM_STATE_DIR``).

``executions.jsonl`` is append-only, one ``ExecutionRecord`` per line, flushed per execution (a
killed process loses nothing the OS accepted). ``counters.json`` reserves permIds in blocks so ids
never repeat across restarts without a disk write per order. Without a state directory both live in
memory only.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO

import msgspec

from ibsim.models import ExecutionRecord
from shared.logs import event

log = logging.getLogger("ibsim.journal")

PERM_ID_BLOCK = 1000
FIRST_PERM_ID = 1_000_001


class ExecutionJournal:
    def __init__(self, state_dir: str) -> None:
        self._dir = Path(state_dir) if state_dir else None
        self._file: IO[bytes] | None = None
        self._encoder = msgspec.json.Encoder()
        self._next_perm_id = FIRST_PERM_ID
        self._reserved_until = FIRST_PERM_ID  # permIds below this are safe to hand out
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)

    @property
    def persistent(self) -> bool:
        return self._dir is not None

    def load(self) -> list[ExecutionRecord]:
        """Records from earlier runs; a torn last line (killed mid-write) is skipped and logged."""
        records: list[ExecutionRecord] = []
        if self._dir is None:
            return records
        path = self._dir / "executions.jsonl"
        if path.exists():
            decoder = msgspec.json.Decoder(ExecutionRecord)
            for number, line in enumerate(path.read_bytes().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    records.append(decoder.decode(line))
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    event(log, "journal_line_skipped", logging.WARNING, line=number, error=str(exc))
        counters = self._dir / "counters.json"
        if counters.exists():
            try:
                self._reserved_until = int(json.loads(counters.read_text())["next_perm_id"])
            except (ValueError, KeyError, TypeError) as exc:
                event(log, "counters_unreadable", logging.WARNING, error=str(exc))
        highest = max((r.perm_id for r in records), default=FIRST_PERM_ID - 1)
        self._next_perm_id = max(self._reserved_until, highest + 1)
        self._reserved_until = self._next_perm_id
        return records

    def next_perm_id(self) -> int:
        if self._next_perm_id >= self._reserved_until:
            self._reserved_until = self._next_perm_id + PERM_ID_BLOCK
            self._write_counters()
        perm_id = self._next_perm_id
        self._next_perm_id += 1
        return perm_id

    def append(self, record: ExecutionRecord) -> None:
        if self._dir is None:
            return
        if self._file is None:
            self._file = open(self._dir / "executions.jsonl", "ab")  # noqa: SIM115 (kept open)
        self._file.write(self._encoder.encode(record) + b"\n")
        self._file.flush()

    def clear(self) -> None:
        """Forget every execution (control ``reset``); permIds keep increasing."""
        self.close()
        if self._dir is not None:
            (self._dir / "executions.jsonl").unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write_counters(self) -> None:
        if self._dir is None:
            return
        path = self._dir / "counters.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"next_perm_id": self._reserved_until}))
        os.replace(tmp, path)  # atomic: a crash leaves the old or the new block, never half
