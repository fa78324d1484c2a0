"""targets/_tensorrt.toml's TensorRT-RTX data, checked against the real tensorrt_rtx library."""
from __future__ import annotations

from conftest import import_or_require
from onnx import TensorProto, helper

from fleetbuild.config.tensorrt_releases import facts


def test_rtx_compute_capabilities_match_the_library():
    trt = import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    members = [name for name in dir(trt.ComputeCapability) if name.startswith("SM")]
    in_library = sorted(f"{name[2:-1]}.{name[-1]}" for name in members)
    assert sorted(facts("tensorrt-rtx").compute_capabilities) == in_library


def test_rtx_parser_accepts_the_recorded_max_opset():
    trt = import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    limit = facts("tensorrt-rtx").max_opset[-1][1]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", limit)])
    model.ir_version = 10
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(model.SerializeToString())
