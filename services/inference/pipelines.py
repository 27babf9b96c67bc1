"""Per-model feature pipelines in inference (issue 15: serve models whose features differ).

Every served model (live, previous, shadow) carries the ``FeaturePipeline`` of its own manifest
``feature_config`` (``shared.loaded_model.pipeline_from_manifest``: refused unless the manifest's
``feature_code_version`` is the running code's and its ``pipeline_fingerprint`` is its config's).
Models with the same fingerprint share one pipeline object, and the per-symbol online feature
state (``SymbolState.features``) belongs to the LIVE model's pipeline: the common single-config
case costs nothing extra. A swap or rollback to a model with another fingerprint re-warms every
symbol from marketdata's snapshot (``inference.warmup``) before the model's first decision.

A shadow whose fingerprint differs from the live model's is an ``OwnPipelineShadow``: it keeps
its own per-symbol ``OnlineFeatures``, fed with every bar the live features accept (``feed``), and
decides on its own rows; loaded mid-stream it rebuilds them by replaying the snapshot (plus the
live bars that arrived meanwhile) and stays silent for a symbol until then.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inference.shadow import ShadowSlot
from shared.features import FeaturePipeline, OnlineFeatures
from shared.loaded_model import LoadedModel
from shared.messages import Bar


def model_pipeline(model: LoadedModel) -> FeaturePipeline:
    """The pipeline ``load_artifact`` checked ``model`` against."""
    if model.pipeline is None:  # load_artifact always sets it; a hand-built model may not
        raise ValueError(f"{model.version}: no feature pipeline recorded")
    return model.pipeline


@dataclass
class OwnPipelineShadow(ShadowSlot):
    """A shadow deciding on its own features (see the module doc)."""

    pipeline: FeaturePipeline | None = None
    features: dict[str, OnlineFeatures] = field(default_factory=dict)
    rows: dict[str, np.ndarray | None] = field(default_factory=dict)  # the last bar's own row
    pending: dict[str, list[Bar]] = field(default_factory=dict)  # fed while replaying

    def _online(self, symbol: str) -> OnlineFeatures:
        online = self.features.get(symbol)
        if online is None:
            assert self.pipeline is not None
            online = self.features[symbol] = self.pipeline.online()
        return online

    def _update(self, symbol: str, bar: Bar) -> np.ndarray | None:
        try:
            row = self._online(symbol).update(bar.open, bar.high, bar.low, bar.close, bar.volume)
        except ValueError:  # the live features refuse the same bars; never reached in practice
            row = None
        self.rows[symbol] = row
        return row

    def feed(self, bar: Bar) -> None:
        """One bar the live features accepted; buffered while the symbol replays its snapshot."""
        if bar.symbol in self.warming:
            self.pending.setdefault(bar.symbol, []).append(bar)
            self.rows[bar.symbol] = None
            return
        self._update(bar.symbol, bar)

    def decide_batch(
        self, symbols: list[str], rows: list[np.ndarray], breaks: list[int] | None = None
    ) -> list[float]:
        """As ``ShadowSlot.decide_batch`` on the shadow's OWN rows (the live rows are ignored);
        a symbol whose own features are not ready gets None (not published)."""
        marks = breaks if breaks is not None else [0] * len(symbols)
        own = [self.rows.get(s) for s in symbols]
        ready = [i for i, r in enumerate(own) if r is not None]
        out: list[float | None] = [None] * len(symbols)
        if ready:
            targets = super().decide_batch(
                [symbols[i] for i in ready],
                [own[i] for i in ready],  # type: ignore[misc]
                [marks[i] for i in ready],
            )
            for i, target in zip(ready, targets, strict=True):
                out[i] = target
        return out  # type: ignore[return-value]

    def replay(self, symbol: str, snapshot: list[Bar], last_ts: int, breaks: int) -> int:
        """Rebuild the symbol's features, position and state from the snapshot and the bars fed
        meanwhile, up to the live stream's last applied bar; the symbol then speaks again."""
        by_ts = {b.ts_event: b for b in snapshot if b.symbol == symbol and b.ts_event <= last_ts}
        for bar in self.pending.pop(symbol, []):
            by_ts.setdefault(bar.ts_event, bar)
        self.features.pop(symbol, None)
        self.positions.pop(symbol, None)
        self.states.pop(symbol, None)
        self.rows[symbol] = None
        self.warming.discard(symbol)
        replayed = 0
        for ts in sorted(by_ts):
            row = self._update(symbol, by_ts[ts])
            if row is not None:
                self.decide(symbol, row, breaks)
                replayed += 1
        return replayed

    def forget(self, symbol: str) -> None:
        super().forget(symbol)
        self.features.pop(symbol, None)
        self.rows.pop(symbol, None)
        self.pending.pop(symbol, None)

    def describe(self) -> dict[str, object]:
        assert self.pipeline is not None
        return {**super().describe(), "pipeline_fingerprint": self.pipeline.fingerprint}


def shadow_slot(model: LoadedModel, live: FeaturePipeline) -> ShadowSlot:
    """A plain slot when the candidate shares the live pipeline, else one with its own."""
    pipeline = model_pipeline(model)
    if pipeline.fingerprint == live.fingerprint:
        return ShadowSlot(model)
    return OwnPipelineShadow(model, pipeline=pipeline)


def feed_shadow(slot: ShadowSlot, bar: Bar) -> None:
    """The service's hook after its live features accepted ``bar`` (no-op for a plain slot)."""
    if isinstance(slot, OwnPipelineShadow):
        slot.feed(bar)
