"""Policy architectures beyond the MLP on RLlib's new API stack (RLModule API), issue 15.

``PolicyConfig`` (one typed config) picks the network:

- ``mlp``: RLlib's default MLP (``TrainConfig.hiddens``), what ``trainer.train`` builds today;
- ``lstm``: RLlib's default module with ``DefaultModelConfig(use_lstm=True)`` (an MLP tokenizer,
  one LSTM layer, policy and value heads; separate actor/critic LSTMs);
- ``attention``: ``trainer.policies.attention.WindowAttentionModule``, a small Transformer
  encoder over the last ``window`` observations (its recurrent state IS that window).

``apply_policy(algo_config, policy, hiddens)`` switches an ``AlgorithmConfig`` from
``trainer.train.build_algo_config`` to the chosen module; ``trainer.policies.onnx`` exports the
stateful ones with their state as explicit ONNX inputs/outputs.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PolicyKind = Literal["mlp", "lstm", "attention"]

# What a server must do with a stateful policy's state (written into the manifest).
RESET_RULE = (
    "per symbol; start from zeros at the first bar, on an epoch change (Bar.epoch differs from "
    "the last bar's) and on a gap (a missing bar by the exchange calendar, or a backfill)"
)


class PolicyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The network of a policy; the fields of the kinds not chosen are ignored."""

    kind: PolicyKind = "mlp"
    # lstm
    lstm_cell_size: int = 32
    max_seq_len: int = 20  # BPTT length of training sequences (RLlib's max_seq_len)
    # attention
    window: int = 16  # observations the encoder sees (the newest last)
    d_model: int = 32
    heads: int = 2
    layers: int = 1
    ff_size: int = 64

    def __post_init__(self) -> None:
        if self.lstm_cell_size < 1 or self.max_seq_len < 1:
            raise ValueError("lstm_cell_size and max_seq_len must be >= 1")
        if self.window < 2:
            raise ValueError(f"window must be >= 2, got {self.window}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")

    @property
    def stateful(self) -> bool:
        return self.kind != "mlp"


def apply_policy(
    algo_config: Any, policy: PolicyConfig, hiddens: list[int] | tuple[int, ...]
) -> Any:
    """``algo_config`` (PPO, new API stack) with the RLModule of ``policy``."""
    if policy.kind == "mlp":
        return algo_config
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    if policy.kind == "lstm":
        return algo_config.rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=list(hiddens)[:1] or [64],
                fcnet_activation="tanh",
                use_lstm=True,
                lstm_cell_size=policy.lstm_cell_size,
                max_seq_len=policy.max_seq_len,
                vf_share_layers=False,
            )
        )
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from trainer.policies.attention import WindowAttentionModule

    return algo_config.rl_module(
        rl_module_spec=RLModuleSpec(
            module_class=WindowAttentionModule,
            model_config={
                "window": policy.window,
                "d_model": policy.d_model,
                "heads": policy.heads,
                "layers": policy.layers,
                "ff_size": policy.ff_size,
                "max_seq_len": policy.max_seq_len,
            },
        )
    )


def build_policy_module(
    policy: PolicyConfig, observation_space: Any, action_space: Any, seed: int = 0
) -> Any:
    """A fresh (untrained, seeded) PPO RLModule of ``policy``, without Ray or an env."""
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig

    torch.manual_seed(seed)
    config = apply_policy(
        PPOConfig().environment(observation_space=observation_space, action_space=action_space),
        policy,
        [64],
    )
    spec = config.get_rl_module_spec(spaces={"default_policy": (observation_space, action_space)})
    return spec.build()


__all__ = ["RESET_RULE", "PolicyConfig", "PolicyKind", "apply_policy", "build_policy_module"]
