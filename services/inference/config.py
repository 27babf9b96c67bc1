"""Inference settings, from ``INFERENCE_*`` environment variables (documented defaults)."""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.config import require


class InferenceSettings(msgspec.Struct, frozen=True, kw_only=True):
    # Model root and the version served at start: ``current`` (the last version the trainer
    # pushed or rolled back to, from the root's push history; the baseline when there is none),
    # a folder under the root (``v7``), or a folder of versions (``baseline`` -> its last one).
    model_dir: str = "models"
    model_version: str = "current"
    # Symbols this instance serves (a shard when scaled); empty = every ``bar.*`` on the bus.
    symbols: tuple[str, ...] = ()
    # Warm-up: bars asked from marketdata's ``snapshot`` per symbol (>= the pipeline's warm-up).
    # 400: `make warmup-analysis` measured RSI needing ~330 bars to match the backtest to 1e-9.
    snapshot_bars: int = 400
    snapshot_timeout_s: float = 5.0
    snapshot_attempts: int = 3
    # Strategy name put on every signal: execution's order references derive from it, so it
    # stays the same across model swaps (a swapped model never re-orders an already-seen bar).
    strategy: str = "rl"
    instance: str = ""  # name in model.status / heartbeats; default: the bus producer id
    # ``all``: serve every bar received (or the static ``symbols`` shard). ``rendezvous``: replicas
    # split the symbols among themselves (``inference.sharding``; ``--scale inference=N``).
    shard_mode: Literal["all", "rendezvous"] = "all"
    # Rendezvous only; 0 = derived from BUS_HEARTBEAT_INTERVAL_S (3x and 2x the interval).
    peer_timeout_s: float = 0.0  # a silent peer's share is taken over after this
    join_grace_s: float = 0.0  # a new replica listens this long before taking its share

    def __post_init__(self) -> None:
        require(bool(self.model_dir), "model_dir", "must not be empty")
        require(bool(self.model_version), "model_version", "must not be empty")
        require(self.snapshot_bars > 0, "snapshot_bars", "must be > 0")
        require(self.snapshot_timeout_s > 0, "snapshot_timeout_s", "must be > 0")
        require(self.snapshot_attempts >= 1, "snapshot_attempts", "must be >= 1")
        require(bool(self.strategy), "strategy", "must not be empty")
        require(self.peer_timeout_s >= 0, "peer_timeout_s", "must be >= 0 (0: 3 heartbeats)")
        require(self.join_grace_s >= 0, "join_grace_s", "must be >= 0 (0: 2 heartbeats)")
        for symbol in self.symbols:
            require(
                symbol.replace("-", "").replace("_", "").replace(".", "").isalnum(),
                "symbols",
                f"bad symbol {symbol!r}",
            )
