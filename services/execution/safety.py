"""The safety switches of the execution service, in one component that persists its own state.

Five switches block or restrict trading; this is their one owner (``RiskManager`` reads them, the
service and the commands flip them through the methods here, nobody else writes them):

* kill switch (``kill`` / ``rearm``) and reduce-only (``set_reduce_only``): set by an operator;
  persisted, because a restart must not silently undo an operator's decision;
* daily-loss halt (``halted_day``) and its baseline (``DailyBaseline``): persisted, because a
  restart must not forgive a loss;
* dead-man (silent peers) and live guard (a live account without confirmation): NOT persisted;
  both are a verdict on evidence that is observed again after every start (heartbeats, the
  connected account), so a stored verdict could only be stale.

State lives in the order journal's key/value table (``SafetyStore``) under the keys below; a value
of the wrong type stops the start with a ``StateFileError`` (exit 2), never a crash loop and never
a silent default that would re-enable trading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import msgspec

from execution.daily_baseline import DailyBaseline, decode_baseline, next_baseline
from execution.input_guard import StateFileError

KILLED_KEY = "killed"
HALTED_DAY_KEY = "halted_day"
REDUCE_ONLY_KEY = "reduce_only"
BASELINE_KEY = "daily_baseline"


class SafetyStore(Protocol):
    """Where the switches persist (the order journal's key/value table)."""

    path: Any

    def get_value(self, key: str, default: Any = None) -> Any: ...

    def set_value(self, key: str, value: Any) -> None: ...


class SafetySwitches:
    """Kill, reduce-only, daily-loss halt (+ baseline), dead-man and live guard.

    ``store=None`` keeps everything in memory (the pure risk tests); with a store every change of
    a persisted switch is written before the method returns.
    """

    def __init__(self, store: SafetyStore | None = None, *, reduce_only: bool = False) -> None:
        self._store = store
        self.killed = False
        self.halted_day = ""  # trading day on which the daily loss limit was hit
        self.reduce_only = reduce_only  # the paper config's default until an operator sets it
        self.baseline: DailyBaseline | None = None
        self.dead_man = ""  # non-empty: which peers are silent
        self.live_refused = ""  # non-empty: the account is live and not confirmed
        if store is not None:
            self._load(store)

    def _load(self, store: SafetyStore) -> None:
        self.killed = self._stored(store, KILLED_KEY, bool, False)
        self.halted_day = self._stored(store, HALTED_DAY_KEY, str, "")
        if store.get_value(REDUCE_ONLY_KEY) is not None:
            self.reduce_only = self._stored(store, REDUCE_ONLY_KEY, bool, False)
        try:
            self.baseline = decode_baseline(store.get_value(BASELINE_KEY))
        except ValueError as exc:
            raise StateFileError(f"{store.path}: {exc}") from None

    @staticmethod
    def _stored(store: SafetyStore, key: str, kind: type[Any], default: Any) -> Any:
        value = store.get_value(key, default)
        if not isinstance(value, kind):
            raise StateFileError(f"{store.path}: safety state {key!r} is {value!r}, not a {kind}")
        return value

    def _persist(self, key: str, value: Any) -> None:
        if self._store is not None:
            self._store.set_value(key, value)

    # ------------------------------------------------------------------ operator switches
    def kill(self) -> None:
        self.killed = True
        self._persist(KILLED_KEY, True)

    def rearm(self, *, clear_daily_loss: bool = False) -> bool:
        """Lift the kill switch (and today's daily-loss halt when asked); True when a halt
        was cleared."""
        self.killed = False
        self._persist(KILLED_KEY, False)
        if clear_daily_loss and self.halted_day:
            self.halted_day = ""
            self._persist(HALTED_DAY_KEY, "")
            return True
        return False

    def set_reduce_only(self, on: bool) -> None:
        self.reduce_only = on
        self._persist(REDUCE_ONLY_KEY, on)

    # ------------------------------------------------------------------ daily loss
    def observe_equity(self, *, day: str, account: str, equity: float) -> DailyBaseline:
        """Today's baseline after seeing ``equity`` (persisted when it changed)."""
        baseline = next_baseline(self.baseline, day=day, account=account, equity=equity)
        if baseline != self.baseline:
            self._persist(BASELINE_KEY, msgspec.to_builtins(baseline))
            self.baseline = baseline
        return baseline

    def halt_day(self, day: str) -> None:
        self.halted_day = day
        self._persist(HALTED_DAY_KEY, day)

    # ------------------------------------------------------------------ observed verdicts
    def observe_heartbeats(
        self,
        last_seen: Mapping[str, float],
        watched: Iterable[str],
        now: float,
        timeout_s: float,
    ) -> tuple[list[str], str]:
        """The dead-man rule: (silent peers, change) with change "tripped", "cleared" or "".

        A peer never heard from is not silent (it may not be deployed); one heard from and then
        quiet for more than ``timeout_s`` is.
        """
        silent = [s for s in watched if s in last_seen and now - last_seen[s] > timeout_s]
        if silent and not self.dead_man:
            self.dead_man = f"no heartbeat from {', '.join(silent)} for > {timeout_s:g}s"
            return silent, "tripped"
        if not silent and self.dead_man:
            self.dead_man = ""
            return silent, "cleared"
        return silent, ""

    def observe_account(self, *, paper: bool, confirmed: bool, refusal: str) -> None:
        """The live guard: a live account trades only when confirmed; ``refusal`` says why not."""
        self.live_refused = "" if paper or confirmed else refusal

    # ------------------------------------------------------------------ the verdict
    def blocked(self, day: str, max_daily_loss: float) -> str:
        """Why no new order may be sent now ('' when none blocks)."""
        if self.live_refused:
            return self.live_refused
        if self.killed:
            return "kill switch engaged (send 'rearm' to trade again)"
        if self.halted_day and self.halted_day == day:
            return f"max daily loss {max_daily_loss:g} hit on {day}: halted for the day"
        if self.dead_man:
            return f"dead-man: {self.dead_man}"
        return ""
