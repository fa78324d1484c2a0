"""The parser rules (fleetbuild/plan/rules/parser.py), each held against TensorRT itself: a small model
written here per rule, planned by fleetbuild and built by real TensorRT-RTX (SM80, CPU only). A job
the plan refuses must not build; its fixed twin must pass the plan and build."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import import_or_require
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT
CONFIG = """
[project]
name = "rules"
[defaults]
precisions = ["fp32"]
backend = "tensorrt-rtx"
[models.m]
onnx = "m.onnx"
{inputs}
[matrix]
targets = ["a100"]
"""


def graph(nodes, inputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(nodes[-1].output[0], F, None)],
                          initializer=list(inits))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def const(name, value, dtype):
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


def x(shape):
    return helper.make_tensor_value_info("x", F, shape)


def qdq(zero, dtype):
    return graph([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], [x([1, 4])],
                 [const("s", 0.1, np.float32), const("z", zero, dtype)])


def dq_of(dtype):
    return graph([helper.make_node("DequantizeLinear", ["w", "s"], ["d"]), helper.make_node("Add", ["x", "d"], ["y"])],
                 [x([4])], [const("w", [1, 2, 3, 4], dtype), const("s", 0.1, np.float32)])


def squeeze(with_axes):
    if with_axes:
        return graph([helper.make_node("Squeeze", ["x", "ax"], ["y"])], [x(["b", 1, 8])], [const("ax", [1], np.int64)])
    return graph([helper.make_node("Squeeze", ["x"], ["y"])], [x(["b", 1, 8])])


def pool(dilations):
    extra = {"dilations": dilations} if dilations else {}
    return graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], **extra)], [x([1, 4, 16, 16])])


def resize(mode):
    return graph([helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="linear", coordinate_transformation_mode=mode)],
                 [x([1, 1, 4, 4])], [const("sc", [1, 1, 2, 2], np.float32)])


def lstm(input_forget):
    rng = np.random.default_rng(0)
    return graph([helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=4, input_forget=input_forget)],
                 [x([5, 1, 3])], [numpy_helper.from_array(rng.random((1, 16, 3), dtype=np.float32), "W"),
                                  numpy_helper.from_array(rng.random((1, 16, 4), dtype=np.float32), "R")], opset=14)


def scatter(reduction):
    extra = {"reduction": reduction} if reduction else {}
    return graph([helper.make_node("ScatterND", ["x", "i", "u"], ["y"], **extra)], [x([4])],
                 [const("i", [[1]], np.int64), const("u", [1.0], np.float32)], opset=16)


SQUEEZE_LOW = 'inputs.x = { min = [1, 1, 8], opt = [1, 1, 8], max = [4, 1, 8] }'
SQUEEZE_HIGH = 'inputs.x = { min = [2, 1, 8], opt = [2, 1, 8], max = [4, 1, 8] }'
CASES = [  # (id, refused model, its twin, inputs line, the code the plan gives the refused one)
    ("dq-int32", dq_of(np.int32), dq_of(np.int8), "", "dq-input-type"),
    ("zero-point-int8", qdq(3, np.int8), qdq(0, np.int8), "", "qdq-zero-point"),
    ("zero-point-uint8", qdq(128, np.uint8), qdq(0, np.uint8), "", "qdq-zero-point"),
    ("squeeze-no-axes", squeeze(False), squeeze(True), SQUEEZE_LOW, "squeeze-dynamic-rank"),
    ("pool-dilations", pool([2, 2]), pool(None), "", "pool-dilations"),
    ("resize-mode", resize("tf_crop_and_resize"), resize("half_pixel"), "", "resize-mode"),
    ("lstm-input-forget", lstm(1), lstm(0), "", "rnn-attribute"),
    ("scatter-reduction", scatter("add"), scatter(None), "", "scatter-reduction"),
]


def plan(cli, project, model, inputs):
    model_path = project.root / "m.onnx"
    model_path.write_bytes(model.SerializeToString())
    project.write(CONFIG.format(inputs=inputs))
    result = cli("matrix", "plan", "--json")
    [job] = json.loads(result.out)["jobs"]
    return job


def rtx_builds(model, inputs: str) -> bool:
    """Parse and build with real TensorRT-RTX for SM80 (the profile of `inputs`, when given)."""
    trt = import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    logger = trt.Logger(trt.Logger.INTERNAL_ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        return False
    config = builder.create_builder_config()
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM80, 0)
    if inputs:
        import re

        low, opt, high = (tuple(int(v) for v in part.split(",")) for part in
                          re.findall(r"\[([\d, ]+)\]", inputs))
        profile = builder.create_optimization_profile()
        profile.set_shape("x", low, opt, high)
        config.add_optimization_profile(profile)
    return builder.build_serialized_network(network, config) is not None


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_refused_node_does_not_build_and_its_twin_does(cli, project, case):
    _, refused, twin, inputs, code = case
    job = plan(cli, project, refused, inputs)
    assert job["status"] == "invalid" and code in [p["code"] for p in job["problems"]], job["problems"]
    problem = next(p for p in job["problems"] if p["code"] == code)
    assert "node" in problem["message"] and problem["hint"]
    assert not rtx_builds(refused, inputs), "the plan refused a job TensorRT-RTX builds: the rule is wrong"
    fixed = plan(cli, project, twin, inputs)
    assert fixed["status"] == "ok", fixed["problems"]
    assert rtx_builds(twin, inputs), "the plan passed a job TensorRT-RTX refuses: a rule is missing"


def test_squeeze_without_axes_is_fine_when_the_profile_keeps_the_dim_above_one(cli, project):
    job = plan(cli, project, squeeze(False), SQUEEZE_HIGH)
    assert job["status"] == "ok", job["problems"]
    assert rtx_builds(squeeze(False), SQUEEZE_HIGH)


def test_a_restriction_the_graph_cannot_decide_is_a_warning_that_names_it(cli, project):
    body = helper.make_graph([helper.make_node("Identity", ["c_in"], ["c_out"]),
                              helper.make_node("Identity", ["v_in"], ["v_out"])], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("v_in", F, [4])],
                             [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("v_out", F, [4])])
    model = graph([helper.make_node("Loop", ["n", "", "x"], ["y"], body=body)], [x([4])],
                  [const("n", 3, np.int64)])
    job = plan(cli, project, model, "")
    warnings = [p for p in job["problems"] if p["code"] == "parser-restriction"]
    assert job["status"] == "ok" and warnings and "Loop" in warnings[0]["message"], job["problems"]
    assert warnings[0]["severity"] == "warning"
