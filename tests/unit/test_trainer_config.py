"""TrainConfig / TrainerSettings: one typed object, validated, with profiles and env slices."""

from __future__ import annotations

import numpy as np
import pytest
from trainer.config import PROFILES, TrainConfig, trainer_settings

from shared.config import ConfigError

pytestmark = pytest.mark.unit


def test_defaults_are_the_quick_profile_and_slices_match_the_brief() -> None:
    cfg = TrainConfig.profile("quick")
    # the quick profile = the defaults, on the packaged daily stocks, with a smaller budget
    assert cfg == TrainConfig(**PROFILES["quick"])
    assert len(cfg.symbol_list) >= 4 and TrainConfig().symbol_list == ["AAPL"]
    assert cfg.algorithm == "PPO"
    assert (cfg.train_end, cfg.val_start, cfg.val_end, cfg.test_start) == (
        "2018-01-01",
        "2018-01-01",
        "2020-01-01",
        "2020-01-01",
    )
    full = TrainConfig.profile("full")
    assert full.iterations == PROFILES["full"]["iterations"] > cfg.iterations


def test_overrides_convert_tune_samples_and_refuse_bad_values() -> None:
    cfg = TrainConfig().with_overrides(
        {"lr": np.float64(1e-3), "hiddens": (32, 32), "train_batch_size": np.int64(4000)}
    )
    assert cfg.lr == 1e-3 and cfg.hiddens == [32, 32] and cfg.train_batch_size == 4000
    with pytest.raises(ValueError, match="minibatch_size"):
        TrainConfig().replace(minibatch_size=10**6)
    with pytest.raises(ValueError, match="algorithm"):
        TrainConfig().replace(algorithm="A2C")
    with pytest.raises(ValueError, match="lr"):
        TrainConfig().replace(lr=0.0)
    with pytest.raises(ValueError, match="unknown profile"):
        TrainConfig.profile("medium")
    with pytest.raises(ValueError, match="DQN needs discrete"):
        TrainConfig(algorithm="DQN", action_space="continuous")


def test_env_configs_per_slice_charge_real_costs_outside_training() -> None:
    cfg = TrainConfig(train_cost_multiplier=3.0, spread_bps=2.0, episode_length=63)
    train = cfg.env_config("train")
    val = cfg.env_config("validation", normaliser=None)
    test = cfg.env_config("test")
    assert train.costs.spread_bps == pytest.approx(6.0)
    assert val.costs.spread_bps == test.costs.spread_bps == 2.0
    assert (train.sampling, train.episode_length) == ("random", 63)
    assert (val.sampling, val.episode_length) == ("sequential", 0)
    assert (train.end, val.start, val.end, test.start, test.end) == (
        "2018-01-01",
        "2018-01-01",
        "2020-01-01",
        "2020-01-01",
        None,
    )
    # a plain dict round-trips (RLlib env_config)
    assert type(train).from_dict(train.to_dict()) == train


def test_round_trip_through_a_dict() -> None:
    cfg = TrainConfig(lr=5e-4, hiddens=[8], reward="diff_sharpe")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_trainer_settings_from_env_name_the_bad_key() -> None:
    s = trainer_settings({"TRAINER_MODEL_DIR": "/srv/models", "TRAINER_PROFILE": "full"})
    assert (s.model_dir, s.profile) == ("/srv/models", "full")
    with pytest.raises(ConfigError, match="TRAINER_PROFILE"):
        trainer_settings({"TRAINER_PROFILE": "huge"})
    with pytest.raises(ConfigError, match="TRAINER_PUSH_TIMEOUT_S"):
        trainer_settings({"TRAINER_PUSH_TIMEOUT_S": "-1"})
