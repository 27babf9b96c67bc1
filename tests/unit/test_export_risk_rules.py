"""A policy trained with ``env_risk_rules``: the export records the rules' numbers in the
manifest, and the gate's validation folds were scored under them (the folds' equity differs from
the same artifact scored without them). An untrained RLModule stands in for a trained one (as in
test_trainer_export)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from trainer.config import TrainConfig

from shared.backtest_risk import manifest_risk_rules, risk_record
from shared.data import load_bars
from shared.env_risk import RiskRules
from shared.loaded_model import load_artifact
from shared.manifest import read_manifest
from tests.untrained_export import export_untrained, load_slices

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit


def test_export_records_the_rules_and_the_gate_scores_under_them(tmp_path: Path) -> None:
    from trainer.evaluate import evaluate_folds
    from trainer.selection import selection_plan

    cfg = TrainConfig(hiddens=[16, 16], env_risk_rules=True)
    train, slices = load_slices(cfg)
    result = export_untrained(cfg, tmp_path, "risk-test", (train, slices))
    manifest = read_manifest(result.artifact)
    assert json.loads(manifest.provenance)["env_risk_rules"] == risk_record(RiskRules())
    assert manifest_risk_rules(manifest) == RiskRules()

    # what the gate saw: the same folds scored by evaluate_folds on the loaded artifact
    model = load_artifact(result.artifact)
    bars = load_bars(cfg.source, cfg.symbol)
    common = {"account": slices["validation"].env_config.account(), "plots": False}
    plan = selection_plan(cfg, bars.index)
    ruled = evaluate_folds(model, bars=bars, plan=plan, **common)
    plain = evaluate_folds(model, bars=bars, plan=plan, risk="off", **common)
    assert all(f.meta["risk_rules"] == risk_record(RiskRules()) for f in ruled)
    gate_mean = result.gate.model_value
    ruled_mean = sum(float(f.metrics["model"]["sharpe"] or 0.0) for f in ruled) / len(ruled)
    assert gate_mean == pytest.approx(ruled_mean, rel=1e-9, abs=1e-12)
    # the rules changed at least one strategy's path on these folds (else the check is empty)
    assert any(
        r.results[n].equity.tolist() != p.results[n].equity.tolist()
        for r, p in zip(ruled, plain, strict=True)
        for n in ("model", "buy_and_hold", "ma_crossover")
    )
