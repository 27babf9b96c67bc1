"""An exported policy's graph rebuilt outside onnxruntime, for baselines only.

The policies the trainer exports are chains of ``Gemm`` / ``MatMul`` / ``Add`` / ``Relu`` /
``Tanh``; ``read_graph`` reads such a graph and its initialisers, and ``run_graph`` evaluates it
with any array library's ``@``, ``+`` and activation functions (numpy or torch). The ``onnx_call``
row compares onnxruntime with torch eager on the same network this way, and
``bench.onnx_cold`` with numpy. Serving never uses this: inference runs the ONNX file in
onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OPS = ("Gemm", "MatMul", "Add", "Relu", "Tanh")


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[str, ...]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Graph:
    input: str
    output: str
    weights: dict[str, np.ndarray]
    nodes: tuple[Node, ...]


def read_graph(path: Path) -> Graph:
    """The graph of ``path`` (a ``model.onnx``); ValueError naming an op outside ``OPS``."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    nodes = []
    for node in graph.node:
        if node.op_type not in OPS:
            raise ValueError(f"{path}: op {node.op_type} is not rebuilt here ({', '.join(OPS)})")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        nodes.append(Node(node.op_type, tuple(node.input), node.output[0], attrs))
    return Graph(
        input=graph.input[0].name,
        output=graph.output[0].name,
        weights={t.name: numpy_helper.to_array(t).copy() for t in graph.initializer},
        nodes=tuple(nodes),
    )


def run_graph(
    graph: Graph,
    x: Any,
    weights: dict[str, Any],
    tanh: Callable[[Any], Any],
    relu: Callable[[Any], Any],
) -> Any:
    """Evaluate ``graph`` on ``x`` with ``weights`` (the graph's, converted to x's library)."""
    values: dict[str, Any] = {graph.input: x, **weights}
    for node in graph.nodes:
        args = [values[name] for name in node.inputs if name]
        if node.op == "Gemm":
            b = args[1].T if node.attrs.get("transB") else args[1]
            out = args[0] @ b + (args[2] if len(args) > 2 else 0)
        elif node.op == "MatMul":
            out = args[0] @ args[1]
        elif node.op == "Add":
            out = args[0] + args[1]
        elif node.op == "Relu":
            out = relu(args[0])
        else:  # Tanh
            out = tanh(args[0])
        values[node.output] = out
    return values[graph.output]


def numpy_forward(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The network of ``path`` as a numpy function of one observation batch (float32)."""
    graph = read_graph(path)
    relu: Callable[[np.ndarray], np.ndarray] = lambda a: np.maximum(a, 0)  # noqa: E731
    return lambda x: run_graph(graph, x, graph.weights, np.tanh, relu)
