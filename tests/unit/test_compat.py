"""Plan-time compatibility rules, per shipped target, through the real CLI (`matrix plan --json`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import custom_op_model
from onnx import TensorProto, helper, numpy_helper

HEAD = """
[project]
name = "p"
[models.conv]
onnx = "models/conv_bn_relu.onnx"
precisions = ["fp32", "tf32", "fp16", "bf16", "int8", "fp8"]
calibration = "calib/*.npy"
[models.mlp]
onnx = "models/dynamic_mlp.onnx"
precisions = ["fp16"]
inputs.x = { min = [1, 64], opt = [8, 64], max = [32, 64] }
"""


def plan(project, cli, text: str, *extra: str) -> dict[str, list[str]]:
    calib = project.root / "calib"
    calib.mkdir(exist_ok=True)
    np.save(calib / "batch0.npy", np.zeros((1, 3, 32, 32), np.float32))
    project.write(text)
    result = cli("matrix", "plan", "--json", *extra)
    assert result.code in (0, 1), result.err
    data = json.loads(result.out)
    assert result.code == (1 if data["invalid"] else 0)
    return {job["id"]: [p["code"] for p in job["problems"]] for job in data["jobs"]}


def test_precisions_per_target(project, cli):
    codes = plan(project, cli, HEAD + '[matrix]\nmodels = ["conv"]\n'
                 'targets = ["t4", "a100", "l4", "h100", "orin", "xavier", "nano"]\n')
    supported = {
        "t4": {"fp32", "fp16", "int8"},
        "a100": {"fp32", "tf32", "fp16", "bf16", "int8"},
        "l4": {"fp32", "tf32", "fp16", "bf16", "int8", "fp8"},
        "h100": {"fp32", "tf32", "fp16", "bf16", "int8", "fp8"},
        "orin": {"fp32", "tf32", "fp16", "bf16", "int8"},
        "xavier": {"fp32", "fp16", "int8"},
        "nano": {"fp32", "fp16"},
    }
    for target, precisions in supported.items():
        for precision in ("fp32", "tf32", "fp16", "bf16", "int8", "fp8"):
            problems = codes[f"conv/{target}/{precision}"]
            if precision in precisions:
                assert "precision-unsupported" not in problems, (target, precision)
            else:
                assert "precision-unsupported" in problems, (target, precision)


def test_opset_against_tensorrt_range(project, cli):
    codes = plan(project, cli, HEAD + '[matrix]\nmodels = ["mlp"]\ntargets = ["nano", "xavier", "orin", "t4"]\n')
    assert codes["mlp/nano/fp16"] == ["opset-too-new"]     # opset 17 > 13 (TensorRT 8.2)
    assert codes["mlp/xavier/fp16"] == []                   # 8.5 parses 17
    assert codes["mlp/orin/fp16"] == [] and codes["mlp/t4/fp16"] == []


def test_opset_message_names_the_limit(project, cli):
    project.write(HEAD + '[matrix]\nmodels = ["mlp"]\ntargets = ["nano"]\n')
    result = cli("matrix", "plan")
    assert result.code == 1
    assert "model opset 17 is above what nano's TensorRT range >=8.2,<8.3 parses (max 13" in result.out


@pytest.mark.parametrize("target,dla_core,precision,expected", [
    ("orin", 0, "fp16", []),
    ("orin", 1, "int8", []),
    ("orin", 2, "fp16", ["dla-core-out-of-range"]),
    ("orin", 0, "fp32", ["dla-precision"]),
    ("xavier", 1, "fp16", []),
    ("t4", 0, "fp16", ["dla-unsupported"]),
    ("a100", 0, "fp16", ["dla-unsupported"]),
    ("nano", 0, "fp16", ["dla-unsupported"]),
])
def test_dla_rules(project, cli, target, dla_core, precision, expected):
    codes = plan(project, cli, HEAD + f'[matrix]\nmodels = ["conv"]\ntargets = ["{target}"]\nprecisions = ["fp16"]\n'
                 f'include = [{{ model = "conv", target = "{target}", precision = "{precision}", variant = "dla", '
                 f'dla_core = {dla_core}, gpu_fallback = true }}]\n', "--only", "dla")
    assert codes == {f"conv/{target}/{precision}+dla": expected}


def test_gpu_fallback_without_dla_is_a_warning(project, cli):
    codes = plan(project, cli, HEAD + '[defaults]\ngpu_fallback = true\n[matrix]\nmodels = ["mlp"]\ntargets = ["t4"]\n')
    assert codes == {"mlp/t4/fp16": ["gpu-fallback-without-dla"]}


@pytest.mark.parametrize("target,ok", [("t4", True), ("a100", True), ("l4", True), ("h100", False),
                                       ("orin", False), ("nano", False), ("xavier", False)])
def test_tensorrt_rtx_backend_targets(project, cli, target, ok):
    codes = plan(project, cli, HEAD + f'[defaults]\nbackend = "tensorrt-rtx"\n[matrix]\nmodels = ["mlp"]\n'
                 f'targets = ["{target}"]\n')
    assert codes[f"mlp/{target}/fp16"] == ([] if ok else ["backend-unsupported"])


@pytest.mark.parametrize("target,option,expected", [
    ("a100", 'version_compatible = true', []),
    ("nano", 'version_compatible = true', ["feature-unsupported"]),
    ("xavier", 'version_compatible = true', ["feature-unsupported"]),
    ("t4", 'exclude_lean_runtime = true', ["lean-runtime-without-version-compatible"]),
    ("a100", 'hardware_compatibility_level = "ampere_plus"', []),
    ("t4", 'hardware_compatibility_level = "ampere_plus"', ["hardware-level-gpu"]),
    ("t4", 'hardware_compatibility_level = "same_compute_capability"', []),
    ("orin", 'hardware_compatibility_level = "ampere_plus"', ["hardware-level-jetson"]),
    ("xavier", 'hardware_compatibility_level = "same_compute_capability"',
     ["feature-unsupported", "hardware-level-gpu", "hardware-level-jetson"]),
    ("nano", 'builder_optimization_level = 5', ["option-ignored"]),
    ("orin", 'builder_optimization_level = 5', []),
])
def test_feature_rules(project, cli, target, option, expected):
    codes = plan(project, cli, HEAD.replace('precisions = ["fp32", "tf32", "fp16", "bf16", "int8", "fp8"]',
                                            'precisions = ["fp16"]') +
                 f'[defaults]\n{option}\n[matrix]\nmodels = ["conv"]\ntargets = ["{target}"]\n')
    assert codes[f"conv/{target}/fp16"] == expected


def test_rtx_rejects_full_tensorrt_features(project, cli):
    codes = plan(project, cli, HEAD + '[defaults]\nbackend = "tensorrt-rtx"\nversion_compatible = true\n'
                 '[matrix]\nmodels = ["mlp"]\ntargets = ["t4"]\n')
    assert codes == {"mlp/t4/fp16": ["feature-unsupported"]}


def test_warnings_do_not_invalidate(project, cli):
    project.write(HEAD + '[defaults]\nbuilder_optimization_level = 5\n[matrix]\nmodels = ["conv"]\n'
                  'targets = ["nano"]\nprecisions = ["fp16"]\n')
    result = cli("matrix", "plan")
    assert result.code == 0
    assert "ok (warning)" in result.out and "option-ignored" in result.out


# ---- input profiles ---------------------------------------------------------------------------

@pytest.mark.parametrize("inputs,expected", [
    ('inputs.x = { min = [1, 64], opt = [8, 64], max = [32, 64] }', []),
    ('', ["input-dynamic-no-profile"]),
    ('inputs.x = { min = [1, 64, 1], opt = [8, 64, 1], max = [32, 64, 1] }', ["profile-rank"]),
    ('inputs.x = { min = [1, 32], opt = [8, 64], max = [32, 64] }', ["profile-static-mismatch"]),
    ('inputs.x = [4, 64]', []),
    ('inputs.x = "4x64"', []),
    ('inputs.y = [4, 64]', ["input-unknown", "input-dynamic-no-profile"]),
])
def test_profiles(project, cli, inputs, expected):
    text = f'[project]\nname = "p"\n[models.mlp]\nonnx = "models/dynamic_mlp.onnx"\n{inputs}\n' \
           '[matrix]\ntargets = ["t4"]\n'
    assert plan(project, cli, text) == {"mlp/t4/fp32": expected}


def test_unknown_input_suggests_name(project, cli):
    project.write('[project]\nname = "p"\n[models.conv]\nonnx = "models/conv_bn_relu.onnx"\n'
                  'inputs.image = [1, 3, 32, 32]\n[matrix]\ntargets = ["t4"]\n')
    result = cli("matrix", "plan")
    assert "models.conv.inputs names 'image', which is not an input of the model; did you mean 'images'?" \
        in " ".join(result.out.split())


# ---- calibration ------------------------------------------------------------------------------

def _qdq_model(path):
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              initializer=[numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                                           numpy_helper.from_array(np.array(0, np.int8), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_int8_calibration_rules(project, cli):
    _qdq_model(project.root / "models" / "qdq.onnx")
    text = ('[project]\nname = "p"\n[defaults]\nprecisions = ["int8"]\n'
            '[models.none]\nonnx = "models/conv_bn_relu.onnx"\n'
            '[models.empty]\nonnx = "models/conv_bn_relu.onnx"\ncalibration = "nothing/*.npy"\n'
            '[models.good]\nonnx = "models/conv_bn_relu.onnx"\ncalibration = "calib/*.npy"\n'
            '[models.qdq]\nonnx = "models/qdq.onnx"\n'
            '[matrix]\ntargets = ["t4"]\n')
    assert plan(project, cli, text) == {"none/t4/int8": ["calibration-missing"],
                                        "empty/t4/int8": ["calibration-empty"],
                                        "good/t4/int8": [], "qdq/t4/int8": []}


# ---- custom layers ----------------------------------------------------------------------------

def _custom_op_model(path):
    custom_op_model(path, op="FancyNMS", domain="acme", node="nms_0")


def test_custom_ops_need_a_layer_provider(project, cli):
    _custom_op_model(project.root / "models" / "custom.onnx")
    text = ('[project]\nname = "p"\n'
            '[layers.acme-nms]\nlibrary = "/opt/acme/libnms_plugin.so"\nops = ["acme::FancyNMS"]\n'
            '[models.bare]\nonnx = "models/custom.onnx"\n'
            '[models.wired]\nonnx = "models/custom.onnx"\nlayers = ["acme-nms"]\n'
            '[models.typo]\nonnx = "models/custom.onnx"\nlayers = ["acme-nsm"]\n'
            '[matrix]\ntargets = ["t4"]\n'
            'include = [{ model = "wired", target = "t4", precision = "fp32", variant = "rtx", backend = "tensorrt-rtx" }]\n')
    codes = plan(project, cli, text)
    assert codes == {"bare/t4/fp32": ["custom-op-no-layer"], "wired/t4/fp32": [],
                     "wired/t4/fp32+rtx": ["layers-unsupported-backend"],
                     "typo/t4/fp32": ["layer-unknown", "custom-op-no-layer"]}
    result = cli("matrix", "plan", "--only", "bare")
    assert 'add layers = ["acme-nms"] to models.bare' in " ".join(result.out.split())
    assert "custom op acme::FancyNMS (node nms_0) has no plugin providing it" in " ".join(result.out.split())


def test_layer_libraries_per_target_arch_and_tensorrt(project, cli):
    """x86_64 + TensorRT 10 only: an Orin (aarch64) and a Nano (8.2) get no library, each said
    with the op, the target's arch or range and the fix; plan --json names the T4's library."""
    _custom_op_model(project.root / "models" / "custom.onnx")
    (project.root / "plugins").mkdir()
    (project.root / "plugins" / "libacme-x86_64-trt10.so").write_bytes(b"\x7fELF stand-in")
    (project.root / "plugins" / "libacme-aarch64-trt10.so").write_bytes(b"\x7fELF other stand-in")
    text = ('[project]\nname = "p"\n'
            '[layers.acme]\nops = ["acme::FancyNMS"]\n'
            '[[layers.acme.libraries]]\npath = "plugins/libacme-x86_64-trt10.so"\narch = "x86_64"\n'
            'tensorrt = ">=10.0,<11"\nregistration = "load-library"\n'
            '[models.det]\nonnx = "models/custom.onnx"\nlayers = ["acme"]\n'
            '[matrix]\ntargets = ["t4", "orin", "nano"]\nprecisions = ["fp16"]\n')
    codes = plan(project, cli, text)
    assert codes == {"det/t4/fp16": [], "det/orin/fp16": ["layer-no-library"], "det/nano/fp16": ["layer-no-library"]}
    data = json.loads(cli("matrix", "plan", "--json").out)
    jobs = {job["id"]: job for job in data["jobs"]}
    [t4] = jobs["det/t4/fp16"]["layers"]
    assert t4["provider"] == "acme" and [(lib["arch"], lib["tensorrt"], lib["registration"], Path(lib["path"]).name)
                                         for lib in t4["libraries"]] == [
        ("x86_64", ">=10.0,<11", "load-library", "libacme-x86_64-trt10.so")]
    orin = jobs["det/orin/fp16"]["problems"][0]
    assert orin["message"] == ("layers.acme (for acme::FancyNMS (node nms_0)) has no library for aarch64, the CPU of orin (it has "
                               "libacme-x86_64-trt10.so (x86_64, TensorRT >=10.0,<11, load_library))")
    assert orin["hint"] == "add a [[layers.acme.libraries]] entry compiled for aarch64"
    nano = jobs["det/nano/fp16"]["problems"][0]
    assert nano["message"].startswith("layers.acme (for acme::FancyNMS (node nms_0)) has no library for aarch64")
    # an aarch64 library for TensorRT 10 still leaves the Nano (8.2) without one; a load-library one for 8.x
    # cannot serve 8.2 either (no load_library before 8.6)
    text = text + ('[[layers.acme.libraries]]\npath = "plugins/libacme-aarch64-trt10.so"\narch = "aarch64"\n'
                   'tensorrt = ">=8.0,<11"\nregistration = "load-library"\n')
    project.write(text)
    jobs = {job["id"]: job for job in json.loads(cli("matrix", "plan", "--json").out)["jobs"]}
    assert jobs["det/orin/fp16"]["problems"] == []
    nano = jobs["det/nano/fp16"]["problems"][0]
    assert nano["message"] == ("layers.acme (for acme::FancyNMS (node nms_0)): nano allows TensorRT >=8.2,<8.3, whose plugin "
                               "registry has no load_library (it came in 8.6)")
    # an aarch64 library for TensorRT 10 only: the Orin (JetPack 6 allowed) has one, the Nano (8.2) none
    project.write(text.replace('tensorrt = ">=8.0,<11"\nregistration = "load-library"\n',
                               'tensorrt = ">=10.0,<11"\nregistration = "load-library"\n'))
    jobs = {job["id"]: job for job in json.loads(cli("matrix", "plan", "--json").out)["jobs"]}
    assert jobs["det/orin/fp16"]["problems"] == []
    nano = jobs["det/nano/fp16"]["problems"][0]
    assert nano["message"] == ("layers.acme (for acme::FancyNMS (node nms_0)) has no aarch64 library for TensorRT "
                               ">=8.2,<8.3, the range of nano (it has libacme-x86_64-trt10.so (x86_64, TensorRT "
                               ">=10.0,<11, load_library), libacme-aarch64-trt10.so (aarch64, TensorRT >=10.0,<11, "
                               "load_library))")
    assert nano["hint"] == "add a [[layers.acme.libraries]] entry compiled for aarch64 against TensorRT >=8.2,<8.3"
    project.write(text)
    jobs = {job["id"]: job for job in json.loads(cli("matrix", "plan", "--json").out)["jobs"]}
    key_before = jobs["det/t4/fp16"]["plan_key"]
    (project.root / "plugins" / "libacme-x86_64-trt10.so").write_bytes(b"\x7fELF rebuilt")
    jobs = {job["id"]: job for job in json.loads(cli("matrix", "plan", "--json").out)["jobs"]}
    assert jobs["det/t4/fp16"]["plan_key"] != key_before                  # new library bytes: a new build key


# ---- broken ONNX files ------------------------------------------------------------------------

def test_broken_onnx_files(project, cli):
    models = project.root / "models"
    (models / "garbage.onnx").write_bytes(b"\x08\x07garbage\xff\xfe not protobuf at all" * 10)
    (models / "empty.onnx").write_bytes(b"")
    (models / "dir.onnx").mkdir()
    text = '[project]\nname = "p"\n' + "".join(
        f'[models.{n}]\nonnx = "models/{n}.onnx"\n' for n in ("garbage", "empty", "dir", "missing")) + \
        '[matrix]\ntargets = ["t4"]\n'
    assert plan(project, cli, text) == {"garbage/t4/fp32": ["onnx-corrupt"], "empty/t4/fp32": ["onnx-corrupt"],
                                        "dir/t4/fp32": ["onnx-corrupt"], "missing/t4/fp32": ["onnx-missing"]}
    result = cli("matrix", "plan", "--only", "missing")
    flat = " ".join(result.out.split())
    assert "ONNX file not found: 'models/missing.onnx' (resolved to" in flat


def _external_model(directory, location):
    weights = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ext",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(directory / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location=location, size_threshold=0)


def test_external_data(project, cli):
    models = project.root / "models"
    _external_model(models, "ext.bin")
    text = '[project]\nname = "p"\n[models.ext]\nonnx = "models/ext.onnx"\n[matrix]\ntargets = ["t4"]\n'
    assert plan(project, cli, text) == {"ext/t4/fp32": []}
    with open(models / "ext.bin", "r+b") as handle:
        handle.truncate(100)
    assert plan(project, cli, text) == {"ext/t4/fp32": ["external-data-truncated"]}
    (models / "ext.bin").unlink()
    assert plan(project, cli, text) == {"ext/t4/fp32": ["external-data-missing"]}


def test_external_data_outside_model_folder(project, cli):
    models = project.root / "models"
    _external_model(models, "ext.bin")
    model = onnx.load(str(models / "ext.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../etc/passwd"
    onnx.save(model, str(models / "ext.onnx"))
    text = '[project]\nname = "p"\n[models.ext]\nonnx = "models/ext.onnx"\n[matrix]\ntargets = ["t4"]\n'
    assert plan(project, cli, text) == {"ext/t4/fp32": ["external-data-unsafe"]}


@pytest.mark.parametrize("target,precision,model,expected", [
    ("t4", "fp32", "mlp", ["rtx-turing-fp32-gemm"]),
    ("t4", "fp16", "mlp", []),
    ("a100", "fp32", "mlp", []),
    ("t4", "fp32", "conv", []),
])
def test_rtx_turing_fp32_gemm(project, cli, target, precision, model, expected):
    text = ('[project]\nname = "p"\n[defaults]\nbackend = "tensorrt-rtx"\n'
            '[models.mlp]\nonnx = "models/dynamic_mlp.onnx"\ninputs.x = "8x64"\n'
            '[models.conv]\nonnx = "models/conv_bn_relu.onnx"\n'
            f'[matrix]\nmodels = ["{model}"]\ntargets = ["{target}"]\nprecisions = ["{precision}"]\n')
    assert plan(project, cli, text) == {f"{model}/{target}/{precision}": expected}


def test_the_restrictions_table_speaks_for_every_release_and_every_rule_reads_it():
    from fleetbuild.plan.rules import parser

    table = parser.restrictions()
    releases = {release for _, release in table}
    assert {"8.2", "8.6", "10.1"} <= releases
    assert all(("DequantizeLinear", r) in table for r in releases)
    assert parser._dq_types("tensorrt", ">=8.2,<8.3") == ("int8",)
    assert parser._dq_types("tensorrt", ">=10.0") == ("int8", "float8e4m3fn", "int4")
    assert "int32" not in parser._dq_types("tensorrt-rtx", None)
    said = {op for (op, release), (_, text) in table.items() if release == "10.1" and text}
    undecided = said - parser.DECIDED
    assert undecided == {"DeformConv", "EyeLike", "GridSample", "Hardmax", "If", "Loop"}, undecided
    assert not any("\\." in text for _, text in table.values())
