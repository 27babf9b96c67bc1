"""Run it twice, natively, as a user would: the verbs behave the same the second time.

* marketdata started again on the same state resumes its cursor; the end of the replay is one INFO
  line saying what to do (loop, `make reset`, a new period), also when a restart finds it finished;
* `make run` (scripts/run_local.py) stops on Ctrl-C well within its deadline, and a second run on
  the same state resumes instead of replaying.

Waits are on log lines with deadlines; the stop bound is generous (a behaviour check, not a
benchmark).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STOP_BOUND_S = 15.0  # run_local's deadline is 4 s; this only catches a hang


class Process:
    """A child whose output lines are collected by a thread, so waits have deadlines."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, event: str, timeout: float = 40.0) -> dict[str, Any]:
        """The first JSON log line with ``event`` (after the ones already seen)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {event!r} within {timeout} s:\n" + "\n".join(self.lines[-40:])
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"exited before {event!r}:\n" + "\n".join(self.lines[-40:])
            self.lines.append(line)
            entry = _json(line)
            if entry and entry.get("event") == event:
                return entry

    def seen(self, event: str) -> list[dict[str, Any]]:
        return [e for e in map(_json, self.lines) if e and e.get("event") == event]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_BOUND_S) -> float:
        """Send ``sig``; seconds until the process exited (it must, within ``timeout``)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"still running {timeout} s after {sig!r}")
        elapsed = time.monotonic() - t0
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return elapsed


def _json(line: str) -> dict[str, Any] | None:
    text = line.split(" | ", 1)[1] if " | " in line else line  # run_local prefixes the name
    try:
        entry = json.loads(text)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


def _marketdata_env(bus: dict[str, str], state: Path, **extra: str) -> dict[str, str]:
    return {
        **bus,
        "MARKETDATA_SYMBOLS": "AAPL,NVDA",
        "MARKETDATA_REPLAY_START": "2023-09-01",
        "MARKETDATA_BARS_PER_SECOND": "20",
        "MARKETDATA_START_DELAY_S": "0.2",
        "MARKETDATA_STATE_DIR": str(state),
        **extra,
    }


def _assert_end_of_replay_says_what_to_do(entry: dict[str, Any]) -> None:
    assert entry["level"] == "info"
    for advice in ("MARKETDATA_LOOP=true", "make reset", "MARKETDATA_REPLAY_START"):
        assert advice in entry["hint"]


def test_marketdata_twice_resumes_then_stays_finished_and_says_so(
    busproxy: dict[str, str], tmp_path: Path
) -> None:
    state = tmp_path / "md"
    argv = [sys.executable, "-m", "marketdata"]
    # 1. a first period, to 2023-09-11: published to the end, then the INFO line
    first = Process(argv, _marketdata_env(busproxy, state, MARKETDATA_REPLAY_END="2023-09-11"))
    done = first.wait_for("replay_finished")
    _assert_end_of_replay_says_what_to_do(done)
    steps_first = done["steps"]
    assert steps_first > 0 and done["published"] == 2 * steps_first
    assert first.stop() < STOP_BOUND_S and first.proc.returncode == 0
    # 2. the same state, the period extended to the end of the data: resumes after step 1's bars
    second = Process(argv, _marketdata_env(busproxy, state))
    restored = second.wait_for("cursor_restored")
    assert restored["cursor"] == steps_first
    started = second.wait_for("replay_started")
    assert started["from_step"] == steps_first
    done = second.wait_for("replay_finished")
    assert 0 < done["published"] == 2 * (done["steps"] - steps_first)
    second.stop()
    # 3. once more: nothing left to publish, and the same advice instead of silence
    third = Process(argv, _marketdata_env(busproxy, state))
    done = third.wait_for("replay_finished")
    assert done["published"] == 0
    _assert_end_of_replay_says_what_to_do(done)
    third.stop()


def test_make_run_stops_on_ctrl_c_within_its_deadline_and_a_rerun_resumes(
    bus_env: dict[str, str], tmp_path: Path
) -> None:
    """`make run` twice (the light part of the stack: the forwarder and marketdata)."""
    env = {
        **_marketdata_env(bus_env, tmp_path / "md", MARKETDATA_REPLAY_END="2023-09-15"),
        "RUN_SKIP": "ibsim,monitor,execution,inference,trainer",
        "MARKETDATA_SOURCE": "replay",  # make run's default is ib; this is about the replay cursor
    }
    argv = [sys.executable, str(REPO / "scripts" / "run_local.py")]
    first = Process(argv, env)
    done = first.wait_for("replay_finished")
    assert done["published"] > 0
    elapsed = first.stop(signal.SIGINT)  # what Ctrl-C sends
    out = "\n".join(first.lines)
    assert first.proc.returncode == 0, out
    assert "all services stopped" in out and "did not stop" not in out
    assert elapsed < STOP_BOUND_S

    second = Process(argv, env)
    assert second.wait_for("cursor_restored")["cursor"] == done["steps"]
    again = second.wait_for("replay_finished")
    assert again["published"] == 0
    _assert_end_of_replay_says_what_to_do(again)
    second.stop(signal.SIGINT)
    assert second.proc.returncode == 0
