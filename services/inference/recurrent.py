"""Decisions of a stateful (LSTM / attention) policy per symbol (mixin of ``InferenceService``).

Each symbol's state (``SymbolState.policy_state``, from ``shared.stateful_model``) belongs to one
model and one stretch of continuous bars: it restarts from the initial (zero) state when the
model changes or ``SymbolState.breaks`` moved (a gap, a backfill run), as the trainer's backtest
decider does. Several symbols decided together have their states stacked on the batch axis.
A swap to a stateful model re-warms every symbol, so its state is rebuilt by replaying the
snapshot (features, positions, state) and live equals the backtest of those bars.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.loaded_model import LoadedModel
from shared.stateful_model import State, StatefulModel

if TYPE_CHECKING:  # the service imports this module
    from inference.service import SymbolState


class StatefulDecisions:
    """Needs the service's ``counters``, ``states`` and ``_reset_symbol``."""

    counters: Any
    states: dict[str, Any]

    def _policy_states(self, model: StatefulModel, states: list[SymbolState]) -> list[State]:
        """Each symbol's state for ``model``, restarted from zeros when it belongs to another
        model or continuity broke since it was started."""
        out = []
        for s in states:
            if s.policy_state is None or s.policy_model is not model or s.policy_breaks != s.breaks:
                if s.policy_state is not None:
                    s.state_resets += 1
                    self.counters.state_resets += 1
                s.policy_state = model.initial_state()
                s.policy_model = model
                s.policy_breaks = s.breaks
            out.append(s.policy_state)
        return out

    def _decide(self, model: LoadedModel, state: SymbolState, obs: np.ndarray) -> float:
        """One symbol's target; a stateful model carries the symbol's state forward."""
        if not isinstance(model, StatefulModel):
            return model.decide(obs)
        targets, new = model.step(obs[None, :], self._policy_states(model, [state]))
        state.policy_state = new[0]
        return targets[0]

    def _decide_rows(
        self, model: LoadedModel, states: list[SymbolState], obs: np.ndarray
    ) -> list[float]:
        """Targets of distinct symbols (``obs``: (n, size), one row each) in one ONNX call
        (states stacked on the batch axis)."""
        if not isinstance(model, StatefulModel):
            return list(model.decide_batch(obs).tolist())
        targets, new = model.step(obs, self._policy_states(model, states))
        for state, nxt in zip(states, new, strict=True):
            state.policy_state = nxt
        return targets

    def _model_changed(self, new: LoadedModel) -> None:
        """A stateful model starts every symbol from zeros and rebuilds its state by replaying
        the snapshot (features, positions and state as the backtest of those bars)."""
        if not new.stateful:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop (a plain call): states restart from zeros on next bar
            return
        for symbol, state in list(self.states.items()):
            if state.warm:
                self._reset_symbol(  # type: ignore[attr-defined]
                    symbol, state.last_signal_ts
                )
