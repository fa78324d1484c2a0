"""FP16 conversion with onnxconverter-common, checked and repaired for TensorRT's strongly typed
builders, and an fp32 emulation of it for measuring accuracy on ONNX Runtime."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from fleetbuild.models.onnxinfo import all_graphs, all_nodes
from fleetbuild.errors import ConversionError


FP16_ROUNDS = 4              # re-conversions with more nodes kept in fp32 before giving up


def to_fp16(source: Path, dest: Path, label: str = "") -> list[str]:
    """FP16 with graph inputs and outputs kept float32; returns notes of what was kept in fp32.

    onnxconverter-common leaves the model's own Cast(to=float) nodes alone, so a tensor cast from int
    to float can meet fp16 weights (TensorRT: "IMatrixMultiplyLayer must have same input types"):
    such a cast is made a cast to float16 when a node it feeds also takes an fp16 tensor. Casts that
    feed only other casts (the converter's own, around ops it keeps in float) stay as they are.
    A node still left with mixed float/float16 inputs (the converter misses some, e.g. after a Relu
    of such a cast, or inside If branches) is kept in fp32 (the converter's node block list) and the
    model converted again; where the converter still hands a kept node a float16 weight, a Cast to
    float is put in front of it. One that stays mixed fails the conversion, naming the node."""
    import onnx
    from onnxconverter_common import float16

    from fleetbuild.models.typecheck import mixed_types

    label = label or source.name
    try:
        model = onnx.load(str(source))
        for index, node in enumerate(all_nodes(model.graph)):
            if not node.name:                  # the block list names nodes
                node.name = f"{node.op_type}__{index}"
        casts = {node.name for node in all_nodes(model.graph) if node.op_type == "Cast"}
        blocked: list[str] = []
        for _ in range(FP16_ROUNDS):
            converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked)
            _fix_float_casts(converted, casts)
            mixed = mixed_types(converted)
            if mixed and all(m.node in blocked for m in mixed):
                _cast_to_float(converted, mixed)
                mixed = mixed_types(converted)
            if not mixed:
                break
            blocked += [m.node for m in mixed if m.node not in blocked]
        else:
            raise ConversionError(f"FP16 conversion of {label} leaves mixed float/float16 inputs on "
                                  + ", ".join(m.text() for m in mixed[:3]) + (" ..." if len(mixed) > 3 else ""))
        onnx.save(converted, str(dest))
    except ConversionError:
        raise
    except Exception as err:
        raise ConversionError(f"FP16 conversion of {label} failed: {type(err).__name__}: {err}") from err
    if not blocked:
        return []
    return [f"fp16: kept {len(blocked)} node{'s' if len(blocked) > 1 else ''} in fp32, where the converter left "
            f"float and float16 inputs mixed: {', '.join(_short(name) for name in blocked[:5])}"
            + (" ..." if len(blocked) > 5 else "")]


def _cast_to_float(model: Any, mixed: Sequence[Any]) -> None:
    """A Cast(to=float) in front of each float16 input of the kept-in-fp32 nodes that still mix types."""
    import onnx
    from onnx import helper

    wanted = {m.node: set(m.half_inputs) for m in mixed}
    for graph in all_graphs(model.graph):
        nodes = []
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name and name in wanted.get(node.name, ()):
                    cast = f"{node.name}__{index}__to_fp32"
                    nodes.append(helper.make_node("Cast", [name], [cast], to=onnx.TensorProto.FLOAT, name=cast))
                    node.input[index] = cast
            nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)


def _short(name: str) -> str:
    """A node name for a note: TensorFlow-converted names run to hundreds of characters."""
    return name if len(name) <= 60 else name[:57] + "..."


def _fix_float_casts(model: Any, original_casts: set[str]) -> None:
    import onnx

    half = onnx.TensorProto.FLOAT16
    fp16 = {t.name for t in model.graph.initializer if t.data_type == half}
    fp16 |= {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == half}
    consumers: dict[str, list[Any]] = {}
    for node in all_nodes(model.graph):
        if node.op_type == "Constant" and any(a.name == "value" and a.t.data_type == half for a in node.attribute):
            fp16.update(node.output)
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {value.name for value in model.graph.output}
    for node in all_nodes(model.graph):
        if node.op_type != "Cast" or node.name not in original_casts or set(node.output) & outputs:
            continue
        to = next((a for a in node.attribute if a.name == "to"), None)
        if to is None or to.i != onnx.TensorProto.FLOAT:
            continue
        if any(user.op_type != "Cast" and any(name in fp16 for name in user.input if name != node.output[0])
               for user in consumers.get(node.output[0], ())):
            to.i = half
        else:                        # the converter marked its output fp16 all the same: say float
            for value in model.graph.value_info:
                if value.name in node.output and value.type.tensor_type.elem_type == half:
                    value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def fp16_emulation(source: Path, dest: Path) -> None:
    """An fp32 model that computes what the fp16 conversion computes, for ONNX Runtime on the CPU.

    ONNX Runtime runs most fp16 ops in fp32 and drops the rounding between them, so the converted
    model itself hides fp16's rounding and overflow. Here every weight is rounded as the converter
    rounds it (tiny values to 1e-7, large ones to 1e4) and every float tensor of the main graph is
    rounded through float16 after the node that makes it (inputs too; ops the converter keeps in
    float32 are left alone): a value above 65504 becomes inf, as in the engine.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from onnxconverter_common import float16

    try:
        model = onnx.load(str(source))
        for tensor in model.graph.initializer:
            if tensor.data_type == onnx.TensorProto.FLOAT:
                values = numpy_helper.to_array(tensor)
                rounded = float16.convert_np_to_float16(np.atleast_1d(values)).astype(np.float32)
                tensor.CopyFrom(numpy_helper.from_array(rounded.reshape(values.shape), tensor.name))
        inferred = onnx.shape_inference.infer_shapes(model)
        floats = {v.name for v in list(inferred.graph.value_info) + list(inferred.graph.input)
                  + list(inferred.graph.output) if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
        initializers = {t.name for t in model.graph.initializer}
        blocked = set(float16.DEFAULT_OP_BLOCK_LIST)
        renamed: dict[str, str] = {}
        nodes = []

        def rounding(name: str) -> list:
            raw, half = f"{name}__fp32", f"{name}__fp16"
            renamed[name] = raw
            return [helper.make_node("Cast", [raw], [half], to=onnx.TensorProto.FLOAT16, name=f"{name}__round16"),
                    helper.make_node("Cast", [half], [name], to=onnx.TensorProto.FLOAT, name=f"{name}__round32")]

        for value in model.graph.input:
            if value.name in floats and value.name not in initializers:
                nodes += [helper.make_node("Cast", [value.name], [f"{value.name}__fp16"], to=onnx.TensorProto.FLOAT16),
                          helper.make_node("Cast", [f"{value.name}__fp16"], [f"{value.name}__rounded"],
                                           to=onnx.TensorProto.FLOAT)]
                renamed[value.name] = f"{value.name}__rounded"
        inputs_renamed = dict(renamed)
        for node in model.graph.node:
            node.input[:] = [inputs_renamed.get(name, name) for name in node.input]
            extra = []
            if node.op_type not in blocked:
                for index, name in enumerate(node.output):
                    if name in floats:
                        extra += rounding(name)
                        node.output[index] = renamed[name]
            nodes += [node] + extra
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.save(model, str(dest))
    except Exception as err:
        raise ConversionError(f"fp16 emulation of {source.name} failed: {type(err).__name__}: {err}") from err
