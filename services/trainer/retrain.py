"""Scheduled retraining: train on the bar store's latest data, gate, shadow, then promote or drop.

One candidate at a time, each a record in ``<model root>/retrain.json`` (the model registry, beside
``pushes.json`` and ``shadow.json``) that moves through these states, each change logged, kept in
the record's ``steps`` with its numbers, and shown in ``hb.trainer`` and ``status``:

* ``training``: ``trainer.pipeline --source barstore`` on the bars closing in the last
  ``TRAINER_RETRAIN_WINDOW`` (cut 60 / 20 / 20 % into train, validation folds, hold-out), with
  ``--no-push``: the pipeline's fold gate decides, nothing goes live from here.
* ``candidate``: the gate promoted it; ``dropped`` when the gate rejected it (or training failed).
* ``shadow``: loaded beside the live model (``trainer.shadow.load_shadow``); inference publishes its
  would-be targets on ``shadow.<SYM>``. The trainer subscribes to ``signal.`` and ``shadow.`` and
  marks both with the monitor's rule (``shared.shadow_marks.step_returns``: a decision at close
  ``c0`` earns ``target * (c1 / c0 - 1)`` with ``c1`` the next known close), per *session* (the New
  York date of the decision's bar), on the bars both models decided. The monitor's bus commands
  carry no per-session live-versus-shadow numbers, so the trainer computes them from the same
  messages with the same functions (``monitor.shadow`` uses them too). Decisions are appended
  to ``<output>/retrain/<id>.decisions.jsonl`` so a restart resumes the evaluation where it was.
* after ``TRAINER_RETRAIN_SHADOW_SESSIONS`` complete sessions: ``promoting`` then ``promoted``
  (``trainer.shadow.promote_shadow``) when the shadow's summed return beats the live model's on
  the same bars by more than ``TRAINER_RETRAIN_MARGIN`` percentage points, else ``dropped``
  (``drop_shadow``). A restart that finds ``promoting`` checks the push history first: a version
  already live is marked promoted, never pushed twice.

A session is complete when every symbol the shadow decided in it has a later known close (its
decisions are all marked) or when decisions two sessions later exist. A session with no bar that
both models decided does not count.

This module is the state machine (``RetrainLoop``); ``trainer.retrain_config`` holds the settings,
the registry file, the data window and the pipeline's arguments, ``trainer.retrain_scoring`` the
session scores and the promote-or-drop rule.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from shared.logs import event
from shared.messages import ShadowTarget, TargetPosition
from trainer import registry
from trainer import shadow as shadow_verbs
from trainer.retrain_config import (
    RetrainSettings,
    parse_duration,
    pipeline_argv,
    read_records,
    window_overrides,
    write_records,
)
from trainer.retrain_scoring import Row, decide, decision_row, session_scores

log = logging.getLogger("trainer.retrain")

OPEN_STATES = ("training", "candidate", "shadow", "promoting")


def _iso(ts_s: float) -> str:
    return dt.datetime.fromtimestamp(ts_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- the loop

Train = Callable[[list[str]], Awaitable[tuple[int | None, Any]]]


class RetrainLoop:
    """The retraining state machine of one trainer service.

    ``train(argv)`` runs ``trainer.pipeline`` and returns (exit code, its JSON summary); ``clock``
    gives the time in seconds (injected so tests move time without sleeping).
    """

    def __init__(
        self,
        settings: RetrainSettings,
        *,
        model_dir: Path,
        output_dir: Path,
        key: bytes,
        publish: Callable[[Any], None] | None,
        train: Train,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.model_dir = model_dir
        self.output_dir = output_dir
        self.key = key
        self.publish = publish
        self.train = train
        self.clock = clock
        self.started_s = clock()
        self.rows: list[Row] = []
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ records
    def records(self) -> list[dict[str, Any]]:
        return read_records(self.model_dir)

    def current(self) -> dict[str, Any] | None:
        records = self.records()
        return records[-1] if records and records[-1]["state"] in OPEN_STATES else None

    def _step(self, record: dict[str, Any], state: str, **numbers: Any) -> dict[str, Any]:
        """Move ``record`` to ``state``: saved in the registry, logged with its numbers."""
        record["state"] = state
        record.update(numbers)
        record.setdefault("steps", []).append({"state": state, "at": _iso(self.clock()), **numbers})
        records = [r for r in self.records() if r["id"] != record["id"]] + [record]
        write_records(self.model_dir, records)
        level = logging.WARNING if state == "dropped" else logging.INFO
        event(log, f"retrain_{state}", level, id=record["id"], **numbers)
        return record

    def _rows_file(self, record: dict[str, Any]) -> Path:
        return self.output_dir / "retrain" / f"{record['id']}.decisions.jsonl"

    # ------------------------------------------------------------------ schedule
    def next_due_s(self) -> float | None:
        every = self.settings.every_s
        if every is None:
            return None
        records = self.records()
        last = float(records[-1]["started_s"]) if records else self.started_s
        return last + every

    def busy(self) -> str | None:
        if self.task is not None and not self.task.done():
            return "a retrain is running"
        record = self.current()
        if record is not None and record["state"] in ("shadow", "promoting"):
            return f"{record['id']} is being evaluated as a shadow"
        return None

    def tick(self) -> bool:
        """Start a scheduled retrain when one is due and nothing is under way."""
        due = self.next_due_s()
        if due is None or self.clock() < due or self.busy() is not None:
            return False
        self.start("schedule")
        return True

    def start(self, reason: str, window: str = "") -> dict[str, Any]:
        why = self.busy()
        if why is not None:
            raise RuntimeError(f"busy: {why}")
        if not self.settings.barstore:
            raise ValueError("TRAINER_RETRAIN_BARSTORE is not set: no bar store to train on")
        window_s = parse_duration(window) if window else self.settings.window_s
        if window_s is None:
            raise ValueError("window must be a duration such as 180d")
        now = self.clock()
        record: dict[str, Any] = {
            "id": "retrain-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)),
            "reason": reason,
            "started_s": now,
            "started_at": _iso(now),
            "live_version": registry.current_version(self.model_dir),
        }
        self._step(record, "training", window_s=window_s, barstore=self.settings.barstore)
        self.task = asyncio.create_task(self._train_and_gate(record, window_s))
        return record

    async def _train_and_gate(self, record: dict[str, Any], window_s: float) -> None:
        try:
            symbols = [s.strip() for s in self.settings.symbols.split(",") if s.strip()]
            overrides = window_overrides(
                Path(self.settings.barstore), symbols, window_s, self.clock()
            )
            code, summary = await self.train(pipeline_argv(self.settings, overrides))
        except Exception as exc:
            self._step(record, "dropped", why=f"training did not run: {exc}")
            return
        if code != 0 or not isinstance(summary, dict) or "version" not in summary:
            self._step(record, "dropped", why=f"training failed (exit code {code})")
            return
        gate = {
            "version": summary["version"],
            "verdict": summary.get("verdict"),
            "gate_reason": summary.get("reason"),
            "gate": summary.get("gate_numbers"),
            "window": {k: overrides[k] for k in ("train_start", "val_start", "test_start")},
        }
        if summary.get("verdict") != "promoted":
            self._step(record, "dropped", why="the validation-fold gate rejected it", **gate)
            return
        self._step(record, "candidate", **gate)
        self._load_shadow(record)

    def _load_shadow(self, record: dict[str, Any]) -> None:
        try:
            loaded = shadow_verbs.load_shadow(
                record["version"],
                source_root=self.output_dir / "best_models",
                model_dir=self.model_dir,
                key=self.key,
                publish=self.publish,
            )
        except registry.PushError as exc:
            self._step(record, "dropped", why=f"shadow load refused: {exc}")
            return
        self.rows = []
        self._step(
            record,
            "shadow",
            shadow_version=loaded["version"],
            live_version=loaded["live"],
            sessions_needed=self.settings.shadow_sessions,
            margin_pct=self.settings.margin,
            scores=[],
        )

    # ------------------------------------------------------------------ evaluation
    def resume(self) -> None:
        """After a restart: carry on with the open record (never promoting twice)."""
        record = self.current()
        if record is None:
            return
        state = record["state"]
        if state == "training":  # the pipeline was this process's child: it is gone
            self._step(record, "dropped", why="the trainer restarted during training")
        elif state == "candidate":
            self._load_shadow(record)
        elif state == "shadow":
            self.rows = self._read_rows(record)
            event(log, "retrain_resumed", id=record["id"], decisions=len(self.rows))
            self.evaluate(record)
        elif state == "promoting":
            self._promote(record, record.get("decision", {}))

    def _read_rows(self, record: dict[str, Any]) -> list[Row]:
        try:
            lines = self._rows_file(record).read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def observe(self, message: Any) -> None:
        """A live ``signal.`` or ``shadow.`` decision while a candidate is watched."""
        if not isinstance(message, (TargetPosition, ShadowTarget)):
            return
        record = self.current()
        if record is None or record["state"] != "shadow":
            return
        row = decision_row(message)
        if row["role"] == "shadow" and row["model_version"] != record["shadow_version"]:
            return
        new_session = not self.rows or row["session"] != self.rows[-1]["session"]
        self.rows.append(row)
        path = self._rows_file(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if new_session:  # a session can only complete when a later one starts
            self.evaluate(record)

    def evaluate(self, record: dict[str, Any]) -> dict[str, Any] | None:
        scores = session_scores(self.rows, record["shadow_version"])
        if len(scores) > len(record.get("scores", [])):
            self._step(record, "shadow", scores=scores, sessions_done=len(scores))
        decision = decide(scores, self.settings.shadow_sessions, self.settings.margin)
        if decision is None:
            return None
        shadow_now = shadow_verbs.shadow_status(self.model_dir)
        if shadow_now is None or shadow_now.get("version") != record["shadow_version"]:
            self._step(record, "dropped", why="the shadow was replaced or dropped by hand")
        elif decision["promote"]:
            self._step(record, "promoting", decision=decision)
            self._promote(record, decision)
        else:
            shadow_verbs.drop_shadow(model_dir=self.model_dir, key=self.key, publish=self.publish)
            self._step(record, "dropped", why="did not beat live by the margin", decision=decision)
        return decision

    def _promote(self, record: dict[str, Any], decision: dict[str, Any]) -> None:
        version = record["shadow_version"]
        if registry.current_version(self.model_dir) == version:  # pushed before a restart
            (self.model_dir / "shadow.json").unlink(missing_ok=True)
            self._step(record, "promoted", already_live=True)
            return
        try:
            pushed = shadow_verbs.promote_shadow(
                model_dir=self.model_dir, key=self.key, publish=self.publish
            )
        except registry.PushError as exc:
            self._step(record, "dropped", why=f"promotion refused: {exc}")
            return
        self._step(record, "promoted", pushed=pushed["version"], sha256=pushed["sha256"])

    def status(self) -> dict[str, Any]:
        """What ``hb.trainer`` and ``status`` carry about retraining."""
        records = self.records()
        record = records[-1] if records else None
        due = self.next_due_s()
        summary = None
        if record is not None:
            summary = {
                k: record.get(k)
                for k in ("id", "state", "version", "shadow_version", "why", "decision")
                if record.get(k) is not None
            }
            summary["sessions_done"] = len(record.get("scores", []))
            if record["state"] == "shadow":
                summary["decisions_seen"] = len(self.rows)
            summary["sessions_needed"] = self.settings.shadow_sessions
        return {
            "every": self.settings.every,
            "next_due": _iso(due) if due is not None else None,
            "last": summary,
        }
