"""The inference loop: bars in, online features, ONNX policy, target positions out; hot swap.

Per symbol an ``OnlineFeatures`` (the same pipeline the env trains on) is fed every closed bar.
Once warm, each bar gives an observation ``[normalised features, current position]`` (the
position is the last target this instance decided for the symbol, as in the env), the model
decides a target, and ``signal.<SYM>`` (``TargetPosition``) is published with the model version
and the bar's ``seq`` and close time.

Warm-up: for every symbol (configured, announced by marketdata's ``status``, or first seen on the
bus) the service asks marketdata's ``snapshot`` for the last N bars and replays them through the
features AND the policy (without publishing), so a late joiner decides on the very next bar with
the position the policy would hold. Live bars that arrive meanwhile are buffered and applied after
the snapshot (bars already covered by it are skipped by close time). If marketdata does not answer,
the symbol starts cold and warms on live bars.

Batching: the bars of one ``recv_batch`` from the bus (e.g. every symbol's bar of the same close
time) are decided in ONE ONNX call (``LoadedModel.decide_batch``) instead of one call per symbol.
Each bar still goes through its symbol's features when it is received; its observation is queued
and the queue is decided and published, in arrival order, when a symbol repeats (its next bar needs
the position just decided), before any other message (a model update), and at the end of the
receive batch. Targets, signals and their order are the same as deciding bar by bar.

Hot swap: ``model.updated`` (HMAC-verified) and the ``push_model`` / ``rollback`` commands load the
new artifact next to the serving one with ``shared.manifest.load_artifact``; only an artifact that
passes every check replaces it. Either way ``model.status`` says what is served and why a model was
refused; a refused model never interrupts serving.

No ray, no torch: this module imports onnxruntime (through ``shared.manifest``) and numpy only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from inference.config import InferenceSettings
from shared.auth import AuthError, Verifier
from shared.bus import CommandError, heartbeat_loop
from shared.features import FeaturePipeline, OnlineFeatures
from shared.logs import event
from shared.manifest import (
    ArtifactError,
    LoadedModel,
    current_pushed_version,
    load_artifact,
    resolve_artifact,
)
from shared.messages import Bar, ModelStatus, ModelUpdated, TargetPosition
from shared.observation import build_observation
from shared.runtime import BusConnection

log = logging.getLogger("inference")


@dataclass
class SymbolState:
    symbol: str
    features: OnlineFeatures
    position: float = 0.0
    last_ts: int = -1  # close time of the last bar applied
    warm: bool = False  # snapshot applied (or given up): live bars are processed directly
    warming: bool = False
    pending: list[Bar] = field(default_factory=list)
    bars: int = 0
    signals: int = 0
    last_target: float | None = None


@dataclass
class DecisionBatch:
    """Observations of distinct warm symbols waiting for one batched decision."""

    model: LoadedModel | None = None  # the model the observations were built for
    states: list[SymbolState] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    observations: list[np.ndarray] = field(default_factory=list)
    symbols: set[str] = field(default_factory=set)

    def add(self, model: LoadedModel, state: SymbolState, bar: Bar, obs: np.ndarray) -> None:
        self.model = model
        self.states.append(state)
        self.bars.append(bar)
        self.observations.append(obs)
        self.symbols.add(state.symbol)

    def clear(self) -> None:
        self.model = None
        self.states = []
        self.bars = []
        self.observations = []
        self.symbols = set()


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
    batched_calls: int = (
        0  # decide_batch calls (one ONNX call each unless the graph has a fixed batch)
    )
    batched_bars: int = 0  # bars decided in those calls
    models_accepted: int = 0
    models_rejected: int = 0
    updates_refused: int = 0  # model.updated messages failing authentication


class InferenceService:
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
        self.previous: LoadedModel | None = None
        self._decide_seconds = 0.0
        self._batch: DecisionBatch | None = None  # open while consume() handles a receive batch

    def _initial_model(self, version: str) -> LoadedModel:
        """``current``: the last pushed version, so a restart or a new replica never silently
        serves an older model than its peers; if that artifact fails its checks, the baseline."""
        if version != "current":
            return load_artifact(resolve_artifact(self.root, version), self.pipeline)
        pushed = current_pushed_version(self.root)
        if pushed is not None:
            try:
                return load_artifact(resolve_artifact(self.root, pushed), self.pipeline)
            except ArtifactError as exc:
                event(
                    log,
                    "pushed_model_refused_at_start",
                    logging.ERROR,
                    version=pushed,
                    reason=str(exc),
                    fallback="baseline",
                )
        return load_artifact(resolve_artifact(self.root, "baseline"), self.pipeline)

    # ------------------------------------------------------------------ bars -> signals
    def topics(self) -> list[str]:
        bars = [f"bar.{s}" for s in self.settings.symbols] or ["bar."]
        return [*bars, "model.updated"]

    def _state(self, symbol: str) -> SymbolState:
        state = self.states.get(symbol)
        if state is None:
            state = SymbolState(symbol, self.pipeline.online())
            self.states[symbol] = state
        return state

    def _observe(self, state: SymbolState, bar: Bar) -> np.ndarray | None:
        """Feed one bar to the features; the observation to decide on (None while warming or
        refused)."""
        if bar.ts_event <= state.last_ts:
            self.counters.stale_bars += 1
            return None
        try:
            row = state.features.update(bar.open, bar.high, bar.low, bar.close, bar.volume)
        except ValueError as exc:
            self.counters.invalid_bars += 1
            event(
                log, "bar_refused", logging.WARNING, symbol=bar.symbol, seq=bar.seq, error=str(exc)
            )
            return None
        state.last_ts = bar.ts_event
        state.bars += 1
        if row is None:
            self.counters.warming_bars += 1
            return None
        return build_observation(self.model.normaliser.transform(row), state.position)

    def _apply(self, state: SymbolState, bar: Bar) -> float | None:
        """Feed one bar; returns the decided target (None while warming or refused)."""
        model = self.model
        obs = self._observe(state, bar)
        if obs is None:
            return None
        target = model.decide(obs)
        state.position = target
        return target

    def _admit(self, bar: Bar) -> SymbolState | None:
        """Count a live bar; its symbol's state if warm, None if filtered or buffered."""
        if self._shard and bar.symbol not in self._shard:
            self.counters.filtered_bars += 1
            return None
        self.counters.bars += 1
        state = self._state(bar.symbol)
        if not state.warm:
            state.pending.append(bar)
            if not state.warming:
                self._start_warm(bar.symbol)
            return None
        return state

    def on_bar(self, bar: Bar) -> TargetPosition | None:
        """A live bar: buffer it while the symbol warms, else decide and publish. Inside a
        receive batch (``consume``) the decision is queued for one batched ONNX call and this
        returns None; the signal is published by ``flush_batch``."""
        state = self._admit(bar)
        if state is None:
            return None
        batch = self._batch
        if batch is None:
            return self._decide_and_publish(state, bar)
        if bar.symbol in batch.symbols or (
            batch.model is not None and batch.model is not self.model
        ):
            self.flush_batch()  # this symbol's next bar needs the position just decided
        model = self.model
        obs = self._observe(state, bar)
        if obs is not None:
            batch.add(model, state, bar, obs)
        return None

    def flush_batch(self) -> None:
        """Decide the queued observations in one ONNX call, then feed back and publish each in
        arrival order. A failure is a handler error of the bar it hits, as bar by bar."""
        batch = self._batch
        if batch is None or batch.model is None:
            return
        model, states, bars, rows = batch.model, batch.states, batch.bars, batch.observations
        batch.clear()
        targets: list[float] | None = None
        if len(rows) > 1:
            try:
                targets = model.decide_batch(np.stack(rows)).tolist()
                self.counters.batched_calls += 1
                self.counters.batched_bars += len(rows)
            except Exception:  # decide row by row so the failure lands on its own bar
                targets = None
        for i, (state, bar) in enumerate(zip(states, bars, strict=True)):
            try:
                target = targets[i] if targets is not None else model.decide(rows[i])
                state.position = target
                self._publish_signal(state, bar, target, model.version)
            except Exception:
                self._handler_failed(bar)

    def _decide_and_publish(self, state: SymbolState, bar: Bar) -> TargetPosition | None:
        target = self._apply(state, bar)
        if target is None:
            return None
        return self._publish_signal(state, bar, target, self.model.version)

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
        self.counters.signals += 1
        return stamped  # type: ignore[return-value]

    def handle_batch(self, messages: list[Any]) -> None:
        """One receive batch: bars of distinct symbols share one ONNX call (see the module doc);
        no exception from a message leaves here, the next message is served."""
        self._batch = DecisionBatch()
        try:
            for message in messages:
                try:
                    if isinstance(message, Bar):
                        self.on_bar(message)
                    else:
                        self.flush_batch()  # earlier bars are decided (and published) first
                        if isinstance(message, ModelUpdated):
                            self.on_model_updated(message)
                except Exception:  # a bug in a handler is logged; the next message is served
                    self._handler_failed(message)
            self.flush_batch()
        finally:
            self._batch = None

    def _handler_failed(self, message: Any) -> None:
        self.handler_errors += 1
        try:
            topic = message.topic()[:80]
        except Exception:
            topic = type(message).__name__
        log.error("handler_failed", exc_info=True, extra={"fields": {"topic": topic}})

    # ------------------------------------------------------------------ warm-up
    def _start_warm(self, symbol: str) -> None:
        state = self._state(symbol)
        state.warming = True
        task = asyncio.get_running_loop().create_task(self.warm(symbol))
        self._warm_tasks.add(task)
        task.add_done_callback(self._warm_tasks.discard)

    async def warm(self, symbol: str) -> int:
        """Apply marketdata's snapshot of ``symbol`` then the buffered live bars; returns the
        number of snapshot bars applied."""
        state = self._state(symbol)
        state.warming = True
        applied = 0
        bars: list[Bar] = []
        for attempt in range(1, self.settings.snapshot_attempts + 1):
            try:
                reply = await self._snapshot_client.request(
                    "snapshot",
                    {"symbol": symbol, "n": self.settings.snapshot_bars},
                    timeout_s=self.settings.snapshot_timeout_s,
                )
                bars = [msgspec.convert(b, Bar) for b in reply.get("bars", [])]
                break
            except (CommandError, msgspec.ValidationError, AttributeError, TypeError) as exc:
                self.counters.snapshot_failures += 1
                event(
                    log,
                    "snapshot_failed",
                    logging.WARNING,
                    symbol=symbol,
                    attempt=attempt,
                    error=str(exc)[:300],
                )
                if attempt < self.settings.snapshot_attempts:
                    await asyncio.sleep(min(2.0, 0.2 * attempt))
        for bar in sorted(bars, key=lambda b: b.ts_event):
            if bar.symbol == symbol and bar.ts_event > state.last_ts:
                self._apply(state, bar)
                applied += 1
        self.counters.snapshot_bars += applied
        pending, state.pending = state.pending, []
        state.warm = True
        state.warming = False
        for bar in sorted(pending, key=lambda b: b.ts_event):
            if bar.ts_event > state.last_ts:
                self._decide_and_publish(state, bar)
            else:
                self.counters.stale_bars += 1
        event(
            log,
            "symbol_warm",
            symbol=symbol,
            snapshot_bars=applied,
            buffered=len(pending),
            ready=state.features.ready,
            position=state.position,
        )
        return applied

    async def warm_known_symbols(self) -> None:
        """At start: warm the configured symbols, or the ones marketdata announces."""
        symbols = list(self.settings.symbols)
        if not symbols:
            try:
                status = await self._snapshot_client.request(
                    "status", {}, timeout_s=self.settings.snapshot_timeout_s
                )
                symbols = [str(s) for s in status.get("symbols", [])]
            except (CommandError, AttributeError) as exc:
                event(log, "marketdata_status_failed", logging.WARNING, error=str(exc)[:300])
        for symbol in symbols:
            if symbol not in self.states or not (
                self.states[symbol].warm or self.states[symbol].warming
            ):
                self._start_warm(symbol)
        if self._warm_tasks:
            await asyncio.gather(*list(self._warm_tasks), return_exceptions=True)

    # ------------------------------------------------------------------ models
    def _relative_target(self, target: str) -> str:
        path = Path(target)
        if path.is_absolute():
            root = self.root.resolve()
            resolved = path.resolve()
            if root not in resolved.parents:
                raise ArtifactError(f"{target} is outside the model root {root}")
            return str(resolved.relative_to(root))
        return target

    def _publish_status(self, requested: str, accepted: bool, reason: str) -> None:
        self.bus.publisher.publish(
            ModelStatus(
                instance=self.instance,
                serving_version=self.model.version,
                requested_version=requested,
                accepted=accepted,
                reason=reason,
                ts_event=time.time_ns(),
            )
        )

    def swap(
        self, target: str, expected_sha256: str = "", requested_by: str = ""
    ) -> dict[str, Any]:
        """Load ``target`` (a version path under the root) beside the serving model; swap only if
        it passes every check. Never raises for a bad artifact: the reply says why."""
        try:
            folder = resolve_artifact(self.root, self._relative_target(target))
            candidate = load_artifact(
                folder, self.pipeline, expected_sha256=expected_sha256 or None
            )
        except ArtifactError as exc:
            return self._reject(target, str(exc), requested_by)
        except Exception as exc:  # anything unexpected in a candidate must not stop serving
            return self._reject(target, f"{type(exc).__name__}: {exc}", requested_by)
        old = self.model
        self.previous, self.model = old, candidate
        self.counters.models_accepted += 1
        event(
            log,
            "model_swapped",
            old=old.version,
            new=candidate.version,
            by=requested_by,
            path=str(candidate.path),
        )
        self._publish_status(candidate.version, True, f"swapped from {old.version}")
        return {"accepted": True, "serving": candidate.version, "previous": old.version}

    def _reject(self, target: str, reason: str, requested_by: str) -> dict[str, Any]:
        self.counters.models_rejected += 1
        self.last_rejection = reason
        event(
            log,
            "model_rejected",
            logging.WARNING,
            requested=target,
            reason=reason,
            serving=self.model.version,
            by=requested_by,
        )
        self._publish_status(target, False, reason)
        return {"accepted": False, "serving": self.model.version, "reason": reason}

    def rollback(self, requested_by: str = "") -> dict[str, Any]:
        """Serve the previous model again (the one replaced by the last swap)."""
        if self.previous is None:
            reason = "no previous model to roll back to"
            self._publish_status("", False, reason)
            return {"accepted": False, "serving": self.model.version, "reason": reason}
        self.model, self.previous = self.previous, self.model
        self.counters.models_accepted += 1
        event(
            log,
            "model_rolled_back",
            serving=self.model.version,
            replaced=self.previous.version,
            by=requested_by,
        )
        self._publish_status(self.model.version, True, f"rolled back from {self.previous.version}")
        return {"accepted": True, "serving": self.model.version, "previous": self.previous.version}

    def _verify_update(self, msg: ModelUpdated) -> None:
        """HMAC check of a ``model.updated``; freshness is judged on ``ts_event``."""
        self._verifier.verify(msg, msg.ts_event)

    def on_model_updated(self, msg: ModelUpdated) -> dict[str, Any] | None:
        try:
            self._verify_update(msg)
        except AuthError as exc:
            self.counters.updates_refused += 1
            event(
                log,
                "model_update_refused",
                logging.WARNING,
                version=msg.version,
                producer=msg.producer,
                reason=str(exc),
            )
            self._publish_status(msg.version, False, f"unauthorised model.updated: {exc}")
            return None
        if msg.action == "rollback" and not msg.path and not msg.version:
            return self.rollback(requested_by=msg.producer)
        return self.swap(msg.path or msg.version, msg.onnx_sha256, requested_by=msg.producer)

    # ------------------------------------------------------------------ commands
    async def cmd_push_model(self, args: dict[str, Any]) -> dict[str, Any]:
        target = str(args.get("path") or args.get("version") or "")
        if not target:
            raise ValueError("push_model needs 'version' (or 'path') under the model root")
        result = self.swap(target, str(args.get("sha256", "")), requested_by="command")
        if not result["accepted"]:
            raise ArtifactError(f"refused {target}: {result['reason']}")
        return result

    async def cmd_rollback(self, args: dict[str, Any]) -> dict[str, Any]:
        version = str(args.get("version") or "")
        result = self.swap(version, requested_by="command") if version else self.rollback("command")
        if not result["accepted"]:
            raise ArtifactError(result["reason"])
        return result

    async def cmd_status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status_detail()

    def status_detail(self) -> dict[str, Any]:
        stats = getattr(self, "_subscriber_stats", None)
        c = self.counters
        return {
            "ready": True,
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
            while True:
                self.handle_batch(await subscriber.recv_batch())
                await asyncio.sleep(0)  # commands, heartbeats and warm-ups get their turn
        finally:
            subscriber.close()

    async def heartbeats(self) -> None:
        await heartbeat_loop(
            self.bus.publisher,
            "inference",
            self.bus.settings.heartbeat_interval_s,
            self.status_detail,
        )

    def close(self) -> None:
        for task in list(self._warm_tasks):
            task.cancel()
        self._snapshot_client.close()


def decide_many(model: LoadedModel, features: OnlineFeatures, bars: np.ndarray) -> list[float]:
    """Benchmark helper: the per-bar work of ``_apply`` over an (n, 5) OHLCV array."""
    position = 0.0
    out: list[float] = []
    for o, h, lo, c, v in bars.tolist():
        row = features.update(o, h, lo, c, v)
        if row is None:
            continue
        position = model.decide(build_observation(model.normaliser.transform(row), position))
        out.append(position)
    return out
