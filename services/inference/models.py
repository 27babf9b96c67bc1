"""Which models an inference process serves: hot swap, rollback, shadow load / promote / drop.

Hot swap: ``model.updated`` (HMAC-verified) and the ``push_model`` / ``rollback`` commands load the
new artifact next to the serving one with ``shared.loaded_model.load_artifact``; only an artifact
that passes every check replaces it. Either way ``model.status`` says what is served and why a
model was refused; a refused model never interrupts serving.

Shadow (see ``inference.shadow``): ``model.updated`` with action ``shadow`` / ``drop_shadow`` (what
the trainer's verbs publish, so every replica follows) and the per-process commands
``shadow_load {version|path, sha256?}``, ``shadow_promote``, ``shadow_drop``. A shadow is loaded
with the same checks as a push; promoting it is a swap to its version (same checks again, the old
live model kept for ``rollback``); a push of the shadow's own version (the trainer's
``promote_shadow``) drops the shadow too, since it is live now.

Feature pipelines (``inference.pipelines``): each candidate is checked against the pipeline of
its OWN manifest ``feature_config``, so a model whose features differ from the default (the
regime block, a feature study's variant) is served. A swap / rollback to another fingerprint
re-warms every symbol from the snapshot before the new model's first decision; a shadow with
another fingerprint keeps its own per-symbol features.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from inference.pipelines import OwnPipelineShadow, model_pipeline, shadow_slot
from inference.shadow import ShadowSlot
from shared.auth import AuthError, Verifier
from shared.features import FeaturePipeline
from shared.loaded_model import LoadedModel, load_artifact, pipeline_from_manifest
from shared.logs import event
from shared.manifest import ArtifactError, read_manifest
from shared.messages import ModelStatus, ModelUpdated
from shared.model_store import resolve_artifact
from shared.runtime import BusConnection
from shared.shadow_record import read_shadow_record

log = logging.getLogger("inference")


class ModelControl:
    """Mixin of ``InferenceService``: the model slots and the commands that change them."""

    bus: BusConnection
    root: Path
    pipeline: FeaturePipeline
    instance: str
    model: LoadedModel
    previous: LoadedModel | None
    shadow: ShadowSlot | None
    last_rejection: str
    _verifier: Verifier

    def _count(self, name: str) -> None:
        counters = self.counters  # type: ignore[attr-defined]
        setattr(counters, name, getattr(counters, name) + 1)

    def _relative_target(self, target: str) -> str:
        path = Path(target)
        if path.is_absolute():
            root = self.root.resolve()
            resolved = path.resolve()
            if root not in resolved.parents:
                raise ArtifactError(f"{target} is outside the model root {root}")
            return str(resolved.relative_to(root))
        return target

    def _load(self, target: str, expected_sha256: str = "") -> LoadedModel:
        folder = resolve_artifact(self.root, self._relative_target(target))
        return self._load_folder(folder, expected_sha256)

    def _known_pipelines(self) -> dict[str, FeaturePipeline]:
        """The pipelines of the models held now (a candidate with one of their fingerprints
        shares that object, and so the per-symbol feature state)."""
        known = {self.pipeline.fingerprint: self.pipeline}
        for model in (getattr(self, "model", None), getattr(self, "previous", None)):
            if model is not None and model.pipeline is not None:
                known.setdefault(model.pipeline.fingerprint, model.pipeline)
        shadow = getattr(self, "shadow", None)
        if shadow is not None and shadow.model.pipeline is not None:
            known.setdefault(shadow.model.pipeline.fingerprint, shadow.model.pipeline)
        return known

    def _load_folder(self, folder: Path, expected_sha256: str = "") -> LoadedModel:
        """Open an artifact against the pipeline of its own feature config (checked:
        ``feature_code_version`` and ``pipeline_fingerprint``); raises ``ArtifactError``."""
        manifest = read_manifest(folder)
        pipeline = pipeline_from_manifest(manifest)
        pipeline = self._known_pipelines().get(pipeline.fingerprint, pipeline)
        return load_artifact(folder, pipeline, expected_sha256=expected_sha256 or None)

    def _adopt_pipeline(self, model: LoadedModel) -> None:
        """Serve ``model``'s features: when its fingerprint differs from the running one, every
        symbol is re-warmed from the snapshot with the new pipeline (no decision on a cold
        one), and a shadow is re-slotted against the new live pipeline."""
        new = model_pipeline(model)
        if new.fingerprint == self.pipeline.fingerprint:
            return  # the same features: the symbols' state serves the new model as it is
        old = self.pipeline
        self.pipeline = new
        event(
            log,
            "feature_pipeline_changed",
            old=old.fingerprint[:12],
            new=new.fingerprint[:12],
            model=model.version,
            symbols=len(self.states),  # type: ignore[attr-defined]
        )
        if self.shadow is not None:
            self.shadow = shadow_slot(self.shadow.model, new)  # fed by the re-warm below
        self._rewarm_all()

    def _rewarm_all(self) -> None:
        """Every symbol starts a new state on the live pipeline and replays the snapshot (bars
        after its last signal are signalled once, bars buffered meanwhile are kept)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop (a plain call): the next bar's guard re-warms it
            return
        for symbol, old in list(self.states.items()):  # type: ignore[attr-defined]
            state = self._reset_symbol(symbol, old.last_signal_ts)  # type: ignore[attr-defined]
            if not old.warm:
                state.pending = old.pending + state.pending

    def _pipeline_mismatch(self, state: Any, bar: Any) -> Any:
        """A symbol's features belong to another pipeline than the live model's (a bar raced a
        swap): refuse to decide on them, count and log it, and re-warm the symbol."""
        self._count("cold_refusals")
        event(
            log,
            "decision_refused_cold_pipeline",
            logging.WARNING,
            symbol=bar.symbol,
            seq=bar.seq,
            model=self.model.version,
        )
        new = self._reset_symbol(bar.symbol, state.last_signal_ts)  # type: ignore[attr-defined]
        if not state.warm:
            new.pending = state.pending + new.pending
        return new

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

    # ------------------------------------------------------------------ live model
    def swap(
        self, target: str, expected_sha256: str = "", requested_by: str = ""
    ) -> dict[str, Any]:
        """Load ``target`` (a version path under the root) beside the serving model; swap only if
        it passes every check. Never raises for a bad artifact: the reply says why."""
        try:
            candidate = self._load(target, expected_sha256)
        except ArtifactError as exc:
            return self._reject(target, str(exc), requested_by)
        except Exception as exc:  # anything unexpected in a candidate must not stop serving
            return self._reject(target, f"{type(exc).__name__}: {exc}", requested_by)
        old = self.model
        self.previous, self.model = old, candidate
        self._count("models_accepted")
        event(
            log,
            "model_swapped",
            old=old.version,
            new=candidate.version,
            by=requested_by,
            path=str(candidate.path),
        )
        self._publish_status(candidate.version, True, f"swapped from {old.version}")
        if self.shadow is not None and self.shadow.version == candidate.version:
            self.drop_shadow(requested_by, reason="promoted")
        self._adopt_pipeline(candidate)
        self._model_changed(candidate)  # type: ignore[attr-defined]
        return {"accepted": True, "serving": candidate.version, "previous": old.version}

    def _reject(self, target: str, reason: str, requested_by: str) -> dict[str, Any]:
        self._count("models_rejected")
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
        self._count("models_accepted")
        event(
            log,
            "model_rolled_back",
            serving=self.model.version,
            replaced=self.previous.version,
            by=requested_by,
        )
        self._publish_status(self.model.version, True, f"rolled back from {self.previous.version}")
        self._adopt_pipeline(self.model)
        self._model_changed(self.model)  # type: ignore[attr-defined]
        return {"accepted": True, "serving": self.model.version, "previous": self.previous.version}

    # ------------------------------------------------------------------ shadow model
    def load_shadow(
        self, target: str, expected_sha256: str = "", requested_by: str = ""
    ) -> dict[str, Any]:
        """Load a candidate beside the live model (same checks as a push); it replaces any
        shadow already loaded. A refused candidate leaves the current shadow as it was."""
        try:
            candidate = self._load(target, expected_sha256)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ArtifactError) else f"{type(exc).__name__}: {exc}"
            self._count("models_rejected")
            self.last_rejection = f"shadow: {reason}"
            event(log, "shadow_rejected", logging.WARNING, requested=target, reason=reason)
            return {"accepted": False, "shadow": self._shadow_version(), "reason": reason}
        old = self._shadow_version()
        self.shadow = shadow_slot(candidate, self.pipeline)
        own = isinstance(self.shadow, OwnPipelineShadow)  # its features need the snapshot too
        if (candidate.stateful or own) and self.states:  # type: ignore[attr-defined]
            self._start_shadow_warm(self.shadow)  # type: ignore[attr-defined]
        event(log, "shadow_loaded", version=candidate.version, replaced=old, by=requested_by)
        return {"accepted": True, "shadow": candidate.version, "serving": self.model.version}

    def drop_shadow(self, requested_by: str = "", reason: str = "dropped") -> dict[str, Any]:
        old = self._shadow_version()
        self.shadow = None
        if old is not None:
            event(log, "shadow_dropped", version=old, by=requested_by, reason=reason)
        return {"dropped": old, "serving": self.model.version}

    def promote_shadow(self, requested_by: str = "") -> dict[str, Any]:
        """The shadow becomes live through ``swap`` (same checks, old model kept for rollback)."""
        if self.shadow is None:
            return {"accepted": False, "serving": self.model.version, "reason": "no shadow loaded"}
        shadow = self.shadow
        target = str(shadow.model.path)
        return self.swap(target, shadow.model.manifest.onnx_sha256, requested_by)

    def _shadow_version(self) -> str | None:
        return self.shadow.version if self.shadow is not None else None

    def load_recorded_shadow(self) -> None:
        """At start: the shadow the trainer recorded in the model root, if any (refused quietly:
        a bad candidate never stops the live model from serving)."""
        record = read_shadow_record(self.root)
        if record is not None:
            self.load_shadow(str(record["version"]), str(record.get("sha256", "")), "shadow.json")

    # ------------------------------------------------------------------ bus + commands
    def on_model_updated(self, msg: ModelUpdated) -> dict[str, Any] | None:
        try:
            self._verifier.verify(msg, msg.ts_event)
        except AuthError as exc:
            self._count("updates_refused")
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
        if msg.action == "shadow":
            return self.load_shadow(msg.path or msg.version, msg.onnx_sha256, msg.producer)
        if msg.action == "drop_shadow":
            return self.drop_shadow(msg.producer)
        if msg.action == "rollback" and not msg.path and not msg.version:
            return self.rollback(requested_by=msg.producer)
        return self.swap(msg.path or msg.version, msg.onnx_sha256, requested_by=msg.producer)

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

    async def cmd_shadow_load(self, args: dict[str, Any]) -> dict[str, Any]:
        target = str(args.get("path") or args.get("version") or "")
        if not target:
            raise ValueError("shadow_load needs 'version' (or 'path') under the model root")
        result = self.load_shadow(target, str(args.get("sha256", "")), requested_by="command")
        if not result["accepted"]:
            raise ArtifactError(f"refused shadow {target}: {result['reason']}")
        return result

    async def cmd_shadow_promote(self, args: dict[str, Any]) -> dict[str, Any]:
        result = self.promote_shadow("command")
        if not result["accepted"]:
            raise ArtifactError(result["reason"])
        return result

    async def cmd_shadow_drop(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.drop_shadow("command")
