"""The inference loop: bars in, online features, ONNX policy, target positions out; hot swap.

Per symbol an ``OnlineFeatures`` (the same pipeline the env trains on) is fed every closed bar.
Once warm, each bar gives an observation ``[normalised features, current position]`` (the
position is the last target this instance decided for the symbol, as in the env), the model
decides a target, and ``signal.<SYM>`` (``TargetPosition``) is published with the model version
and the bar's ``seq`` and close time. A shadow model, when loaded, decides on the same feature
row and publishes ``shadow.<SYM>`` (``inference.shadow``); model slots: ``inference.models``.

Warm-up: for every symbol (configured, announced by marketdata's ``status``, or first seen on the
bus) the service asks marketdata's ``snapshot`` for the last N bars and replays them through the
features AND the policy (without publishing), so a late joiner decides on the very next bar with
the position the policy would hold. Live bars that arrive meanwhile are buffered and applied after
the snapshot (bars already covered by it are skipped by close time). If marketdata does not answer,
the symbol starts cold and warms on live bars.

Sharding (``INFERENCE_SHARD_MODE=rendezvous``): replicas split the symbols by rendezvous hashing
over the replicas announced in ``hb.inference``; the hand-over rule is in ``inference.sharding``.
``all`` (the default) serves every bar received (or the static ``INFERENCE_SYMBOLS`` shard).

Epochs: a bar whose ``epoch`` differs from the symbol's last one means marketdata restarted or
reconnected: the symbol's continuity state (feature window, position, seq-gap count) is dropped
and re-warmed from the snapshot, bars after the last signalled one are signalled, the change is
logged (``epoch_changed``) and counted (``epoch_changes`` in ``status``).

Batching (``inference.batching``): the bars of one receive batch from the bus
(``Subscriber.serve``) go through their symbols' features in one numpy pass and are decided in ONE
ONNX call; targets, signals and their order are the same as deciding bar by bar.

Stateful policies (``policy.kind`` lstm / attention, ``shared.stateful_model``): each symbol
carries its own state (LSTM h, c; attention the last W observations) from bar to bar, stacked
along the batch axis in a batched call. It starts from the initial (zero) state, as the trainer's
backtest decider does, whenever continuity breaks: a new epoch, a re-shard or a restart (a new
``SymbolState``, re-warmed by replaying the snapshot through the policy), a swap to a stateful
model (every symbol is re-warmed the same way), a gap (a missing session: ``seq`` is marketdata's
session number, so a seq jump) or the first bar of a backfill within one epoch. The shadow keeps
its own state (``inference.shadow``).

No ray, no torch: this module imports onnxruntime (through ``shared.manifest``) and numpy only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.batching import BatchedDecisions, DecisionBatch
from inference.config import InferenceSettings
from inference.membership import ShardMembership
from inference.models import ModelControl
from inference.pipelines import feed_shadow, model_pipeline
from inference.recurrent import StatefulDecisions
from inference.shadow import ShadowSlot
from inference.sharding import Sharding, handover_timing, replica_id
from inference.warmup import WarmUp
from shared.auth import Verifier
from shared.bus import heartbeat_loop
from shared.feature_bank import BankedFeatures, FeatureBank
from shared.features import FeaturePipeline, OnlineFeatures
from shared.loaded_model import LoadedModel
from shared.logs import event
from shared.manifest import ArtifactError
from shared.messages import Bar, TargetPosition
from shared.model_store import current_pushed_version, resolve_artifact
from shared.observation import build_observation
from shared.runtime import BusConnection
from shared.stateful_model import State, StatefulModel

log = logging.getLogger("inference")


@dataclass
class SymbolState:
    symbol: str
    features: BankedFeatures | OnlineFeatures
    position: float = 0.0
    last_ts: int = -1  # close time of the last bar applied
    warm: bool = False  # snapshot applied (or given up): live bars are processed directly
    warming: bool = False
    pending: list[Bar] = field(default_factory=list)
    bars: int = 0
    signals: int = 0
    last_target: float | None = None
    last_signal_ts: int | None = None  # close time of the last bar signalled for this symbol
    epoch: int | None = None  # marketdata's epoch of the last bar applied
    last_seq: int = 0
    gaps: int = 0  # bars missing by seq within one epoch
    breaks: int = 0  # continuity breaks (gap, backfill) within one epoch: stateful policy resets
    last_backfill: bool = False
    policy_state: State | None = None  # a stateful live model's state after the last decision
    policy_model: LoadedModel | None = None  # the model that state belongs to
    policy_breaks: int = 0  # ``breaks`` when that state was started
    state_resets: int = 0


@dataclass
class Counters:
    bars: int = 0
    signals: int = 0
    warming_bars: int = 0  # bars seen before the features were ready
    stale_bars: int = 0  # bars at or before the last applied close time (dropped)
    invalid_bars: int = 0  # bars the feature pipeline refused (NaN, non-positive ...)
    filtered_bars: int = 0  # bars of symbols outside this shard
    snapshot_bars: int = 0
    snapshot_failures: int = 0
    caught_up_bars: int = 0  # snapshot bars signalled after a hand-over or an epoch change
    batched_calls: int = (
        0  # decide_batch calls (one ONNX call each unless the graph has a fixed batch)
    )
    batched_bars: int = 0  # bars decided in those calls
    models_accepted: int = 0
    models_rejected: int = 0
    updates_refused: int = 0  # model.updated messages failing authentication
    shadow_signals: int = 0
    shadow_errors: int = 0  # a failing shadow never touches the live signal
    epoch_changes: int = 0
    seq_gaps: int = 0
    state_resets: int = 0  # stateful policy states restarted from zeros (gap, backfill, swap)
    cold_refusals: int = 0  # bars not decided: features of another model's pipeline (re-warmed)


class InferenceService(BatchedDecisions, ModelControl, ShardMembership, WarmUp, StatefulDecisions):
    def __init__(
        self,
        settings: InferenceSettings,
        bus: BusConnection,
        pipeline: FeaturePipeline | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.pipeline = pipeline if pipeline is not None else FeaturePipeline()
        self.instance = settings.instance or bus.producer
        self.root = Path(settings.model_dir)
        self.counters = Counters()
        self.states: dict[str, SymbolState] = {}
        self._shard = frozenset(settings.symbols)
        self._verifier = Verifier(bus.key)
        self._snapshot_client = bus.command_client("marketdata")
        self._warm_tasks: set[asyncio.Task[int]] = set()
        self.last_rejection = ""
        self.handler_errors = 0
        self.model: LoadedModel = self._initial_model(settings.model_version)
        self.pipeline = model_pipeline(self.model)  # the live model's own features
        self.previous: LoadedModel | None = None
        self.shadow: ShadowSlot | None = None
        self.load_recorded_shadow()
        self._batch: DecisionBatch | None = None  # open while consume() handles a receive batch
        self._bank: FeatureBank | None = None  # the live pipeline's per-symbol feature state
        self.sharding: Sharding | None = None
        if settings.shard_mode == "rendezvous" and not settings.symbols:
            timing = handover_timing(bus.settings.heartbeat_interval_s, settings.peer_timeout_s,
                                     settings.join_grace_s)  # fmt: skip
            self.sharding = Sharding.start(replica_id(bus.producer), time.monotonic(), timing)

    def _initial_model(self, version: str) -> LoadedModel:
        """``current``: the last pushed version, so a restart or a new replica never silently
        serves an older model than its peers; if that artifact fails its checks, the baseline."""
        if version != "current":
            return self._load_folder(resolve_artifact(self.root, version))
        pushed = current_pushed_version(self.root)
        if pushed is not None:
            try:
                return self._load_folder(resolve_artifact(self.root, pushed))
            except ArtifactError as exc:
                event(
                    log,
                    "pushed_model_refused_at_start",
                    logging.ERROR,
                    version=pushed,
                    reason=str(exc),
                    fallback="baseline",
                )
        return self._load_folder(resolve_artifact(self.root, "baseline"))

    # ------------------------------------------------------------------ bars -> signals
    def topics(self) -> list[str]:
        bars = [f"bar.{s}" for s in self.settings.symbols] or ["bar."]
        if self.sharding is not None:  # membership, and the last signal of every symbol
            return [*bars, "model.updated", "hb.inference", "signal."]
        return [*bars, "model.updated"]

    def _state(self, symbol: str) -> SymbolState:
        state = self.states.get(symbol)
        if state is None:
            state = SymbolState(symbol, self.online_features())
            self.states[symbol] = state
        return state

    def online_features(self) -> BankedFeatures:
        """A symbol's fresh features, held in the live pipeline's bank once batched."""
        if self._bank is None or self._bank.config is not self.pipeline.config:
            self._bank = FeatureBank(self.pipeline.config)
        return self._bank.online()

    def _features(self, state: SymbolState, bar: Bar) -> np.ndarray | None:
        """Feed one bar to the features; the feature row to decide on (None while warming or
        refused)."""
        if bar.ts_event <= state.last_ts:
            self.counters.stale_bars += 1
            return None
        try:
            row = state.features.update(bar.open, bar.high, bar.low, bar.close, bar.volume)
        except ValueError as exc:
            self._refused(bar, str(exc))
            return None
        return self._accepted(state, bar, row)

    def _refused(self, bar: Bar, error: str) -> None:
        self.counters.invalid_bars += 1
        event(log, "bar_refused", logging.WARNING, symbol=bar.symbol, seq=bar.seq, error=error)

    def _accepted(self, state: SymbolState, bar: Bar, row: np.ndarray | None) -> np.ndarray | None:
        """The bookkeeping of a bar the features accepted (``row``: None while warming)."""
        if self.shadow is not None:
            feed_shadow(self.shadow, bar)  # a shadow with its own features sees the same bars
        if state.last_seq and bar.seq > state.last_seq + 1:
            state.gaps += bar.seq - state.last_seq - 1
            self.counters.seq_gaps += bar.seq - state.last_seq - 1
            state.breaks += 1
        if bar.backfill and not state.last_backfill and state.bars and bar.epoch == state.epoch:
            state.breaks += 1  # a backfill run within one epoch: the stream was not continuous
        state.last_backfill = bar.backfill
        state.last_seq = bar.seq
        state.last_ts = bar.ts_event
        state.epoch = bar.epoch
        state.bars += 1
        if row is None:
            self.counters.warming_bars += 1
        return row

    def _apply(self, state: SymbolState, bar: Bar) -> float | None:
        """Feed one bar and decide, publishing nothing (warm-up replay); the shadow follows."""
        row = self._features(state, bar)
        if row is None:
            return None
        model = self.model
        target = self._decide(
            model, state, build_observation(model.normaliser.transform(row), state.position)
        )
        state.position = target
        if self.shadow is not None:
            self._shadow_decide(state.symbol, row, state.breaks)
        return target

    def _admit(self, bar: Bar) -> SymbolState | None:
        """Count a live bar; its symbol's state if warm, None if filtered or buffered."""
        if self._shard and bar.symbol not in self._shard:
            self.counters.filtered_bars += 1
            return None
        sharding = self.sharding
        if sharding is not None and bar.symbol not in sharding.serves:
            if bar.symbol not in sharding.symbols:  # a new symbol: maybe ours from this bar on
                sharding.symbols.add(bar.symbol)
                self.rebalance()
            if bar.symbol not in sharding.serves:
                self.counters.filtered_bars += 1
                return None
        self.counters.bars += 1
        state = self._state(bar.symbol)
        if state.epoch is not None and bar.epoch != state.epoch:
            state = self._epoch_changed(state, bar)
        if state.features.config is not self.pipeline.config:  # never decide on another's
            state = self._pipeline_mismatch(state, bar)
        if not state.warm:
            state.pending.append(bar)
            if not state.warming:
                self._start_warm(bar.symbol)
            return None
        return state

    def _epoch_changed(self, old: SymbolState, bar: Bar) -> SymbolState:
        """Marketdata restarted or reconnected: forget what assumed a continuous stream and
        re-warm from the snapshot; bars after the last one signalled are signalled once."""
        self.counters.epoch_changes += 1
        event(
            log,
            "epoch_changed",
            logging.WARNING,
            symbol=bar.symbol,
            old_epoch=old.epoch,
            new_epoch=bar.epoch,
            last_ts=old.last_ts,
            gaps_reset=old.gaps,
        )
        # a bar of the old epoch may still be queued in this receive batch: decide and publish
        # it first, so the catch-up threshold below includes it (else its successor is skipped
        # as already signalled, or it is signalled twice)
        self._flush_symbol(bar.symbol)
        return self._reset_symbol(bar.symbol, old.last_signal_ts)

    def _reset_symbol(self, symbol: str, publish_after: int | None) -> SymbolState:
        self._flush_symbol(symbol)
        state = SymbolState(symbol, self.online_features())
        self.states[symbol] = state
        if self.shadow is not None:
            self.shadow.forget(symbol)
        self._start_warm(symbol, publish_after)
        return state

    def _decide_and_publish(self, state: SymbolState, bar: Bar) -> TargetPosition | None:
        row = self._features(state, bar)
        if row is None:
            return None
        model = self.model
        target = self._decide(
            model, state, build_observation(model.normaliser.transform(row), state.position)
        )
        state.position = target
        signal = self._publish_signal(state, bar, target, model.version)
        if self.shadow is not None:
            self._shadow_publish(bar, self._shadow_decide(state.symbol, row, state.breaks))
        return signal

    def _publish_signal(
        self, state: SymbolState, bar: Bar, target: float, version: str
    ) -> TargetPosition:
        signal = TargetPosition(
            symbol=bar.symbol,
            target_position=target,
            model_version=version,
            bar_seq=bar.seq,
            bar_close_ts=bar.ts_event,
            bar_close=bar.close,
            strategy=self.settings.strategy,
            ts_event=bar.ts_event,
        )
        stamped = self.bus.publisher.publish(signal)
        state.signals += 1
        state.last_target = target
        state.last_signal_ts = bar.ts_event
        self.counters.signals += 1
        if self.sharding is not None:
            self.sharding.note_signal(bar.symbol, bar.ts_event)
        return stamped  # type: ignore[return-value]

    # ------------------------------------------------------------------ shadow
    def _shadow_decide(self, symbol: str, row: np.ndarray, breaks: int = 0) -> float | None:
        shadow = self.shadow
        if shadow is None or symbol in shadow.warming:
            return None
        try:
            return shadow.decide(symbol, row, breaks)
        except Exception:  # the candidate's failure is counted, never the live signal's
            self.counters.shadow_errors += 1
            log.warning("shadow_failed", exc_info=True, extra={"fields": {"symbol": symbol}})
            return None

    def _shadow_publish(self, bar: Bar, target: float | None) -> None:
        if target is None or self.shadow is None:
            return
        self.bus.publisher.publish(self.shadow.message(bar, target, self.settings.strategy))
        self.counters.shadow_signals += 1

    def _shadow_batch(self, bars: list[Bar], rows: list[np.ndarray], breaks: list[int]) -> None:
        shadow = self.shadow
        assert shadow is not None
        if shadow.warming:  # symbols still replaying their snapshot stay silent
            keep = [i for i, b in enumerate(bars) if b.symbol not in shadow.warming]
            bars, rows, breaks = (
                [bars[i] for i in keep],
                [rows[i] for i in keep],
                [breaks[i] for i in keep],
            )
        symbols = [b.symbol for b in bars]
        try:
            targets: list[float | None] = list(shadow.decide_batch(symbols, rows, breaks))
        except Exception:
            targets = [
                self._shadow_decide(s, r, k) for s, r, k in zip(symbols, rows, breaks, strict=True)
            ]
        for bar, target in zip(bars, targets, strict=True):
            self._shadow_publish(bar, target)

    # ------------------------------------------------------------------ commands
    async def cmd_status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status_detail()

    def status_detail(self) -> dict[str, Any]:
        stats = getattr(self, "_subscriber_stats", None)
        c = self.counters
        sharding = self.sharding.describe(time.monotonic()) if self.sharding is not None else {}
        return {
            "ready": True,
            **sharding,  # replica, joining, serves, peers, handovers: read by the peers
            "shadow_model": self.shadow.describe() if self.shadow is not None else None,
            "epoch_changes": c.epoch_changes,
            "instance": self.instance,
            "model": self.model.describe(),
            "previous_model": self.previous.version if self.previous else None,
            "pipeline_fingerprint": self.pipeline.fingerprint,
            "symbols": {
                s.symbol: {
                    "warm": s.warm,
                    "features_ready": s.features.ready,
                    "bars": s.bars,
                    "signals": s.signals,
                    "position": s.position,
                    "atr": s.features.atr,
                    "epoch": s.epoch,
                    "seq_gaps": s.gaps,
                    "state_resets": s.state_resets,
                }
                for s in self.states.values()
            },
            "counters": dict(vars(c)),
            "bus": {
                "received": stats.received,
                "malformed": stats.malformed,
                "duplicates": stats.duplicates,
                "gaps": stats.gaps,
            }
            if stats is not None
            else {},
            "last_rejection": self.last_rejection,
            "handler_errors": self.handler_errors,
        }

    # ------------------------------------------------------------------ loops
    async def consume(self) -> None:
        subscriber = self.bus.subscriber(self.topics())
        self._subscriber_stats = subscriber.stats
        try:
            # each receive batch is handled in the event loop's reader callback; commands,
            # heartbeats and warm-ups get their turn between batches (Subscriber.serve)
            await subscriber.serve(self.handle_batch)
        finally:
            subscriber.close()

    async def heartbeats(self) -> None:
        await heartbeat_loop(
            self.bus.publisher,
            "inference",
            self.bus.settings.heartbeat_interval_s,
            self.heartbeat_detail,  # the self-fence first (inference.membership)
        )

    def close(self) -> None:
        if self.sharding is not None:  # peers take over this replica's share at once
            self.publish_heartbeat(leaving=True)
        for task in list(self._warm_tasks):
            task.cancel()
        self._snapshot_client.close()


def decide_many(model: LoadedModel, features: OnlineFeatures, bars: np.ndarray) -> list[float]:
    """Benchmark helper: the per-bar work of ``_apply`` over an (n, 5) OHLCV array (a stateful
    model's state carried from bar to bar)."""
    position = 0.0
    out: list[float] = []
    state = model.initial_state() if isinstance(model, StatefulModel) else None
    for o, h, lo, c, v in bars.tolist():
        row = features.update(o, h, lo, c, v)
        if row is None:
            continue
        obs = build_observation(model.normaliser.transform(row), position)
        if isinstance(model, StatefulModel) and state is not None:
            targets, nxt = model.step(obs[None, :], [state])
            position, state = targets[0], nxt[0]
        else:
            position = model.decide(obs)
        out.append(position)
    return out
