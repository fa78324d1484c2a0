"""Plan truth: each rule learnt from real-world models, on generated models (examples/rules), and
checked against a real TensorRT-RTX build where the rule is about TensorRT-RTX: the build fails
without the fix and succeeds with it."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import FIXTURES, ROOT, import_or_require
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(ROOT / "examples" / "rules"))
sys.path.insert(0, str(FIXTURES))
import make_rule_models  # noqa: E402
from rtx_build import rtx_build  # noqa: E402

from fleetbuild.models.dims import Rename  # noqa: E402
from fleetbuild.plan.onnx_ops import op_table  # noqa: E402
from fleetbuild.models.precision import ConvertedModels, rename_dims  # noqa: E402

SHARED = ROOT.parent / "shared" / "ONNX_TRT_OPS.tsv"


@pytest.fixture
def rules(tmp_path):
    """examples/rules in tmp_path: its fleet.toml, inventory and generated models."""
    for name in ("fleet.toml", "inventory.ini"):
        text = (ROOT / "examples" / "rules" / name).read_text()
        (tmp_path / name).write_text(text.replace("/tmp/fleetbuild-rules-worker", str(tmp_path / "worker")))
    make_rule_models.write_all(tmp_path / "models")
    return tmp_path


def plan_problems(cli, *args) -> dict[str, list[tuple[str, str, str]]]:
    result = cli("matrix", "plan", "--json", *args)
    assert result.code in (0, 1), result.err
    return {j["id"]: [(p["code"], p["severity"], p["message"]) for p in j["problems"]]
            for j in json.loads(result.out)["jobs"]}


# ---- the op table -------------------------------------------------------------------------------

def test_shipped_op_table_is_the_shared_one():
    if not SHARED.exists():       # the team's shared/ lies beside the checkout on our machines and in CI
        pytest.skip("no shared/ONNX_TRT_OPS.tsv beside the checkout")
    shipped = (ROOT / "targets" / "onnx_trt_ops.tsv").read_text()
    assert "\trtx-1.7\n" in shipped                 # the shipped table adds TensorRT-RTX's column
    rows = [line for line in shipped.splitlines() if not line.startswith("# rtx-")]
    tensorrt = [line if line.startswith("#") else line.rsplit("\t", 1)[0] for line in rows]
    assert tensorrt == SHARED.read_text().splitlines()


def test_op_table_known_rows():
    table = op_table()
    from packaging.version import Version as V
    assert [table.supported("NonZero", V(v)) for v in ("8.2", "8.4", "8.5", "10.1")] == [False, False, True, True]
    assert table.first_release("LayerNormalization") == V("8.6")
    assert table.first_release("Hardmax") == V("9.2")
    assert table.supported("Conv", V("10.14")) is True                 # later releases: 10.1's table
    assert table.supported("NoSuchOp", V("10.1")) is None


def test_nonzero_refused_on_nano_and_rtx_accepted_on_orin(rules, cli):
    problems = plan_problems(cli, "--only", "nonzero")
    nano = problems["nonzero/nano/fp16"]
    assert nano[0][0] == "op-unsupported" and "op NonZero (node #1)" in nano[0][2]
    assert "TensorRT >=8.2,<8.3 (nano); the first release with it is 8.5" in nano[0][2]
    assert problems["nonzero/orin/fp16"] == []
    assert problems["nonzero/a100/fp32"][0][0] == "op-unsupported"
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    built, errors = rtx_build(make_rule_models.nonzero().SerializeToString(), "8.0")
    assert not built and "NonZero" in errors                             # what the rule says, measured


def test_ops_inside_subgraphs_and_unknown_ops(project, cli, minimal, tmp_path):
    body = helper.make_graph([helper.make_node("NonZero", ["x"], ["nz"], name="inner_nonzero"),
                              helper.make_node("Identity", ["cond"], ["cond_out"])], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("nz", TensorProto.INT64, None)])
    nodes = [helper.make_node("Loop", ["n", "c"], ["out"], body=body),
             helper.make_node("FancyUnknownOp", ["x"], ["y"], name="mystery")]
    inits = [numpy_helper.from_array(np.array(2, np.int64), "n"), numpy_helper.from_array(np.array(True), "c")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("out", TensorProto.INT64, None),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "models" / "loop.onnx"))
    project.write(minimal.replace("conv_bn_relu.onnx", "loop.onnx").replace('["t4"]', '["nano"]'))
    problems = plan_problems(cli)["conv/nano/fp32"]
    codes = {code: message for code, _, message in problems}
    assert "op NonZero (node inner_nonzero)" in codes["op-unsupported"]
    assert codes["op-unknown"].startswith("op FancyUnknownOp (node mystery) is not an operator of the standard")


# ---- GEMM lowering ----------------------------------------------------------------------------------

def test_lstm_fp32_on_turing_is_refused_and_that_is_what_rtx_does(rules, cli):
    problems = plan_problems(cli, "--only", "lstm")
    assert problems["lstm/t4/fp32"][0][0] == "rtx-turing-fp32-gemm"
    assert "LSTM (LSTM lowered to GEMM)" in problems["lstm/t4/fp32"][0][2]
    assert problems["lstm/a100/fp32"] == [] and problems["lstm/t4/fp16"] == []
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    model = make_rule_models.lstm().SerializeToString()
    profile = {"x": ((1, 1, 16), (8, 1, 16), (32, 1, 16))}
    built, errors = rtx_build(model, "7.5", profile)
    assert not built and "FP32 GEMM is not supported" in errors
    assert rtx_build(model, "8.0", profile)[0]


# ---- shared dimension names ---------------------------------------------------------------------

def test_shared_dims_fail_in_rtx_unless_renamed(tmp_path):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    source = tmp_path / "shared.onnx"
    onnx.save(make_rule_models.shared_dims(), str(source))
    profile = {"x": ((1, 3, 48, 192), (4, 3, 48, 192), (8, 3, 48, 192))}
    built, errors = rtx_build(source.read_bytes(), "8.0", profile)
    assert not built and "Input dimensions with this name" in errors
    renamed = tmp_path / "renamed.onnx"
    rename_dims(source, renamed, [Rename("x", 2, "?", "x_dim2"), Rename("x", 3, "?", "x_dim3")])
    assert rtx_build(renamed.read_bytes(), "8.0", profile)[0]


def test_shared_dims_plan_auto_true_false(rules, cli):
    problems = plan_problems(cli, "--only", "shared_dims/a100/fp32")["shared_dims/a100/fp32"]
    assert problems == [("dims-renamed", "warning", "input dims share a symbolic name with different profile "
                         "extents (TensorRT would tie them); renamed before parsing: x[2] '?' -> 'x_dim2'; "
                         "x[3] '?' -> 'x_dim3'")]
    toml = rules / "fleet.toml"
    toml.write_text(toml.read_text().replace('onnx = "models/shared_dims.onnx"',
                                             'onnx = "models/shared_dims.onnx"\nrename_dynamic_dims = false'))
    refused = plan_problems(cli, "--only", "shared_dims/a100/fp32")["shared_dims/a100/fp32"]
    assert refused[0][0:2] == ("shared-dim-name", "error")
    assert "x[2] = 48, x[3] = 192 share the symbolic name '?'" in refused[0][2]


def test_renamed_build_records_the_rewrite(rules, cli):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    result = cli("matrix", "build", "--local", "--only", "shared_dims/a100/*", "--json", "r.json")
    assert result.code == 0, result.err + result.out
    manifests = [json.loads(p.read_text()) for p in (rules / "artifacts" / "builds").glob("*.json")]
    assert {m["precision"] for m in manifests} == {"fp32", "fp16"}
    for manifest in manifests:
        assert manifest["model_rewrites"] == [{"input": "x", "index": 2, "from": "?", "to": "x_dim2"},
                                              {"input": "x", "index": 3, "from": "?", "to": "x_dim3"}]
        assert manifest["notes"][0] == "renamed input dims: x[2] '?' -> 'x_dim2'; x[3] '?' -> 'x_dim3'"
    logs = list((rules / ".cache" / "runs").glob("*/fetched/**/build.log"))
    assert len(logs) == 2
    assert all(log.read_text().startswith("[fleetbuild] renamed input dims: x[2]") for log in logs)
    # rename_dynamic_dims = true gives other names: another model, another build key.
    toml = rules / "fleet.toml"
    toml.write_text(toml.read_text().replace('onnx = "models/shared_dims.onnx"',
                                             'onnx = "models/shared_dims.onnx"\nrename_dynamic_dims = true'))
    before = {p.name for p in (rules / "artifacts" / "builds").glob("*.json")}
    again = cli("matrix", "build", "--local", "--only", "shared_dims/a100/fp32")
    assert again.code == 0 and "built  shared_dims/a100/fp32" in again.err, again.err
    assert len({p.name for p in (rules / "artifacts" / "builds").glob("*.json")} - before) == 1


# ---- shapes actually run --------------------------------------------------------------------------

def test_check_shapes_refuses_a_profile_the_model_cannot_run(rules, cli):
    plain = plan_problems(cli, "--only", "reshape64/a100/fp32")
    assert plain["reshape64/a100/fp32"] == []
    checked = plan_problems(cli, "--only", "reshape64/a100/fp32", "--check-shapes")["reshape64/a100/fp32"]
    assert checked == [("shape-run-failed", "error", "ONNX Runtime cannot run the model at the profile's min "
                        "(x 1x32): The input tensor cannot be reshaped to the requested shape. Input shape:{1,32}, "
                        "requested shape:{-1,8,8}")]
    cached = list((rules / ".cache" / "shapes").glob("*.json"))
    assert len(cached) == 1
    toml = rules / "fleet.toml"
    toml.write_text(toml.read_text().replace("min = [1, 32]", "min = [1, 64]"))
    assert plan_problems(cli, "--only", "reshape64/a100/fp32", "--check-shapes")["reshape64/a100/fp32"] == []


# ---- a quiet log ----------------------------------------------------------------------------------

def tiny_constants_model(count: int = 40) -> onnx.ModelProto:
    """x + c1 + c2 + ...: each constant tiny enough to be clamped by the fp16 converter."""
    inits, nodes, last = [], [], "x"
    for index in range(count):
        inits.append(numpy_helper.from_array(np.full(4, 1e-9 * (index + 1), np.float32), f"c{index}"))
        nodes.append(helper.make_node("Add", [last, f"c{index}"], [f"s{index}"]))
        last = f"s{index}"
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, [4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_fp16_conversion_warnings_become_one_note(tmp_path):
    source = tmp_path / "tiny.onnx"
    onnx.save(tiny_constants_model(), str(source))
    direct = subprocess.run([sys.executable, "-c", "import onnx; from onnxconverter_common import float16; "
                             f"float16.convert_float_to_float16(onnx.load('{source}'), keep_io_types=True)"],
                            capture_output=True, text=True)
    assert direct.stderr.count("will be truncated") >= 40                 # what the converter alone prints
    script = ("import sys; from pathlib import Path; from fleetbuild.models.precision import ConvertedModels; "
              f"path, notes = ConvertedModels(Path('{tmp_path}/cache')).convert(Path('{source}'), 'x' * 64, 'fp16'); "
              "print('\\n'.join(notes))")
    ours = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    assert ours.stderr == ""                                               # nothing floods stderr
    assert ours.stdout.strip().splitlines() == [
        "fp16: 40 constants clamped to the fp16 range (0 large ones to ±1e4, 40 tiny ones to ±1e-7)"]
    again = ConvertedModels(tmp_path / "cache").convert(source, "x" * 64, "fp16")
    assert again[1] == ours.stdout.strip().splitlines()                    # cached with its notes


def test_fp16_cast_from_int_meets_fp16_weights(tmp_path):
    """An int input cast to float and multiplied by weights (magika's first layer): after conversion
    the cast must produce fp16, or TensorRT refuses mixed MatMul inputs."""
    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "w")
    nodes = [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT, name="to_float"),
             helper.make_node("MatMul", ["f", "w"], ["y"], name="dense")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT32, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    source = tmp_path / "cast.onnx"
    onnx.save(model, str(source))
    converted, _ = ConvertedModels(tmp_path / "cache").convert(source, "y" * 64, "fp16")
    cast = next(n for n in onnx.load(str(converted)).graph.node if n.name == "to_float")
    assert cast.attribute[0].i == TensorProto.FLOAT16
    import onnxruntime
    onnxruntime.InferenceSession(str(converted), providers=["CPUExecutionProvider"])   # types are consistent
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    assert rtx_build(converted.read_bytes(), "7.5")[0]


def test_bf16_for_a_strongly_typed_builder_needs_a_bf16_model(project, cli, minimal):
    project.write(minimal.replace('targets = ["t4"]', 'targets = ["a100"]\nprecisions = ["bf16"]')
                  .replace('[matrix]', '[defaults]\nbackend = "tensorrt-rtx"\n\n[matrix]'))
    problems = plan_problems(cli)["conv/a100/bf16"]
    assert problems[0][0] == "precision-needs-model"
    assert "TensorRT-RTX takes precision from the model, which has no bf16 tensors" in problems[0][2]
