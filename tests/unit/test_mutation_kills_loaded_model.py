"""Kill mutants of inference's decision core, ``shared.loaded_model.LoadedModel`` (issue 17).

Real ONNX graphs (``obs @ W + b``) whose outputs are chosen in the test, so the expected target
of every observation is known without running the model: ties, non-finite outputs, the clip of
a continuous action, batches and a graph with a fixed batch dimension, and a policy that reads
only its position input.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.manifest import ActionSpace
from shared.observation import observation_names
from tests.model_artifacts import linear_onnx, make_artifact, position_flipping_onnx

pytestmark = pytest.mark.unit

SIZE = len(observation_names(FeaturePipeline()))


def position_logits(out_of_position: list[float], bias: list[float]) -> bytes:
    """Logits = position x ``out_of_position`` + ``bias`` (every other input ignored)."""
    weights = np.zeros((SIZE, len(bias)), dtype=np.float32)
    weights[-1] = out_of_position
    return linear_onnx(weights, np.asarray(bias, dtype=np.float32))


def obs_with(position: float) -> np.ndarray:
    obs = np.zeros(SIZE, dtype=np.float32)
    obs[-1] = position
    return obs


def fixed_batch(onnx_bytes: bytes) -> bytes:
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    for value in (*model.graph.input, *model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    return bytes(model.SerializeToString())


def test_a_tie_goes_to_the_first_action_like_argmax(tmp_path: Path) -> None:
    # logits at position p: [p, 1, 1 - p]; p = 0: tie of actions 1 and 2 -> action 1 (flat);
    # p = 1: tie of actions 0 and 1 -> action 0 (short); p = 0.5: all 0.5/1/0.5 -> flat
    model = load_artifact(
        make_artifact(tmp_path, "ties", onnx_bytes=position_logits([1, 0, -1], [0, 1, 1]))
    )
    assert model.decide(obs_with(0.0)) == 0.0
    assert model.decide(obs_with(1.0)) == -1.0
    assert model.decide(obs_with(2.0)) == -1.0  # logits 2, 1, -1
    assert model.decide(obs_with(-1.0)) == 1.0  # logits -1, 1, 2
    batch = np.stack([obs_with(p) for p in (0.0, 1.0, 2.0, -1.0)])
    np.testing.assert_array_equal(model.decide_batch(batch), [0.0, -1.0, -1.0, 1.0])


def test_non_finite_outputs_are_flat_and_counted(tmp_path: Path) -> None:
    model = load_artifact(
        make_artifact(tmp_path, "inf", onnx_bytes=position_logits([0, 0, 1], [0, 0, 0]))
    )
    assert model.nonfinite_outputs == 0
    assert model.decide(obs_with(1.0)) == 1.0
    assert model.decide(obs_with(math.inf)) == 0.0  # logit +inf: broken, never a position
    assert model.nonfinite_outputs == 1
    assert model.decide(obs_with(math.nan)) == 0.0
    assert model.nonfinite_outputs == 2
    batch = np.stack([obs_with(1.0), obs_with(math.inf), obs_with(-math.inf), obs_with(1.0)])
    np.testing.assert_array_equal(model.decide_batch(batch), [1.0, 0.0, 0.0, 1.0])
    assert model.nonfinite_outputs == 4  # one per broken row


def test_continuous_actions_are_clipped_to_the_manifest_bounds(tmp_path: Path) -> None:
    weights = np.zeros((SIZE, 1), dtype=np.float32)
    weights[-1, 0] = 1.0  # action = position
    folder = make_artifact(
        tmp_path,
        "cont",
        onnx_bytes=linear_onnx(weights, np.zeros(1, dtype=np.float32), output_name="action"),
        action_space=ActionSpace(kind="continuous", low=-0.25, high=0.75),
        onnx_output="action",
    )
    model = load_artifact(folder)
    assert [model.decide(obs_with(p)) for p in (-1.0, -0.25, 0.5, 0.75, 1.0)] == [
        -0.25, -0.25, 0.5, 0.75, 0.75,
    ]  # fmt: skip
    batch = np.stack([obs_with(p) for p in (-1.0, 0.5, 1.0)])
    np.testing.assert_array_equal(model.decide_batch(batch), [-0.25, 0.5, 0.75])
    assert model.decide(obs_with(0.5).astype(np.float64)) == 0.5  # float64 in: same answer
    assert model.decide(obs_with(math.nan)) == 0.0 and model.nonfinite_outputs == 1


def test_the_policy_sees_the_position_it_is_given(tmp_path: Path) -> None:
    model = load_artifact(make_artifact(tmp_path, "flip", onnx_bytes=position_flipping_onnx(SIZE)))
    assert model.decide(obs_with(0.0)) == 1.0  # flat -> long
    assert model.decide(obs_with(1.0)) == 0.0  # long -> flat
    np.testing.assert_array_equal(
        model.decide_batch(np.stack([obs_with(0.0), obs_with(1.0), obs_with(0.0)])),
        [1.0, 0.0, 1.0],
    )


def test_outputs_and_batches_have_their_shapes(tmp_path: Path) -> None:
    model = load_artifact(
        make_artifact(tmp_path, "shape", onnx_bytes=position_logits([1, 2, 3], [0, 0, 0]))
    )
    one = model.outputs(obs_with(1.0).astype(np.float64))
    assert one.shape == (1, 3) and one.dtype == np.float64
    np.testing.assert_array_equal(one, [[1.0, 2.0, 3.0]])
    many = model.outputs(np.stack([obs_with(1.0), obs_with(2.0)]))
    np.testing.assert_array_equal(many, [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    empty = model.decide_batch(np.zeros((0, SIZE)))
    assert empty.shape == (0,) and empty.dtype == np.float64
    with pytest.raises(ValueError, match=r"expected a batch of observations \(n, size\)"):
        model.decide_batch(obs_with(1.0))
    single = model.decide_batch(obs_with(-1.0)[None, :])
    assert single.dtype == np.float64 and single.tolist() == [-1.0]


def test_a_fixed_batch_graph_decides_row_by_row(tmp_path: Path) -> None:
    onnx_bytes = fixed_batch(position_logits([1, 0, -1], [0, 0.5, 0]))
    model = load_artifact(make_artifact(tmp_path, "fixed", onnx_bytes=onnx_bytes))
    assert not model.batchable
    batch = np.stack([obs_with(p) for p in (1.0, 0.0, -1.0)])
    np.testing.assert_array_equal(model.decide_batch(batch), [-1.0, 0.0, 1.0])


class CountingSession:
    """An onnxruntime session that counts its ``run`` calls."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    def run(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self.inner.run(*args, **kwargs)  # type: ignore[attr-defined]


def test_a_batch_is_one_onnx_call_and_a_model_batches_by_default(tmp_path: Path) -> None:
    from shared.loaded_model import LoadedModel

    folder = make_artifact(tmp_path, "count", onnx_bytes=position_logits([1, 0, -1], [0, 0.5, 0]))
    loaded = load_artifact(folder)
    session = CountingSession(loaded._session)
    # built without saying: batchable (a symbolic batch dimension is the normal export)
    model = LoadedModel(loaded.path, loaded.manifest, loaded.normaliser, session, "obs", "logits")
    assert model.batchable and model.path == folder and model.size == SIZE
    assert model.describe()["path"] == str(folder) and model.describe()["version"] == "count"
    for n in (2, 3):
        session.calls = 0
        batch = np.stack([obs_with(p) for p in (1.0, 0.0, -1.0)[:n]])
        np.testing.assert_array_equal(model.decide_batch(batch), [-1.0, 0.0, 1.0][:n])
        assert session.calls == 1, n
    session.calls = 0
    assert model.decide_batch(obs_with(-1.0)[None, :]).tolist() == [1.0]
    assert session.calls == 1


def test_the_manifest_output_is_read_not_the_first_one(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.zeros((SIZE, 3), dtype=np.float32)
    weights[-1] = [1.0, 0.0, -1.0]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["obs", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logits"]),
            helper.make_node("Neg", ["logits"], ["aux"]),
        ],
        "two_outputs",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", SIZE])],
        [  # "aux" (= -logits) first: a model that read output 0 would pick the opposite side
            helper.make_tensor_value_info("aux", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
        ],
        [
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.zeros(3, dtype=np.float32), "b"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(proto)
    folder = make_artifact(tmp_path, "two", onnx_bytes=proto.SerializeToString())
    model = load_artifact(folder)
    assert model.decide(obs_with(1.0)) == -1.0  # logits 1, 0, -1: short
    assert model.decide(obs_with(-1.0)) == 1.0
    batch = np.stack([obs_with(1.0), obs_with(-1.0)])
    np.testing.assert_array_equal(model.decide_batch(batch), [-1.0, 1.0])
    np.testing.assert_array_equal(model.outputs(obs_with(1.0)), [[1.0, 0.0, -1.0]])


# --------------------------------------------------------------------------- the regime gate
# A gated model (shared.regime_gate through LoadedModel): caps (0.5, 0.25) on the two HMM
# states of the regime pipeline, a normaliser chosen here (every hmm column: mean 0.25, std 0.25,
# so a probability p is the z-score 4p - 1 exactly), and a policy that reads only its position:
# position -1 -> long, 0 -> flat, +1 -> short. The expected target of every observation is the
# policy's side clipped to the cap of the state the test made most probable.
GATE_CAPS = (0.5, 0.25)


def gated_folder(root: Path, caps: tuple[float, ...] = GATE_CAPS) -> tuple[Path, list[int]]:
    """The gated artifact and the observation columns of its two HMM probabilities."""
    from shared.normaliser import Normaliser
    from shared.regime import regime_names
    from tests.regime_artifacts import regime_config

    config = regime_config()
    pipe = FeaturePipeline(config)
    hmm = [pipe.index(n) for n in regime_names(config.regime)[:2]]  # type: ignore[arg-type]
    mean, std = np.zeros(len(pipe.names)), np.ones(len(pipe.names))
    mean[hmm], std[hmm] = 0.25, 0.25
    size = len(pipe.names) + 1
    weights = np.zeros((size, 3), dtype=np.float32)
    weights[-1] = [1.0, 0.0, -1.0]
    folder = make_artifact(
        root,
        "gated",
        onnx_bytes=linear_onnx(weights, np.array([0.0, 0.5, 0.0], dtype=np.float32)),
        config=config,
        normaliser=Normaliser(mean, std, pipe.names).to_dict(),
        regime_caps=list(caps),
    )
    return folder, hmm


def gated_obs(size: int, hmm: list[int], p0: float, p1: float, position: float) -> np.ndarray:
    obs = np.zeros(size, dtype=np.float64)
    obs[hmm] = [4.0 * p0 - 1.0, 4.0 * p1 - 1.0]  # the z-scores of the probabilities
    obs[-1] = position
    return obs


# (p0, p1, position) -> the policy's side (-position, flat at 0) clipped to +-cap of the more
# probable state: state 0 -> 0.5, state 1 -> 0.25
GATE_CASES = [
    (0.9, 0.1, -1.0, 0.5),
    (0.9, 0.1, 1.0, -0.5),
    (0.1, 0.9, -1.0, 0.25),
    (0.3, 0.7, 1.0, -0.25),
    (0.75, 0.25, 0.0, 0.0),
    (0.4, 0.6, 0.0, 0.0),
]


def test_a_gated_model_clips_each_target_to_the_cap_of_the_most_probable_state(
    tmp_path: Path,
) -> None:
    folder, hmm = gated_folder(tmp_path)
    model = load_artifact(folder)
    assert model.gate is not None and model.pipeline is not None
    size = model.size
    rows = [gated_obs(size, hmm, p0, p1, pos) for p0, p1, pos, _ in GATE_CASES]
    want = [w for *_, w in GATE_CASES]
    assert [model.decide(r) for r in rows] == want
    assert [model.decide(r.astype(np.float32)) for r in rows] == want
    # one observation as a (1, size) row: the same answer as the 1-d observation
    assert [model.decide(r[None, :]) for r in rows] == want
    batch = np.stack(rows)
    np.testing.assert_array_equal(model.decide_batch(batch), want)
    np.testing.assert_array_equal(model.decide_batch(batch.astype(np.float32)), want)
    # the same graph without caps: the policy's side, unclipped
    plain = load_artifact(gated_folder(tmp_path / "plain", caps=())[0])
    assert plain.gate is None
    assert [plain.decide(r) for r in rows] == [1.0, -1.0, 1.0, -1.0, 0.0, 0.0]


def test_a_gated_batch_reads_the_float32_observation_the_model_sees(tmp_path: Path) -> None:
    # p0 = 0.5 + 2.5e-13 and p1 = 0.5 - 2.5e-13 in float64; the model's input is float32,
    # where both z-scores round to 1.0: a tie, which takes the smaller cap (0.25). decide()
    # reads the float32 row, and decide_batch(row i) must equal decide(obs[i]).
    folder, hmm = gated_folder(tmp_path)
    model = load_artifact(folder)
    near_tie = gated_obs(model.size, hmm, 0.5, 0.5, -1.0)
    near_tie[hmm] = [1.0 + 1e-12, 1.0 - 1e-12]
    assert np.float32(near_tie[hmm[0]]) == np.float32(near_tie[hmm[1]]) == 1.0
    clear = gated_obs(model.size, hmm, 0.9, 0.1, -1.0)
    batch = np.stack([near_tie, clear])  # float64, two rows: the batched path
    assert model.decide(near_tie) == 0.25
    np.testing.assert_array_equal(model.decide_batch(batch), [0.25, 0.5])


def test_a_model_built_directly_has_no_pipeline_until_load_artifact_sets_it(
    tmp_path: Path,
) -> None:
    from shared.loaded_model import LoadedModel

    loaded = load_artifact(
        make_artifact(tmp_path, "pipe", onnx_bytes=position_logits([1, 0, -1], [0, 0.5, 0]))
    )
    assert isinstance(loaded.pipeline, FeaturePipeline)
    direct = LoadedModel(
        loaded.path, loaded.manifest, loaded.normaliser, loaded._session, "obs", "logits"
    )
    assert direct.pipeline is None and direct.gate is None
