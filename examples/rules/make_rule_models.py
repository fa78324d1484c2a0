#!/usr/bin/env python3
"""Small generated models, one per plan rule that real-world models taught us (see fleet.toml here):

- shared_dims.onnx: input x [-1, 3, '?', '?'] (two dims with one name, as some exporters write
  them) -> Conv -> GlobalAveragePool. TensorRT ties the '?' dims: a profile with H != W needs them
  renamed (fleetbuild does that by default).
- lstm.onnx: an LSTM over x [seq, 1, 16]. TensorRT-RTX lowers it to GEMM inside a Loop, and has no
  FP32 GEMM for Turing (T4).
- nonzero.onnx: NonZero on x [4, 8]. Not in TensorRT 8.2's ONNX parser (the Jetson Nano's), and
  TensorRT-RTX needs a plugin for it that it does not ship.
- reshape64.onnx: x [batch, d] reshaped to [batch, 8, 8]: only d = 64 runs (`--check-shapes`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inputs, outputs, initializers, opset: int, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fleetbuild-rules")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def shared_dims() -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.2, "w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 8, 1, 1])], weights, 13, "shared_dims")


def lstm(hidden: int = 16, features: int = 16) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    weights = [
        numpy_helper.from_array((rng.standard_normal((1, 4 * hidden, features)) * 0.1).astype(np.float32), "W"),
        numpy_helper.from_array((rng.standard_normal((1, 4 * hidden, hidden)) * 0.1).astype(np.float32), "R"),
        numpy_helper.from_array(np.zeros((1, 8 * hidden), np.float32), "B"),
    ]
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "h"], hidden_size=hidden)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", 1, features])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["seq", 1, 1, hidden]),
                   helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 1, hidden])], weights, 13, "lstm")


def nonzero() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("NonZero", ["r"], ["idx"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                  [helper.make_tensor_value_info("idx", TensorProto.INT64, [2, "n"])], [], 13, "nonzero")


def reshape64() -> onnx.ModelProto:
    shape = numpy_helper.from_array(np.array([-1, 8, 8], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "d"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 8])], [shape], 13, "reshape64")


MODELS = {"shared_dims": shared_dims, "lstm": lstm, "nonzero": nonzero, "reshape64": reshape64}


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in MODELS.items():
        path = directory / f"{name}.onnx"
        tmp = path.with_suffix(".onnx.tmp")
        onnx.save(make(), str(tmp))
        tmp.replace(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "models"
    for written in write_all(out):
        print(f"wrote {written}")
