"""What the parser rules need to know about single nodes, read once per model at inspection: for
the ops whose TensorRT restrictions the graph can decide, each node's relevant attributes, where
each input comes from (initializer, Constant node, computed, absent) with its element type (ONNX
type inference on the graph as it will be built) and, for small constant inputs, whether they are
all zero and their values; which outputs anything uses; and the dims of the input whose rank matters.

The facts are plain JSON (cached with the rest of the inspection); the rules that read them are
fleetbuild.plan.rules.parser.
"""
from __future__ import annotations

from typing import Any, Iterator

CHECKED_OPS = ("Conv", "ConvTranspose", "DequantizeLinear", "QuantizeLinear", "Squeeze", "Unsqueeze", "Slice", "Pad", "CumSum", "OneHot",
               "MaxPool", "AveragePool", "LpPool", "Resize", "LSTM", "GRU", "RNN", "ScatterND", "TopK", "Dropout",
               "LayerNormalization", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
               "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
               "ReduceProd", "ReduceSum", "ReduceSumSquare")
STRING_CONSTANTS = ("sparse_value", "value_string", "value_strings")      # what TensorRT's Constant refuses
SMALL = 64                # constant inputs up to this many elements keep their values


def collect(model: Any) -> tuple[dict, ...]:
    """The node facts of `model` (a loaded ModelProto; external data not needed), subgraphs included:
    a node inside an If branch or a Loop body has "in" naming where ("If node cond, then_branch")."""
    import onnx

    graphs = list(_graphs(model.graph, ""))
    if not any(node.op_type in CHECKED_OPS or node.op_type == "Constant" for graph, _ in graphs for node in graph.node):
        return ()
    try:
        typed = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:                     # a graph ONNX cannot type: the rules see no types
        typed = model.graph
    types = {}
    for graph, _ in _graphs(typed, ""):
        for value in list(graph.input) + list(graph.output) + list(graph.value_info):
            kind = value.type.tensor_type
            types[value.name] = (onnx.TensorProto.DataType.Name(kind.elem_type).lower() if kind.elem_type else None,
                                 tensor_dims(kind))
    initializers = {t.name: t for graph, _ in graphs for t in graph.initializer}
    constants = {node.output[0]: _constant_tensor(node) for graph, _ in graphs for node in graph.node
                 if node.op_type == "Constant" and node.output}
    used = {name for graph, _ in graphs for node in graph.node for name in node.input}
    used |= {v.name for graph, _ in graphs for v in graph.output}
    facts = []
    for graph, where in graphs:
        scope = {"in": where} if where else {}
        for index, node in enumerate(graph.node):
            if (node.domain or "") not in ("", "ai.onnx"):
                continue
            if node.op_type == "Constant" and any(a.name in STRING_CONSTANTS for a in node.attribute):
                facts.append({"op": "Constant", "name": node.name or f"#{index}", "attrs": {
                    a.name: True for a in node.attribute}, "inputs": [], "outputs_used": [True], **scope})
                continue
            if node.op_type not in CHECKED_OPS:
                continue
            inputs = [_input(name, initializers, constants, types) for name in node.input]
            facts.append({"op": node.op_type, "name": node.name or f"#{index}", "attrs": _attrs(node),
                          "inputs": inputs, "outputs_used": [bool(o) and o in used for o in node.output], **scope})
    return tuple(facts)


def _graphs(graph: Any, where: str) -> Iterator[tuple[Any, str]]:
    """(graph, where it is) for the graph and every subgraph in it, depth first."""
    yield graph, where
    for index, node in enumerate(graph.node):
        for attr in node.attribute:
            subs = [attr.g] if attr.type == attr.GRAPH else list(attr.graphs)
            for sub in subs:
                here = f"{node.op_type} node {node.name or f'#{index}'}, {attr.name}"
                yield from _graphs(sub, f"{where} / {here}" if where else here)


def tensor_dims(kind: Any) -> list | None:
    """A tensor type's dims: ints, symbolic names, None for unknown; None when it has no shape."""
    if not kind.HasField("shape"):
        return None
    dims: list[Any] = []
    for dim in kind.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def _constant_tensor(node: Any) -> Any:
    for attr in node.attribute:
        if attr.name == "value" and attr.HasField("t"):
            return attr.t
    return None


def _input(name: str, initializers: dict, constants: dict, types: dict) -> dict:
    if not name:
        return {"kind": "absent"}
    tensor = initializers.get(name)
    kind = "initializer" if tensor is not None else "constant" if name in constants else "computed"
    if tensor is None:
        tensor = constants.get(name)
    found: dict[str, Any] = {"name": name, "kind": kind}
    dtype, dims = types.get(name, (None, None))
    if tensor is not None:
        import onnx

        found["dtype"] = onnx.TensorProto.DataType.Name(tensor.data_type).lower()
        found.update(_values(tensor))
    else:
        found["dtype"] = dtype
        found["dims"] = dims
    return found


def _values(tensor: Any) -> dict:
    """{"zero": all elements zero, "values": [...] for small integer tensors}; {} when unreadable
    (external data is not loaded at inspection)."""
    from onnx import numpy_helper

    size = 1
    for dim in tensor.dims:
        size *= dim
    if size > SMALL or tensor.data_location == 1:        # 1: EXTERNAL
        return {}
    try:
        array = numpy_helper.to_array(tensor)
    except Exception:
        return {}
    out: dict[str, Any] = {"zero": bool((array == 0).all())}
    if array.dtype.kind in "iu":
        out["values"] = [int(v) for v in array.reshape(-1)]
    return out


def _attrs(node: Any) -> dict:
    from onnx import helper

    found = {}
    for attr in node.attribute:
        if attr.type in (attr.GRAPH, attr.GRAPHS, attr.TENSOR, attr.TENSORS, attr.SPARSE_TENSOR):
            continue
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, (list, tuple)):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        found[attr.name] = value
    return found
