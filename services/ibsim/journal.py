"""Persistence: the execution record survives a simulator restart (``IBSIM_STATE_DIR``).

``executions.jsonl`` is append-only, one ``ExecutionRecord`` per line, flushed per execution (a
killed process loses nothing the OS accepted). ``counters.json`` reserves permIds in blocks so ids
never repeat across restarts without a disk write per order. Without a state directory both live in
memory only, and permIds start from a clock-derived base (``PERM_IDS_PER_SECOND`` per second since
2025), so runs one after the other do not reuse them unless one handed out more than that rate.

Every start is a new *session* with its own token (start time + 32 random bits, ``session``), which
the exchange writes into every execution id: a re-run, with or without a state directory, never
produces an exec id an earlier run produced, so a downstream ledger keyed by exec id cannot mistake
a new fill for a duplicate of an old one.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import IO

import msgspec

from ibsim.models import ExecutionRecord
from shared.logs import event

log = logging.getLogger("ibsim.journal")

PERM_ID_BLOCK = 1000
FIRST_PERM_ID = 1_000_001
PERM_IDS_PER_SECOND = 16
_PERM_EPOCH_S = 1_735_689_600  # 2025-01-01 UTC
_PERM_SPAN = 2**31 - 2 * FIRST_PERM_ID  # keep permIds within a signed 32-bit int, like TWS


def new_session_token(now_s: float | None = None) -> str:
    """16 hex digits: the start second (8) and 32 random bits (8); never reused in practice."""
    start = int(time.time() if now_s is None else now_s) & 0xFFFFFFFF
    return f"{start:08x}{secrets.randbits(32):08x}"


def volatile_perm_base(now_s: float | None = None) -> int:
    """First permId of a run without a state directory (clock-derived, see module doc)."""
    elapsed = max(0, int(time.time() if now_s is None else now_s) - _PERM_EPOCH_S)
    return FIRST_PERM_ID + (elapsed * PERM_IDS_PER_SECOND) % _PERM_SPAN


class ExecutionJournal:
    def __init__(self, state_dir: str) -> None:
        self._dir = Path(state_dir) if state_dir else None
        self._file: IO[bytes] | None = None
        self._encoder = msgspec.json.Encoder()
        self.session = new_session_token()  # in every exec id of this run
        first = FIRST_PERM_ID if state_dir else volatile_perm_base()
        self._next_perm_id = first
        self._reserved_until = first  # permIds below this are safe to hand out
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
