"""The receive batch (mixin of ``InferenceService``; see the service's docstring): the bars of one
receive batch from the bus (``Subscriber.serve``; e.g. every symbol's bar of the same close time)
are decided in ONE ONNX call (``LoadedModel.decide_batch``) instead of one call per symbol.

Each bar is queued when it is received (``on_bar``); the queue goes through the symbols' features
in one numpy pass (``shared.feature_bank``: bit-identical to ``OnlineFeatures`` symbol by symbol),
then is decided and published, in arrival order, when a symbol repeats (its next bar needs the
position just decided), before any other message (a model update), and at the end of the receive
batch (``flush_batch``). Targets, signals and their order are the same as deciding bar by bar. A
failure in a batched step falls back row by row, so it lands on its own bar as a handler error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.feature_bank import update_features
from shared.loaded_model import LoadedModel
from shared.messages import Bar, Heartbeat, ModelUpdated, TargetPosition
from shared.observation import build_observation, build_observations

if TYPE_CHECKING:  # the service imports this module
    from inference.service import SymbolState

log = logging.getLogger("inference")


@dataclass
class DecisionBatch:
    """Feature rows of distinct warm symbols waiting for one batched decision. The observations
    are built for the whole batch at once (``observations``): one normalise over an (n, k)
    block instead of n small numpy calls, the same numbers element by element. Bars are
    ``queued`` first and go through the features together when the batch is flushed."""

    model: LoadedModel | None = None  # the model the rows will be decided by
    queued: list[tuple[SymbolState, Bar, float]] = field(default_factory=list)
    states: list[SymbolState] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)  # feature rows (also for the shadow)
    positions: list[float] = field(default_factory=list)  # each symbol's position when queued
    symbols: set[str] = field(default_factory=set)

    def add(
        self, model: LoadedModel, state: SymbolState, bar: Bar, row: np.ndarray, position: float
    ) -> None:
        self.model = model
        self.states.append(state)
        self.bars.append(bar)
        self.rows.append(row)
        self.positions.append(position)
        self.symbols.add(state.symbol)

    def observations(self, model: LoadedModel) -> tuple[np.ndarray, np.ndarray]:
        """(n, size) float32 observations, equal row by row to ``build_observation``, and a
        mask of the rows that hold NaN/inf (``build_observation`` refuses those)."""
        positions = np.asarray(self.positions, dtype=np.float64)
        obs = build_observations(model.normaliser.transform(np.stack(self.rows)), positions)
        return obs, ~np.isfinite(obs.sum(axis=1))

    def queue(self, model: LoadedModel, state: SymbolState, bar: Bar, position: float) -> None:
        self.model = model
        self.queued.append((state, bar, position))
        self.symbols.add(state.symbol)

    def clear(self) -> None:
        self.model = None
        self.queued = []
        self.states = []
        self.bars = []
        self.rows = []
        self.positions = []
        self.symbols = set()


class BatchedDecisions:
    """Needs the service's ``model``, ``counters``, ``sharding``, ``shadow``, ``handler_errors``,
    ``_admit``, ``_decide_and_publish``, ``_refused``, ``_accepted``, ``_decide``,
    ``_decide_rows``, ``_publish_signal``, ``_shadow_batch``, ``check_fence``,
    ``on_model_updated`` and ``on_peer_heartbeat``."""

    model: LoadedModel
    counters: Any
    sharding: Any
    shadow: Any
    handler_errors: int
    _batch: DecisionBatch | None  # open while handle_batch serves a receive batch

    # ------------------------------------------------------------------ receive loop
    def handle_batch(self, messages: list[Any]) -> None:
        """One receive batch: bars of distinct symbols share one ONNX call (see the module doc);
        no exception from a message leaves here, the next message is served."""
        if self.sharding is not None:  # paused past the peer timeout: release all first
            self.check_fence()  # (inference.sharding, rule 6)
        if len(messages) == 1 and type(messages[0]) is Bar:
            # one bar alone (bar_to_signal_1): no batch to build, decide and publish directly
            # (profiled: the batch bookkeeping was ~10 % of the per-bar Python time)
            try:
                self.on_bar(messages[0])
            except Exception:
                self._handler_failed(messages[0])
            return
        self._batch = DecisionBatch()
        try:
            for message in messages:
                try:
                    if isinstance(message, Bar):
                        self.on_bar(message)
                    elif isinstance(message, TargetPosition):
                        if self.sharding is not None:
                            self.sharding.note_signal(message.symbol, message.bar_close_ts)
                    else:
                        self.flush_batch()  # earlier bars are decided (and published) first
                        if isinstance(message, ModelUpdated):
                            self.on_model_updated(message)
                        elif isinstance(message, Heartbeat):
                            self.on_peer_heartbeat(message)
                except Exception:  # a bug in a handler is logged; the next message is served
                    self._handler_failed(message)
            self.flush_batch()
        finally:
            self._batch = None

    # ------------------------------------------------------------------ the batch
    def on_bar(self, bar: Bar) -> TargetPosition | None:
        """A live bar: buffer it while the symbol warms, else decide and publish. Inside a
        receive batch (``consume``) the decision is queued for one batched ONNX call and this
        returns None; the signal is published by ``flush_batch``."""
        batch = self._batch
        if batch is not None and bar.symbol in batch.symbols:
            # the symbol's queued bar first: this bar's checks (epoch, staleness) see it
            # applied, and its decision needs the position just decided
            self.flush_batch()
        state = self._admit(bar)
        if state is None:
            return None
        if batch is None:
            return self._decide_and_publish(state, bar)
        if batch.model is not None and batch.model is not self.model:
            self.flush_batch()
        if bar.ts_event <= state.last_ts:
            self.counters.stale_bars += 1
        else:
            batch.queue(self.model, state, bar, state.position)
        return None

    def flush_batch(self) -> None:
        """The queued bars' features in one pass, the rows decided in one ONNX call, then fed
        back and published in arrival order. A failure is a handler error of the bar it hits,
        as bar by bar."""
        batch = self._batch
        if batch is None or batch.model is None:
            return
        model = batch.model
        self._batch_features(model, batch)
        states, bars, rows, obs = self._batch_observations(model, batch)
        batch.clear()
        targets: list[float] | None = None
        if len(bars) > 1:
            try:
                targets = self._decide_rows(model, states, obs)
                self.counters.batched_calls += 1
                self.counters.batched_bars += len(bars)
            except Exception:  # decide row by row so the failure lands on its own bar
                targets = None
        for i, (state, bar) in enumerate(zip(states, bars, strict=True)):
            try:
                target = targets[i] if targets is not None else self._decide(model, state, obs[i])
                state.position = target
                self._publish_signal(state, bar, target, model.version)
            except Exception:
                self._handler_failed(bar)
        if self.shadow is not None and bars:
            self._shadow_batch(bars, rows, [s.breaks for s in states])

    def _batch_features(self, model: LoadedModel, batch: DecisionBatch) -> None:
        """The queued bars through their symbols' features at once (``update_features``);
        the rows (not the warming or refused bars) join the batch in arrival order."""
        queued, batch.queued = batch.queued, []
        try:
            rows, errors = update_features(
                [state.features for state, _, _ in queued],
                [(b.open, b.high, b.low, b.close, b.volume) for _, b, _ in queued],
            )
        except Exception:
            for _, bar, _ in queued:
                self._handler_failed(bar)
            return
        for (state, bar, position), row, error in zip(queued, rows, errors, strict=True):
            if error is not None:
                self._refused(bar, error)
            elif (ready := self._accepted(state, bar, row)) is not None:
                batch.add(model, state, bar, ready, position)

    def _batch_observations(
        self, model: LoadedModel, batch: DecisionBatch
    ) -> tuple[list[SymbolState], list[Bar], list[np.ndarray], np.ndarray]:
        """The batch's observations as one block. A row ``build_observation`` refuses (NaN) is
        a handler error of its own bar and leaves the batch, as deciding bar by bar."""
        try:
            obs, bad = batch.observations(model)
            if not bad.any():
                return batch.states, batch.bars, batch.rows, obs
        except Exception:  # rows of unexpected shape: build them one by one below
            pass
        keep: list[int] = []
        built: list[np.ndarray] = []
        for i, (bar, row, position) in enumerate(
            zip(batch.bars, batch.rows, batch.positions, strict=True)
        ):
            try:
                built.append(build_observation(model.normaliser.transform(row), position))
                keep.append(i)
            except Exception:
                self._handler_failed(bar)
        return (
            [batch.states[i] for i in keep],
            [batch.bars[i] for i in keep],
            [batch.rows[i] for i in keep],
            np.stack(built) if built else np.empty((0, 0), dtype=np.float32),
        )

    def _flush_symbol(self, symbol: str) -> None:
        """Decide what is queued before a symbol's state is replaced or handed over."""
        if self._batch is not None and symbol in self._batch.symbols:
            self.flush_batch()

    def _handler_failed(self, message: Any) -> None:
        self.handler_errors += 1
        try:
            topic = message.topic()[:80]
        except Exception:
            topic = type(message).__name__
        log.error("handler_failed", exc_info=True, extra={"fields": {"topic": topic}})
