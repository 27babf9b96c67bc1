"""A small Transformer encoder over the last W observations, as an RLlib TorchRLModule.

Why the window is the module's recurrent state: RLlib's new API stack already knows how to carry
state through episodes (``get_initial_state`` -> ``STATE_IN``/``STATE_OUT``, sequences of
``max_seq_len`` in training). The state is the last W-1 observations (zeros before the first),
so step t sees exactly [obs_{t-W+1}, ..., obs_t] in training, in evaluation and in serving,
where the ONNX graph takes that window as its input ``obs_window`` [B, W, F].

The encoder is hand-written (linear embedding + learned position embedding, L pre-norm
self-attention blocks, the newest token's output -> policy and value heads) rather than
``torch.nn.TransformerEncoder``, whose fused inference fast path the TorchScript ONNX exporter
does not trace the same way the training path runs; this keeps torch and ONNX on one code path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

WINDOW_STATE = "window"


class _Block(nn.Module):
    """Pre-norm self-attention + feed-forward, no dropout (decisions must be deterministic)."""

    def __init__(self, d_model: int, heads: int, ff_size: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_size), nn.GELU(), nn.Linear(ff_size, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, w, d = x.shape
        hd = d // self.heads
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q = q.reshape(n, w, self.heads, hd).transpose(1, 2)
        k = k.reshape(n, w, self.heads, hd).transpose(1, 2)
        v = v.reshape(n, w, self.heads, hd).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(n, w, d)
        x = x + self.proj(y)
        return x + self.ff(self.norm2(x))


class WindowAttentionModule(TorchRLModule, ValueFunctionAPI):
    """model_config: window, d_model, heads, layers, ff_size, max_seq_len."""

    def setup(self) -> None:
        cfg: dict[str, Any] = dict(self.model_config or {})  # type: ignore[arg-type]
        self.window = int(cfg.get("window", 16))
        d_model = int(cfg.get("d_model", 32))
        space: Any = self.observation_space
        n_obs = int(space.shape[0])
        self.n_obs = n_obs
        self.embed = nn.Linear(n_obs, d_model)
        self.position = nn.Parameter(torch.zeros(self.window, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList(
            _Block(d_model, int(cfg.get("heads", 2)), int(cfg.get("ff_size", 64)))
            for _ in range(int(cfg.get("layers", 1)))
        )
        self.norm = nn.LayerNorm(d_model)
        actions: Any = self.action_space
        self.pi = nn.Linear(d_model, int(actions.n))
        self.vf = nn.Linear(d_model, 1)

    def get_initial_state(self) -> dict[str, Any]:
        return {WINDOW_STATE: np.zeros((self.window - 1, self.n_obs), dtype=np.float32)}

    def encode_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """[N, W, F] windows (oldest first) -> [N, d_model] embedding of the newest step."""
        x = self.embed(windows) + self.position
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, -1, :])

    def policy_logits(self, windows: torch.Tensor) -> torch.Tensor:
        """What the ONNX graph exports: [N, W, F] -> [N, actions]."""
        return self.pi(self.encode_windows(windows))

    def _embeddings(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        obs = batch[Columns.OBS]  # [B, T, F]: RLlib adds the time axis for stateful modules
        past = batch[Columns.STATE_IN][WINDOW_STATE]  # [B, W-1, F]
        full = torch.cat([past.to(obs.dtype), obs], dim=1)  # [B, W-1+T, F]
        b, t = obs.shape[0], obs.shape[1]
        windows = full.unfold(1, self.window, 1).permute(0, 1, 3, 2)  # [B, T, W, F]
        emb = self.encode_windows(windows.reshape(b * t, self.window, -1)).reshape(b, t, -1)
        return emb, {WINDOW_STATE: full[:, -(self.window - 1) :, :]}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        emb, state = self._embeddings(batch)
        return {Columns.ACTION_DIST_INPUTS: self.pi(emb), Columns.STATE_OUT: state}

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        emb, state = self._embeddings(batch)
        return {
            Columns.ACTION_DIST_INPUTS: self.pi(emb),
            Columns.STATE_OUT: state,
            Columns.EMBEDDINGS: emb,
        }

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> Any:
        if embeddings is None:
            embeddings, _ = self._embeddings(batch)
        return self.vf(embeddings).squeeze(-1)
