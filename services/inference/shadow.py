"""Shadow mode: a candidate model decides beside the live one on the same bars, and only talks.

The candidate is a second ``LoadedModel`` (its own onnxruntime session) loaded with the same
checks as a push (``shared.loaded_model.load_artifact``: manifest, sha256, feature fingerprint,
observation size). Each bar's feature row, computed once for the live model, is normalised with
the candidate's own normaliser and paired with the candidate's own previous target (as if it were
live), and the would-be target is published as ``ShadowTarget`` on ``shadow.<SYM>``: a different
type and topic prefix from ``signal.``, so execution (subscribed to ``signal.`` and reading
``TargetPosition`` only) can never trade it. The monitor records it.

A shadow loaded mid-stream starts every symbol flat (position 0), like a model that just started.
A stateful shadow (LSTM / attention) keeps its own per-symbol state and position: loaded
mid-stream it rebuilds them by replaying the snapshot (silent for a symbol until then), and it
restarts the state when the live stream breaks continuity (the service passes its ``breaks``
count); a symbol re-warmed from the snapshot (epoch change, re-shard) rebuilds it in the replay.

The shadow is announced by the trainer (``shadow`` / ``promote_shadow`` / ``drop_shadow`` verbs)
with a signed ``model.updated`` (action ``shadow`` / ``drop_shadow``) so every replica loads or
drops it, and recorded in ``<model root>/shadow.json`` so a restarted or newly scaled replica
loads it at start. Promotion is a plain push of the shadow's version through the existing
hot-swap path (the old live model is kept for rollback); the replica then drops its shadow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.loaded_model import LoadedModel
from shared.logs import event
from shared.messages import Bar, ShadowTarget
from shared.observation import build_observation
from shared.stateful_model import State, StatefulModel

log = logging.getLogger("inference")


@dataclass
class ShadowSlot:
    model: LoadedModel
    positions: dict[str, float] = field(default_factory=dict)
    published: int = 0
    states: dict[str, tuple[int, State]] = field(default_factory=dict)  # symbol -> (breaks, state)
    warming: set[str] = field(default_factory=set)  # symbols replaying the snapshot: silent

    @property
    def version(self) -> str:
        return self.model.version

    def observation(self, symbol: str, row: np.ndarray) -> np.ndarray:
        return build_observation(
            self.model.normaliser.transform(row), self.positions.get(symbol, 0.0)
        )

    def _state(self, model: StatefulModel, symbol: str, breaks: int) -> State:
        held = self.states.get(symbol)
        return held[1] if held is not None and held[0] == breaks else model.initial_state()

    def decide(self, symbol: str, row: np.ndarray, breaks: int = 0) -> float:
        return self.decide_batch([symbol], [row], [breaks])[0]

    def decide_batch(
        self, symbols: list[str], rows: list[np.ndarray], breaks: list[int] | None = None
    ) -> list[float]:
        """One ONNX call for the bars of distinct symbols (as the live batch)."""
        obs = np.stack([self.observation(s, r) for s, r in zip(symbols, rows, strict=True)])
        model = self.model
        if isinstance(model, StatefulModel):
            marks = breaks if breaks is not None else [0] * len(symbols)
            states = [self._state(model, s, k) for s, k in zip(symbols, marks, strict=True)]
            targets, new = model.step(obs, states)
            for symbol, mark, nxt in zip(symbols, marks, new, strict=True):
                self.states[symbol] = (mark, nxt)
        elif len(symbols) == 1:
            targets = [model.decide(obs[0])]
        else:
            targets = model.decide_batch(obs).tolist()
        for symbol, target in zip(symbols, targets, strict=True):
            self.positions[symbol] = target
        return targets

    def message(self, bar: Bar, target: float, strategy: str) -> ShadowTarget:
        self.published += 1
        return ShadowTarget(
            symbol=bar.symbol,
            target_position=target,
            model_version=self.model.version,
            bar_seq=bar.seq,
            bar_close_ts=bar.ts_event,
            bar_close=bar.close,
            strategy=strategy,
            ts_event=bar.ts_event,
        )

    def forget(self, symbol: str) -> None:
        """A symbol handed to another replica (or re-warmed): its shadow position starts over."""
        self.positions.pop(symbol, None)
        self.states.pop(symbol, None)
        self.warming.discard(symbol)  # its re-warm replays the snapshot through the shadow too

    def describe(self) -> dict[str, Any]:
        return {"version": self.model.version, "published": self.published}


def log_shadow(name: str, **fields: Any) -> None:
    event(log, name, **fields)
