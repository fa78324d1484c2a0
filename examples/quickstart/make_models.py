#!/usr/bin/env python3
"""Write the quickstart's tiny ONNX models into models/ (no download, no framework needed).

- conv_bn_relu.onnx: Conv -> BatchNormalization -> Relu, static input images [1, 3, 32, 32], opset 13
- dynamic_mlp.onnx:  MatMul -> Add -> Relu -> MatMul, input x [batch, 64] (dynamic batch), opset 17
- two_input.onnx:    (a + b) * w, inputs a and b [1, 16], opset 13

The functions are importable (tests build their fixtures with them).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8  # readable by every TensorRT parser fleetbuild targets


def _model(nodes, inputs, outputs, initializers, opset: int, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fleetbuild-quickstart")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def conv_bn_relu(opset: int = 13, channels: int = 8) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "bias"),
        numpy_helper.from_array(np.ones(channels, np.float32), "scale"),
        numpy_helper.from_array(np.zeros(channels, np.float32), "shift"),
        numpy_helper.from_array(np.zeros(channels, np.float32), "mean"),
        numpy_helper.from_array(np.ones(channels, np.float32), "var"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w", "bias"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv", "scale", "shift", "mean", "var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["features"]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
                  [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, channels, 32, 32])],
                  weights, opset, "conv_bn_relu")


def dynamic_mlp(opset: int = 17, width: int = 64, hidden: int = 128, classes: int = 10) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    weights = [
        numpy_helper.from_array(rng.standard_normal((width, hidden)).astype(np.float32) * 0.1, "w1"),
        numpy_helper.from_array(np.zeros(hidden, np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((hidden, classes)).astype(np.float32) * 0.1, "w2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["hr"]),
        helper.make_node("MatMul", ["hr", "w2"], ["y"]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", classes])],
                  weights, opset, "dynamic_mlp")


def two_input(opset: int = 13, width: int = 16) -> onnx.ModelProto:
    weights = [numpy_helper.from_array(np.full(width, 0.5, np.float32), "w")]
    nodes = [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["sum", "w"], ["out"])]
    return _model(nodes, [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, width]),
                          helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, width])],
                  [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, width])],
                  weights, opset, "two_input")


MODELS = {"conv_bn_relu": conv_bn_relu, "dynamic_mlp": dynamic_mlp, "two_input": two_input}


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
