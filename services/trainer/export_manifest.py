"""The export's manifest: the artifact's version name and the ``ModelManifest`` it records.

``ExportInputs`` is everything the manifest records about where the model came from (config,
policy head, normaliser, data slices, seeds, Tune trial, seed spread); ``build_manifest`` turns
it (and the gate's and hold-out's numbers) into the manifest ``shared.model_store.write_artifact``
writes next to ``model.onnx``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.backtest_risk import risk_record
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.manifest import ActionSpace, DataSlice, ModelManifest, ObservationSpec, Promotion
from shared.observation import observation_names
from shared.provenance import git_revision
from trainer.config import TrainConfig
from trainer.policy_head import PolicyHead
from trainer.train_data import SliceData


def new_version(root: Path, now: dt.datetime | None = None, suffix: str = "") -> str:
    """``model_YYYYMMDDHHMMSS[_<suffix>]`` (UTC; ``suffix`` says how the artifact was chosen,
    e.g. ``median-of-3-seeds``), with ``_2``... if that name is taken under ``root``."""
    now = now or dt.datetime.now(dt.UTC)
    base = f"model_{now:%Y%m%d%H%M%S}" + (f"_{suffix}" if suffix else "")
    version, n = base, 1
    while (root / version).exists():
        n += 1
        version = f"{base}_{n}"
    return version


def _finite(metrics: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        out[k] = float(v) if math.isfinite(float(v)) else None
    return out


@dataclass
class ExportInputs:
    """Everything the manifest records about where the model came from."""

    cfg: TrainConfig
    head: PolicyHead
    normaliser: dict[str, Any]
    # "train", "validation", "test" (the first symbol's); other symbols' as "train:AMZN" ...
    slices: dict[str, SliceData]
    seeds: dict[str, int]
    trial_id: str = ""
    provenance: dict[str, Any] | None = None
    # Tune's re-runs of the chosen config on other seeds (``trainer.tune_results.seed_spread``): the
    # validation-fold objective per seed; None when no spread was run (e.g. --skip-tune).
    seed_spread: dict[str, Any] | None = None


def build_manifest(
    inputs: ExportInputs,
    version: str,
    *,
    validation_metrics: dict[str, Any] | None = None,
    test_metrics: dict[str, Any] | None = None,
    promotion: Promotion | None = None,
) -> ModelManifest:
    cfg = inputs.cfg
    feature_config = FeatureConfig.from_dict(cfg.features)
    pipeline = FeaturePipeline(feature_config)
    names = observation_names(pipeline)
    env_cfg = inputs.slices["train"].env_config
    if cfg.action_space == "discrete":
        space = ActionSpace(kind="discrete", action_values=list(env_cfg.action_targets))
        meaning = (
            f"argmax over the {cfg.algorithm} policy's "
            f"{'Q-values' if cfg.algorithm == 'DQN' else 'action logits'} -> target position "
            f"{list(env_cfg.action_targets)} (fraction of the allowed size), decided at a bar's "
            "close, filled at the next open"
        )
    else:
        low = -1.0 if cfg.allow_short else 0.0
        space = ActionSpace(kind="continuous", low=low, high=1.0, action_values=[])
        meaning = f"Gaussian mean clipped to [{low}, 1] = target position (fraction of size)"
    slices = [
        DataSlice(
            role=role.split(":")[0],
            source=cfg.source,
            symbol=data.env_config.symbol,
            **{
                k: v
                for k, v in data.describe().items()
                if k in ("start", "end", "rows", "content_hash")
            },
        )
        for role, data in inputs.slices.items()
    ]
    provenance = {
        "producer": "trainer.export",
        "train_config": cfg.to_dict(),
        # the rules evaluation, the gate and the hold-out score it under (shared.backtest_risk)
        **({"env_risk_rules": risk_record(env_cfg.risk)} if env_cfg.risk is not None else {}),
        **(inputs.provenance or {}),
    }
    return ModelManifest(
        version=version,
        created_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        algorithm=cfg.algorithm,
        onnx_sha256="",  # write_artifact fills it from the bytes
        observation=ObservationSpec(names=names, size=len(names)),
        feature_config=feature_config,
        pipeline_fingerprint=pipeline.fingerprint,
        normaliser=inputs.normaliser,
        action_space=space,
        action_meaning=meaning,
        symbols=cfg.symbol_list,
        timeframe="1d",
        training_data=slices,
        seeds=dict(inputs.seeds),
        git_revision=git_revision(),
        promotion=promotion or Promotion(verdict="candidate", reason="not evaluated yet"),
        tune_trial_id=inputs.trial_id,
        validation_metrics=_finite(validation_metrics or {}),
        test_metrics=_finite(test_metrics or {}),
        provenance=json.dumps(provenance, sort_keys=True, default=str),
        regime_caps=list(cfg.regime_caps),  # shared.regime_gate: every decision of the model
    )
