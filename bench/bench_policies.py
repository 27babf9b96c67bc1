"""onnx_call for the LSTM, attention and ensemble artifacts, beside a PPO MLP of the same width.

    python -m bench.bench_policies [--quick]

Rows (microseconds per decision, one observation, onnxruntime with inference's options: one
intra-op thread, sequential):

* ``onnx_call_lstm``: one step of the exported LSTM (``obs``, ``h_in``, ``c_in`` -> ``logits``,
  ``h_out``, ``c_out``), the state carried from call to call as a server would + argmax.
* ``onnx_call_attention``: shift the window of the last W observations, one call of the
  exported encoder (``obs_window`` [1, W, F]) + argmax.
* ``onnx_call_ensemble``: ``LoadedModel.decide`` of a 3-member ensemble graph
  (``trainer.ensemble``), exactly the served path.
* ``bar_work_lstm``: the in-process part of ``bar_to_signal_1`` for an LSTM artifact served by
  inference (``load_artifact`` -> ``StatefulModel``): online features of one BTC bar, normalise,
  observation, ``step`` with the symbol's state (what ``InferenceService._decide`` does per bar);
  baseline: the same per-bar work with the PPO MLP member (``LoadedModel.decide``). The bus hop
  is the same for both (``bar_to_signal_1`` in ``bench.bench_inference``).

Baseline of each row: ``LoadedModel.decide`` of one PPO MLP member ([64, 64], the same export),
measured in the same run. Weights are seeded random ones: latency does not depend on training.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import latency_row

ROOT = Path(__file__).resolve().parents[1]


def _time(fn: Any, n: int) -> list[float]:
    for _ in range(min(200, n)):  # warm the session
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _mlp_member(root: Path, seed: int, size: int) -> Path:
    import gymnasium as gym
    import msgspec
    import torch
    from trainer.config import TrainConfig
    from trainer.onnx_export import export_onnx
    from trainer.policy_head import PolicyHead
    from trainer.train import build_module

    from shared.manifest import read_manifest
    from shared.model_store import resolve_artifact, write_artifact

    base = read_manifest(resolve_artifact(ROOT / "models", "baseline"))
    torch.manual_seed(seed)
    module = build_module(
        TrainConfig(hiddens=[64, 64]),
        gym.spaces.Box(-np.inf, np.inf, (size,), np.float32),
        gym.spaces.Discrete(3),
    )
    onnx_bytes = export_onnx(PolicyHead(module, "PPO", True), size)
    manifest = msgspec.structs.replace(
        base,
        version=f"mlp_{seed}",
        algorithm="PPO",
        action_meaning="argmax over the PPO policy's action logits -> target position",
    )
    return write_artifact(root, manifest, onnx_bytes)


def _lstm_artifact(root: Path, size: int) -> Path:
    """An LSTM (cell 64) artifact on the baseline's manifest, as ``trainer.study`` writes one."""
    import gymnasium as gym
    import msgspec
    from trainer.policies import PolicyConfig, build_policy_module
    from trainer.policies.onnx import export_stateful, policy_spec

    from shared.manifest import read_manifest
    from shared.model_store import resolve_artifact, write_artifact

    base = read_manifest(resolve_artifact(ROOT / "models", "baseline"))
    policy = PolicyConfig(kind="lstm", lstm_cell_size=64)
    space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
    module = build_policy_module(policy, space, gym.spaces.Discrete(3), seed=0)
    manifest = msgspec.structs.replace(
        base, version="lstm_served", algorithm="PPO", policy=policy_spec(module, policy)
    )
    return write_artifact(root, manifest, export_stateful(module, "lstm", size))


def _per_bar(model: Any, ohlcv: np.ndarray) -> list[float]:
    """Seconds of the service's per-bar work (features -> observation -> decision) per bar."""
    from shared.features import FeaturePipeline
    from shared.observation import build_observation

    online = FeaturePipeline().online()
    state = model.initial_state() if model.stateful else None
    position, out = 0.0, []
    for o, h, lo, c, v in ohlcv.tolist():
        t0 = time.perf_counter()
        row = online.update(o, h, lo, c, v)
        if row is None:
            continue
        obs = build_observation(model.normaliser.transform(row), position)
        if state is not None:
            targets, nxt = model.step(obs[None, :], [state])
            position, state = targets[0], nxt[0]
        else:
            position = model.decide(obs)
        out.append(time.perf_counter() - t0)
    return out


def bench_policies(env: dict[str, str] | None = None, quick: bool = False) -> list[dict[str, Any]]:
    import gymnasium as gym
    import torch
    from trainer.ensemble import build_ensemble
    from trainer.policies import PolicyConfig, build_policy_module
    from trainer.policies.onnx import OnnxStepper, export_stateful, policy_spec

    from shared.features import FeaturePipeline
    from shared.loaded_model import load_artifact

    torch.set_num_threads(1)
    n = 2_000 if quick else 10_000
    size = len(FeaturePipeline().names) + 1
    obs = np.random.default_rng(0).normal(0.0, 1.0, size=(1, size)).astype(np.float32)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        members = [_mlp_member(root, seed, size) for seed in (1, 2, 3)]
        mlp = load_artifact(members[0])
        mlp_p50 = float(np.percentile(_time(lambda: mlp.decide(obs[0]), n), 50)) * 1e6
        baseline = {"name": "PPO MLP [64,64] LoadedModel.decide", "value": round(mlp_p50, 3)}

        space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        for kind, policy in (
            ("lstm", PolicyConfig(kind="lstm", lstm_cell_size=64)),
            ("attention", PolicyConfig(kind="attention", window=16, d_model=32)),
        ):
            module = build_policy_module(policy, space, gym.spaces.Discrete(3), seed=0)
            stepper = OnnxStepper(export_stateful(module, kind, size), policy_spec(module, policy))
            state = {"s": stepper.initial_state(1, size)}

            def step(stepper: OnnxStepper = stepper, state: dict[str, Any] = state) -> int:
                logits, state["s"] = stepper.step(obs, state["s"])
                return int(np.argmax(logits[0]))

            detail = (
                "cell 64, state carried"
                if kind == "lstm"
                else "W=16, d_model 32, 1 block, window shifted per call"
            )
            rows.append(
                latency_row(
                    f"onnx_call_{kind}",
                    _time(step, n),
                    unit="us",
                    baseline=baseline,
                    goal="p50 < 1 ms (a daily bar's budget is seconds)",
                    note=f"{kind} policy, {detail}; seeded random weights",
                )
            )
        ensemble = load_artifact(build_ensemble(members, root, version="ensemble_3"))
        rows.append(
            latency_row(
                "onnx_call_ensemble",
                _time(lambda: ensemble.decide(obs[0]), n),
                unit="us",
                baseline=baseline,
                goal="p50 < 3x one member",
                note="LoadedModel.decide of 3 PPO MLP members in one graph (mean probability)",
            )
        )
        from shared.data import load_bars

        btc = load_bars("crypto", "BTC")
        ohlcv = btc[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)[: n + 500]
        lstm = load_artifact(_lstm_artifact(root, size))
        mlp_bar = float(np.percentile(_per_bar(mlp, ohlcv), 50)) * 1e6
        rows.append(
            latency_row(
                "bar_work_lstm",
                _per_bar(lstm, ohlcv),
                unit="us",
                baseline={"name": "same per-bar work, PPO MLP [64,64]", "value": round(mlp_bar, 3)},
                goal="p50 < 1 ms (bar_to_signal_1 budget: 0.3 ms p50 incl. the bus)",
                note="features + normalise + observation + StatefulModel.step (cell 64, state "
                "carried); the bus hop of bar_to_signal_1 comes on top",
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_policies")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(bench_policies(None, args.quick), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
