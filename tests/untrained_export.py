"""Export an untrained RLModule as if it were a trained one (what the export tests need): the
slices are loaded with the training slice's normaliser, the module is seeded, and
``trainer.export.export_model`` runs with the gate forced, no paper config and no plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.export import export_model
from trainer.export_manifest import ExportInputs
from trainer.policy_head import PolicyHead
from trainer.train import build_module
from trainer.train_data import SliceData, load_slice

from shared.env import TradingEnv


def load_slices(cfg: TrainConfig) -> tuple[SliceData, dict[str, SliceData]]:
    """The training slice (its normaliser fitted on it), then train / validation / test loaded
    with that normaliser."""
    train = load_slice(cfg, "train", None)
    normaliser = train.market.normaliser.to_dict()
    return train, {s: load_slice(cfg, s, normaliser) for s in ("train", "validation", "test")}


def export_untrained(
    cfg: TrainConfig,
    out: Path,
    trial_id: str,
    loaded: tuple[SliceData, dict[str, SliceData]] | None = None,
) -> Any:
    """``export_model``'s result for a freshly built (seed 0) module (``loaded``: what
    ``load_slices`` returned, when the test looked at the slices first)."""
    import torch

    train, slices = loaded if loaded is not None else load_slices(cfg)
    spaces = TradingEnv(train.env_config, market=train.market)
    torch.manual_seed(0)
    module = build_module(cfg, spaces.observation_space, spaces.action_space)
    inputs = ExportInputs(
        cfg=cfg,
        head=PolicyHead(module, cfg.algorithm, True),
        normaliser=train.market.normaliser.to_dict(),
        slices=slices,
        seeds={"train": cfg.seed},
        trial_id=trial_id,
    )
    return export_model(inputs, out, force=True, paper=False, plots=False)
