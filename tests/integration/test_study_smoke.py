"""Real RLlib on the real env, tiny budgets (slow: about 2-3 minutes on 2 busy cores).

* LSTM and attention policies trained for one PPO iteration export to ONNX whose decisions
  match RLlib's torch forward over a 500-step sequence of real observations (state carried
  step by step on both sides, never re-synchronised);
* ``make study STUDY=smoke`` (``trainer.study``) trains every variant on the same folds with two
  seeds and writes the comparison table, plot and per-seed JSON; the benchmarks' rows equal an
  independent ``trainer.evaluate`` run on the same slice, and every hold-out look is in the
  ledger.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trainer.config import TrainConfig
from trainer.policies import PolicyConfig
from trainer.policies.onnx import (
    OnnxStepper,
    StatefulHead,
    export_stateful,
    policy_spec,
    sequence_parity,
)
from trainer.policies.training import train_stateful
from trainer.study import SMOKE_BUDGET, STUDIES, run_study
from trainer.train import prepare_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("kind", ["lstm", "attention"])
def test_trained_stateful_policy_exports_with_sequence_parity(kind: str) -> None:
    cfg = TrainConfig.profile("quick", **SMOKE_BUDGET)
    data = prepare_data(cfg)
    policy = PolicyConfig(kind=kind, lstm_cell_size=16, window=8)  # type: ignore[arg-type]
    run = train_stateful(cfg, policy, data=data, label=f"test-{kind}")
    assert run.iterations == 1 and run.env_steps >= cfg.train_batch_size
    size = data.train.market.obs.shape[1]
    onnx_bytes = export_stateful(run.module, kind, size)
    base, valid = data.train.observations
    seq = base[valid][:500].copy()
    seq[:, -1] = np.random.default_rng(0).choice([-1.0, 0.0, 1.0], size=len(seq))
    assert len(seq) == 500
    worst = sequence_parity(
        StatefulHead(run.module, kind),
        OnnxStepper(onnx_bytes, policy_spec(run.module, policy)),
        seq[:, None, :],
    )
    assert worst["logits"] <= 1e-5 and worst["state"] <= 1e-5, worst


def test_smoke_study_writes_one_comparison_table(tmp_path: Path) -> None:
    from trainer.evaluate import evaluate_model

    study = STUDIES["smoke"]
    out = run_study(study, tmp_path)
    assert out == tmp_path / "optimization_results" / "smoke"
    table = pd.read_csv(out / "results.csv")
    names = [v.name for v in study.variants]
    assert list(table["variant"]) == [*names, "Buy-and-Hold", "MA crossover"]
    rows = table.set_index("variant")
    for v in study.variants:
        assert rows.loc[v.name, "n"] == (1 if v.ensemble_of else len(study.seeds))
        assert np.isfinite(rows.loc[v.name, "validation_sharpe_mean"])
        assert np.isfinite(rows.loc[v.name, "holdout_turnover_mean"])
    # two seeds of a variant are two different policies: some spread shows
    trained = rows.loc[[v.name for v in study.variants if not v.ensemble_of]]
    assert (trained["validation_sharpe_std"] > 0).any()

    # the benchmarks' hold-out row equals an independent evaluation of the same slice and costs
    cfg = study.train_config(study.variants[0], study.seeds[0])
    alone = evaluate_model(
        None,
        source=cfg.source,
        symbol=cfg.symbol,
        start="2020-01-01",
        end=None,
        account=cfg.env_config("validation").account(),
        plots=False,
    )
    for label, name in (("Buy-and-Hold", "buy_and_hold"), ("MA crossover", "ma_crossover")):
        assert rows.loc[label, "holdout_sharpe_mean"] == pytest.approx(
            alone.metrics[name]["sharpe"], rel=1e-9
        )

    md = (out / "results.md").read_text()
    assert "Did not beat both Buy-and-Hold and the MA crossover" in md
    assert (out / "results.png").stat().st_size > 10_000
    record = json.loads((out / "study.json").read_text())
    ensemble = next(s for s in record["scores"] if s["variant"] == "mlp_ensemble")
    assert ensemble["extra"]["members"] and all(
        m.startswith("smoke_mlp_seed") for m in ensemble["extra"]["members"]
    )
    ledger = json.loads((tmp_path / "best_models" / "holdout_ledger.json").read_text())
    looks = len(study.seeds) * sum(1 for v in study.variants if not v.ensemble_of) + 1
    assert len(ledger["entries"]) == looks
    assert f"Models scored on this hold-out so far: {looks}" in md
