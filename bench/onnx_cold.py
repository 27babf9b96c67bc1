"""What a lone bar's ONNX call costs after a sleep, against the same network in numpy and a no-op.

``python -m bench.onnx_cold [--model DIR] [--calls N] [--sleep-ms S]`` times three callables on one
observation, back to back and with a ``time.sleep`` before each call (as inference's call on a
lone bar follows an idle wait):

* ``onnxruntime``: ``LoadedModel.outputs`` of the model folder, the session inference serves with
  (``shared.loaded_model``: one intra-op thread, one inter-op thread, sequential);
* ``numpy``: the same network (``bench.onnx_rebuild``: the graph evaluated op by op from the ONNX
  initialisers; the script checks its logits against onnxruntime's before timing);
* ``no-op``: a Python call that returns its argument.

The difference between the two columns is what the sleep costs each callable (cold caches, the
CPU's wake-up); it is the evidence behind README's *Why bar_to_signal_1 p50 <= 1.2x is out of
reach here*. Not a benchmark row: run it on a quiet machine and read the columns side by side.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.onnx_rebuild import numpy_forward
from shared.loaded_model import load_artifact

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "models" / "example"


def _default_model() -> Path:
    found = sorted(EXAMPLE.glob("*/model.onnx"))
    if not found:
        raise SystemExit(f"no model.onnx under {EXAMPLE}; pass --model DIR")
    return found[-1]


def _times_us(call: Callable[[], Any], calls: int, sleep_s: float) -> tuple[float, float]:
    samples = []
    for _ in range(calls):
        if sleep_s:
            time.sleep(sleep_s)
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    return float(np.percentile(samples, 50)) / 1e3, float(np.percentile(samples, 99)) / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, help="a model folder (default: the packaged example)")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--sleep-ms", type=float, default=1.0)
    args = ap.parse_args()
    path = args.model / "model.onnx" if args.model else _default_model()

    model = load_artifact(path.parent)
    obs = np.random.default_rng(0).standard_normal((1, model.size)).astype(np.float32)
    forward = numpy_forward(path)
    if not np.allclose(forward(obs), model.outputs(obs), rtol=1e-4, atol=1e-5):
        raise SystemExit("the numpy rebuild does not match onnxruntime's logits")

    callables: dict[str, Callable[[], Any]] = {
        "onnxruntime": lambda: model.outputs(obs),
        "numpy": lambda: forward(obs),
        "no-op": lambda: obs,
    }
    print(f"model {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}; {args.calls} "
          f"calls each; microseconds p50 / p99")  # fmt: skip
    print(f"{'callable':<12} {'back to back':>16} {f'after {args.sleep_ms:g} ms sleep':>22}")
    for label, call in callables.items():
        _times_us(call, 200, 0.0)  # warm-up
        hot = _times_us(call, args.calls, 0.0)
        cold = _times_us(call, args.calls, args.sleep_ms / 1e3)
        print(f"{label:<12} {hot[0]:>7.1f} / {hot[1]:>6.1f} {cold[0]:>12.1f} / {cold[1]:>6.1f}")


if __name__ == "__main__":
    main()
