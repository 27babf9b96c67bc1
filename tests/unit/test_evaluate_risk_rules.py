"""Evaluation (and so the fold gate and the hold-out, which call it with the loaded artifact)
scores a model under execution's risk rules exactly when its manifest says it was trained with
them, and the benchmarks under the same rules."""

from __future__ import annotations

import json

import msgspec
import pytest

from shared.backtest_risk import risk_record
from shared.env_risk import RiskRules
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.rebalancing import AccountConfig

pytestmark = pytest.mark.unit

TIGHT = RiskRules(max_daily_loss=40.0)  # fires on real AAPL days, so the numbers must move


def _baseline(provenance: dict | None):
    from trainer.evaluate import REPO

    folder = REPO / "models" / "baseline" / "ma-crossover-10-50-v1"
    loaded = load_artifact(folder, FeaturePipeline())
    if provenance is not None:
        loaded.manifest = msgspec.structs.replace(
            loaded.manifest, provenance=json.dumps(provenance)
        )
    return loaded


def _evaluate(model, **kw):
    from trainer.evaluate import evaluate_model

    return evaluate_model(
        model,
        symbol="AAPL",
        start="2019-01-01",
        end="2020-12-31",
        account=AccountConfig(),
        plots=False,
        **kw,
    )


def test_manifest_rules_score_every_strategy_under_them() -> None:
    plain = _evaluate(_baseline(None))
    assert plain.meta["risk_rules"] is None and "risk_forced" not in plain.meta
    trained = _evaluate(_baseline({"env_risk_rules": risk_record(TIGHT)}))
    assert trained.meta["risk_rules"] == risk_record(TIGHT)
    forced = trained.meta["risk_forced"]
    assert set(forced) == {"model", "buy_and_hold", "ma_crossover"}
    assert sum(forced["buy_and_hold"].values()) > 0  # a held long is stopped / halted
    for name in ("model", "buy_and_hold"):
        assert trained.results[name].equity.tolist() != plain.results[name].equity.tolist()
    # explicit "off" wins over the manifest; explicit rules over no manifest flag
    off = _evaluate(_baseline({"env_risk_rules": risk_record(TIGHT)}), risk="off")
    assert off.results["model"].equity.tolist() == plain.results["model"].equity.tolist()
    forced_on = _evaluate(_baseline(None), risk=TIGHT)
    assert forced_on.metrics["model"] == trained.metrics["model"]


def test_the_training_flag_alone_means_the_default_rules() -> None:
    flag = _evaluate(_baseline({"train_config": {"env_risk_rules": True}}))
    assert flag.meta["risk_rules"] == risk_record(RiskRules())
    with pytest.raises(ValueError, match="risk must be"):
        _evaluate(_baseline(None), risk="sometimes")
