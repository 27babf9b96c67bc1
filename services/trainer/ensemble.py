"""Ensembles: the top-k seeds or trials combined into ONE ONNX graph that inference serves as one
model (issue 15).

    python -m trainer.ensemble best_models/<v1> best_models/<v2> ... [--top-k K]
        [--by fold_mean_sharpe] [--rule mean_probability] [--out best_models]

The members' graphs are copied into one graph (each under its own name prefix) that reads the
same ``obs`` input; the combination is written in ONNX, so inference needs no change:

- ``mean_probability`` (discrete members): p = mean over members of softmax(member logits);
  output ``logits`` = log(p). Inference's argmax of these logits is the argmax of the mean
  probability (log is monotonic), and softmax(logits) gives p back exactly (p sums to 1). The
  members' outputs must be action logits (PPO/APPO): softmax of DQN Q-values is not a
  probability, so DQN members are refused.
- ``mean_target`` (continuous members): output = mean of the members' targets (the Gaussian
  means inference clips to [low, high]).

The manifest is the first member's (observation, features, normaliser, action space must be
equal for every member; refused otherwise) with ``policy.kind = "ensemble"``, the members'
versions and the rule, and the members' validation numbers under ``member_<i>:`` keys.
Hold-out numbers are not carried over: an ensemble is a new model with its own look.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any, Literal

import msgspec

from shared.manifest import (
    MODEL_FILE,
    ArtifactError,
    ModelManifest,
    PolicySpec,
    Promotion,
    read_manifest,
)
from shared.model_store import write_artifact

Rule = Literal["mean_probability", "mean_target"]
PROBABILITY_FLOOR = 1e-30  # log(0) would be -inf, which inference serves as "flat"


class EnsembleError(ArtifactError):
    """The members cannot be combined; the message says which field differs."""


def _same(field: str, values: list[Any], versions: list[str]) -> None:
    for value, version in zip(values[1:], versions[1:], strict=True):
        if value != values[0]:
            raise EnsembleError(
                f"member {version}: {field} differs from {versions[0]}'s ({value!r} != "
                f"{values[0]!r}); ensemble members must be served on the same input"
            )


def check_members(manifests: list[ModelManifest]) -> Rule:
    """The combination rule the members' action meaning requires; ``EnsembleError`` if they
    cannot be one model (different observation, features, normaliser or actions)."""
    if len(manifests) < 2:
        raise EnsembleError("an ensemble needs at least two members")
    versions = [m.version for m in manifests]
    _same("observation", [m.observation for m in manifests], versions)
    _same("pipeline_fingerprint", [m.pipeline_fingerprint for m in manifests], versions)
    _same("normaliser", [m.normaliser for m in manifests], versions)
    _same("action_space", [m.action_space for m in manifests], versions)
    for m in manifests:
        if m.policy is not None and m.policy.kind != "mlp":
            raise EnsembleError(
                f"member {m.version}: policy.kind {m.policy.kind!r}; only stateless MLP "
                "members combine into one stateless graph"
            )
    if manifests[0].action_space.kind == "continuous":
        return "mean_target"
    for m in manifests:
        if m.algorithm == "DQN" or "Q-values" in m.action_meaning:
            raise EnsembleError(
                f"member {m.version}: outputs Q-values, not action logits; a mean of "
                "softmax(Q) is not a mean of action probabilities"
            )
    return "mean_probability"


def combine_graphs(members: list[bytes], names: list[tuple[str, str]], rule: Rule) -> bytes:
    """One ONNX graph: input ``obs`` -> every member -> ``rule`` -> output ``logits``.

    ``names``: each member's (input, output) names (from its manifest)."""
    import onnx
    from onnx import TensorProto, compose, helper

    models = [onnx.load_from_string(b) for b in members]
    opset = max(
        next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) for m in models
    )
    nodes: list[Any] = []
    inits: list[Any] = []
    outs: list[str] = []
    for i, (model, (inp, out)) in enumerate(zip(models, names, strict=True)):
        prefixed = compose.add_prefix(model, f"m{i}_")
        nodes.append(helper.make_node("Identity", ["obs"], [f"m{i}_{inp}"]))
        nodes.extend(prefixed.graph.node)
        inits.extend(prefixed.graph.initializer)
        if rule == "mean_probability":
            nodes.append(helper.make_node("Softmax", [f"m{i}_{out}"], [f"p{i}"], axis=1))
            outs.append(f"p{i}")
        else:
            outs.append(f"m{i}_{out}")
    if rule == "mean_probability":
        floor = helper.make_tensor("floor", TensorProto.FLOAT, [], [PROBABILITY_FLOOR])
        inits.append(floor)
        nodes += [
            helper.make_node("Mean", outs, ["mean_probability"]),
            helper.make_node("Max", ["mean_probability", "floor"], ["floored"]),
            helper.make_node("Log", ["floored"], ["logits"]),
        ]
    else:
        nodes.append(helper.make_node("Mean", outs, ["logits"]))
    first = models[0].graph
    n_in = first.input[0].type.tensor_type.shape.dim[1].dim_value
    n_out = first.output[0].type.tensor_type.shape.dim[1].dim_value
    graph = helper.make_graph(
        nodes,
        "ensemble",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", n_in or None])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out or None])],
        inits,
    )
    combined = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        ir_version=max(m.ir_version for m in models),
        producer_name="trainer.ensemble",
    )
    onnx.checker.check_model(combined)
    return combined.SerializeToString()


def top_k(manifests: list[ModelManifest], k: int, by: str) -> list[ModelManifest]:
    """The ``k`` members with the highest validation ``by`` (missing/NaN counts as -inf;
    ties keep the given order)."""

    def score(m: ModelManifest) -> float:
        value = m.validation_metrics.get(by)
        return float(value) if value is not None and math.isfinite(value) else -math.inf

    order = sorted(range(len(manifests)), key=lambda i: (-score(manifests[i]), i))
    return [manifests[i] for i in order[:k]]


def build_ensemble(
    folders: list[Path],
    out_root: Path,
    *,
    version: str | None = None,
    k: int | None = None,
    by: str = "fold_mean_sharpe",
) -> Path:
    """Write ``out_root/<version>/`` (model.onnx + manifest.json) combining the top ``k`` (all
    when None) of the artifacts in ``folders``; returns the artifact folder."""
    manifests = [read_manifest(f) for f in folders]
    folder_of = {m.version: f for m, f in zip(manifests, folders, strict=True)}
    chosen = top_k(manifests, k or len(manifests), by)
    rule = check_members(chosen)
    graphs = [(folder_of[m.version] / MODEL_FILE).read_bytes() for m in chosen]
    onnx_bytes = combine_graphs(graphs, [(m.onnx_input, m.onnx_output) for m in chosen], rule)
    now = dt.datetime.now(dt.UTC)
    version = version or f"model_{now:%Y%m%d%H%M%S}_ensemble-of-{len(chosen)}"
    base = chosen[0]
    validation: dict[str, float | None] = {}
    for i, m in enumerate(chosen):
        validation.update({f"member_{i}:{key}": v for key, v in m.validation_metrics.items()})
    meaning = (
        f"mean over {len(chosen)} members of softmax(action logits); output logits = "
        f"log(mean probability), argmax -> target position {base.action_space.action_values}"
        if rule == "mean_probability"
        else f"mean over {len(chosen)} members' Gaussian means, clipped to "
        f"[{base.action_space.low}, {base.action_space.high}] = target position"
    )
    manifest = msgspec.structs.replace(
        base,
        version=version,
        created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        onnx_input="obs",
        onnx_output="logits",
        action_meaning=meaning,
        seeds={f"member_{i}:{key}": v for i, m in enumerate(chosen) for key, v in m.seeds.items()},
        promotion=Promotion(verdict="candidate", reason="ensemble: not gated yet"),
        tune_trial_id="",
        validation_metrics=validation,
        test_metrics={},
        provenance=json.dumps(
            {
                "producer": "trainer.ensemble",
                "members": [m.version for m in chosen],
                "chosen_by": f"top {len(chosen)} of {len(manifests)} by validation {by}",
            },
            sort_keys=True,
        ),
        policy=PolicySpec(
            kind="ensemble",
            members=[m.version for m in chosen],
            combination=rule,
            details={"chosen_by": by, "candidates": len(manifests)},
        ),
    )
    return write_artifact(out_root, manifest, onnx_bytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.ensemble", description=__doc__.split("\n")[0]
    )
    parser.add_argument("members", nargs="+", help="artifact folders (model.onnx + manifest)")
    parser.add_argument("--top-k", type=int, default=None, help="keep the best K (default all)")
    parser.add_argument("--by", default="fold_mean_sharpe", help="validation metric for top-k")
    parser.add_argument("--out", default="best_models", help="model root to write into")
    parser.add_argument("--version", default=None)
    args = parser.parse_args(argv)
    folder = build_ensemble(
        [Path(m) for m in args.members],
        Path(args.out),
        version=args.version,
        k=args.top_k,
        by=args.by,
    )
    print(json.dumps({"artifact": str(folder), "version": folder.name}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
