"""Rules on the graph as it will be built, held against real TensorRT-RTX (SM80, CPU only): the fp16
conversion checked and repaired before the rules read it, a Squeeze's rank decided from what ONNX
Runtime sees at the profile's points (--check-shapes), and the parser rules inside subgraphs.
Each model is written here; each verdict of the plan is checked against the builder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from test_parser_rules import CONFIG, const, graph, plan, pool, rtx_builds, x

F = TensorProto.FLOAT


def cast_relu_conv():
    """A model's own Cast(to=float) feeding a Relu, then a Conv: onnxconverter-common makes the Conv's
    weight float16 and leaves the Relu float (TensorRT-RTX: "IConvolutionLayer `input` and `kernel`
    must be of same type"), as in a real voice-activity model's If branch."""
    weight = numpy_helper.from_array(np.random.default_rng(0).random((4, 3, 3, 3), dtype=np.float32), "W")
    return graph([helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT32, name="to_int"),
                  helper.make_node("Cast", ["xi"], ["xf"], to=F, name="to_float"),
                  helper.make_node("Relu", ["xf"], ["r"], name="relu"),
                  helper.make_node("Conv", ["r", "W"], ["y"], pads=[1, 1, 1, 1], name="conv")],
                 [x([1, 3, 8, 8])], [weight])


def test_fp16_conversion_keeps_mixed_nodes_in_fp32_and_says_so(cli, project, tmp_path):
    from onnxconverter_common import float16

    from fleetbuild.models.precision import to_fp16

    model = cast_relu_conv()
    raw = float16.convert_float_to_float16(model, keep_io_types=True)
    assert not rtx_builds(raw, ""), "the converter's own output builds: this test no longer shows the repair"
    (project.root / "m.onnx").write_bytes(model.SerializeToString())
    project.write(CONFIG.format(inputs="").replace('precisions = ["fp32"]', 'precisions = ["fp16"]'))
    [job] = json.loads(cli("matrix", "plan", "--json").out)["jobs"]
    assert job["status"] == "ok", job["problems"]
    [kept] = [p for p in job["problems"] if p["code"] == "fp16-kept-fp32"]
    assert kept["severity"] == "warning" and "conv" in kept["message"]
    notes = to_fp16(project.root / "m.onnx", tmp_path / "m16.onnx")
    assert notes and "conv" in notes[0]
    import onnx

    assert rtx_builds(onnx.load(str(tmp_path / "m16.onnx")), ""), "the repaired fp16 model does not build"


def reshaped_squeeze():
    """Squeeze without axes of a tensor reshaped to a computed shape [b, 1, 8]: ONNX cannot size it
    (no data propagation), so only a run at the profile's shapes shows that its dim 0 is the batch."""
    return graph([helper.make_node("Shape", ["x"], ["s"]),
                  helper.make_node("Slice", ["s", "zero", "one"], ["b"]),
                  helper.make_node("Concat", ["b", "rest"], ["shape"], axis=0),
                  helper.make_node("Reshape", ["x", "shape"], ["r"]),
                  helper.make_node("Squeeze", ["r"], ["y"], name="squeeze")],
                 [x(["b", 8])], [const("zero", [0], np.int64), const("one", [1], np.int64),
                                 const("rest", [1, 8], np.int64)])


def plan_checked(cli, project, model, inputs):
    (project.root / "m.onnx").write_bytes(model.SerializeToString())
    project.write(CONFIG.format(inputs=inputs))
    [job] = json.loads(cli("matrix", "plan", "--check-shapes", "--json").out)["jobs"]
    return job


def test_a_squeeze_only_onnx_runtime_can_size_is_judged_at_the_profile_points(cli, project):
    """TensorRT-RTX refuses the build when the squeezed dim is 1 at opt; at min only it builds (the
    engine then refuses a batch of 1): an error, a warning and nothing, each held against the builder."""
    at_opt, at_min, never = ('inputs.x = { min = [%d, 8], opt = [%d, 8], max = [4, 8] }' % pair
                             for pair in ((1, 1), (1, 2), (2, 2)))
    without_runs = plan(cli, project, reshaped_squeeze(), at_opt)
    assert [p["severity"] for p in without_runs["problems"] if p["code"] == "squeeze-dynamic-rank"] == ["warning"]
    job = plan_checked(cli, project, reshaped_squeeze(), at_opt)
    [problem] = [p for p in job["problems"] if p["code"] == "squeeze-dynamic-rank"]
    assert job["status"] == "invalid" and "min 1x1x8" in problem["message"] and problem["hint"]
    assert not rtx_builds(reshaped_squeeze(), at_opt), "the plan refused a job TensorRT-RTX builds"
    warned = plan_checked(cli, project, reshaped_squeeze(), at_min)
    assert warned["status"] == "ok" and [p["severity"] for p in warned["problems"]
                                         if p["code"] == "squeeze-dynamic-rank"] == ["warning"]
    assert rtx_builds(reshaped_squeeze(), at_min)
    fixed = plan_checked(cli, project, reshaped_squeeze(), never)
    assert fixed["status"] == "ok" and not [p for p in fixed["problems"] if p["code"] == "squeeze-dynamic-rank"]
    assert rtx_builds(reshaped_squeeze(), never)


def in_if_branch(inner):
    """`inner` (a one-input graph over "x") as the then_branch of an If, an Identity as the else."""
    branch = helper.make_graph(list(inner.graph.node), "then", [],
                               [helper.make_tensor_value_info(inner.graph.node[-1].output[0], F, None)],
                               initializer=list(inner.graph.initializer))
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["z"])], "else", [],
                              [helper.make_tensor_value_info("z", F, None)])
    return graph([helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
                  helper.make_node("Greater", ["s", "zero"], ["c"]),
                  helper.make_node("If", ["c"], ["out"], then_branch=branch, else_branch=other, name="cond")],
                 list(inner.graph.input), [const("zero", 0.0, np.float32)])


def test_parser_rules_reach_into_if_branches(cli, project):
    job = plan(cli, project, in_if_branch(pool([2, 2])), "")
    [problem] = [p for p in job["problems"] if p["code"] == "pool-dilations"]
    assert job["status"] == "invalid" and "(in If node cond, then_branch)" in problem["message"]
    assert not rtx_builds(in_if_branch(pool([2, 2])), "")
    fixed = plan(cli, project, in_if_branch(pool(None)), "")
    assert fixed["status"] == "ok", fixed["problems"]
    assert rtx_builds(in_if_branch(pool(None)), "")


def test_an_int8_model_already_quantized_is_not_quantized_again(tmp_path: Path):
    from fleetbuild.models.precision import needs_conversion

    assert needs_conversion("int8", True) and not needs_conversion("int8", True, has_qdq=True)
    assert needs_conversion("fp16", True, has_qdq=True) and not needs_conversion("int8", False)


NANO = """
[project]
name = "rules"
[models.m]
onnx = "m.onnx"
{option}
[matrix]
targets = ["nano"]
"""


def opset17(with_layernorm=False):
    """Opset 17 ops that changed since 13 (ReduceSum's axes moved to an input in 13, Split's in 13...)
    and, optionally, LayerNormalization, which has no version before 17."""
    nodes = [helper.make_node("ReduceSum", ["x", "ax"], ["s"], keepdims=1), helper.make_node("Add", ["x", "s"], ["y"])]
    inits = [const("ax", [1], np.int64)]
    if with_layernorm:
        nodes.append(helper.make_node("LayerNormalization", ["y", "g"], ["z"]))
        inits.append(const("g", [1.0] * 4, np.float32))
    return graph(nodes, [x([1, 4])], inits, opset=17)


def test_downgrade_opset_converts_for_the_nano_and_checks_the_result(cli, project, tmp_path):
    import onnx

    (project.root / "m.onnx").write_bytes(opset17().SerializeToString())
    project.write(NANO.format(option=""))
    [job] = json.loads(cli("matrix", "plan", "--json").out)["jobs"]
    [problem] = [p for p in job["problems"] if p["code"] == "opset-too-new"]
    assert "downgrade_opset = true" in problem["hint"]
    project.write(NANO.format(option="downgrade_opset = true"))
    [job] = json.loads(cli("matrix", "plan", "--json").out)["jobs"]
    assert job["status"] == "ok", job["problems"]
    cli("matrix", "stage", "--out", str(tmp_path / "staged"))
    [spec] = (tmp_path / "staged").rglob("spec.json")
    data = json.loads(spec.read_text())
    staged = onnx.load(str((spec.parent / data["onnx"]).resolve()))
    assert [o.version for o in staged.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert any("opset: converted from 17 to 13" in note for note in data["notes"])
    assert rtx_builds(staged, ""), "the down-converted model does not parse and build (TensorRT-RTX as stand-in)"

    (project.root / "m.onnx").write_bytes(opset17(with_layernorm=True).SerializeToString())
    [job] = json.loads(cli("matrix", "plan", "--json").out)["jobs"]
    codes = [p["code"] for p in job["problems"]]
    assert job["status"] == "invalid" and codes.count("conversion-failed") == 1 and "opset-too-new" not in codes
    [problem] = [p for p in job["problems"] if p["code"] == "conversion-failed"]
    assert "LayerNormalization has no version before opset 17" in problem["message"]


def test_downgrade_relabels_ops_without_adapters_only_when_the_older_schema_takes_the_node(tmp_path):
    """onnx.version_converter has no downward adapter for Reshape 14 (it added allowzero): one that
    keeps the default converts, one that sets allowzero=1 cannot, an op newer than the target says so."""
    import onnx
    import pytest

    from fleetbuild.errors import ConversionError
    from fleetbuild.models.opset import downgrade

    def reshape(**attrs):
        return graph([helper.make_node("Reshape", ["x", "shape"], ["y"], **attrs)], [x([2, 4])],
                     [const("shape", [8], np.int64)], opset=14)

    def convert(model):
        (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
        return downgrade(tmp_path / "m.onnx", tmp_path / "m13.onnx", 13)

    assert "14" in convert(reshape(allowzero=0))[0]
    converted = onnx.load(str(tmp_path / "m13.onnx"))
    assert converted.opset_import[0].version == 13 and not converted.graph.node[0].attribute
    assert rtx_builds(converted, "")
    with pytest.raises(ConversionError, match="Reshape"):
        convert(reshape(allowzero=1))
    with pytest.raises(ConversionError, match="HardSwish has no version before opset 14"):
        convert(graph([helper.make_node("HardSwish", ["x"], ["y"])], [x([4])], opset=14))
