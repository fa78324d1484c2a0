"""Nodes whose inputs disagree on a type the op's schema says they share.

onnxconverter-common's fp16 conversion can leave a node with a float16 weight and a float input (seen in
an If branch of a real model: TensorRT-RTX then says "IConvolutionLayer `input` and `kernel` must be
of same type" and "Output shape can not be computed"). ONNX Runtime would refuse the model too, but
only the first such node. Here every node (subgraphs included) is checked: types are inferred afresh
(the converter's own value_info is what may be wrong) and each input's element type is compared with
the others bound to the same type parameter of the op's schema.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from fleetbuild.models.onnxinfo import all_graphs


class Mismatch(NamedTuple):
    node: str
    op: str
    param: str
    types: tuple[str, ...]
    half_inputs: tuple[str, ...] = ()          # its inputs of that param that are float16

    def text(self) -> str:
        return f"{self.op} node {self.node} ({self.param}: {' and '.join(self.types)})"


def mixed_types(model: Any) -> list[Mismatch]:
    """The default-domain nodes of `model` (a ModelProto, not modified) whose inputs bind one type
    parameter to several element types."""
    import onnx
    from onnx import defs, shape_inference

    fresh = onnx.ModelProto()
    fresh.CopyFrom(model)
    for graph in all_graphs(fresh.graph):
        del graph.value_info[:]
    try:
        inferred = shape_inference.infer_shapes(fresh, strict_mode=False)
    except Exception:
        return []
    types: dict[str, int] = {}
    for graph in all_graphs(inferred.graph):
        for value in list(graph.input) + list(graph.output) + list(graph.value_info):
            if value.type.tensor_type.elem_type:
                types[value.name] = value.type.tensor_type.elem_type
        for tensor in graph.initializer:
            types[tensor.name] = tensor.data_type
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value" and attr.HasField("t"):
                        types[node.output[0]] = attr.t.data_type
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    found = []
    for graph in all_graphs(inferred.graph):
        for node in graph.node:
            if (node.domain or "") not in ("", "ai.onnx"):
                continue
            try:
                schema = defs.get_schema(node.op_type, opset, "")
            except Exception:
                continue
            if not schema.inputs:
                continue
            bound: dict[str, dict[str, int]] = {}
            for index, name in enumerate(node.input):
                formal = schema.inputs[min(index, len(schema.inputs) - 1)]
                if name and name in types and not formal.type_str.startswith(("tensor(", "seq(", "optional(")):
                    bound.setdefault(formal.type_str, {})[name] = types[name]
            for param, seen in bound.items():
                if len(set(seen.values())) > 1:
                    names = tuple(sorted({onnx.TensorProto.DataType.Name(t).lower() for t in seen.values()}))
                    half = tuple(name for name, kind in seen.items() if kind == onnx.TensorProto.FLOAT16)
                    found.append(Mismatch(node.name, node.op_type, param, names, half))
    return found
