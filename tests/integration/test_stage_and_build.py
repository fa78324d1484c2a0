"""Plan -> stage -> worker (real TensorRT-RTX) -> inspect: the quickstart matrix built by hand."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
from conftest import ROOT, import_or_require

from fleetbuild.remote.buildkey import build_key


def test_quickstart_staged_and_built_by_hand(tmp_path, cli, project):
    rtx = import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    for name in ("fleet.toml", "inventory.ini"):
        shutil.copy(ROOT / "examples" / "quickstart" / name, project.root / name)
    calib = project.root / "calib"
    calib.mkdir()
    for index in range(2):
        np.save(calib / f"b{index}.npy", np.random.default_rng(index).standard_normal((1, 3, 32, 32)).astype(np.float32))
    with open(project.root / "fleet.toml", "a") as handle:
        handle.write('\n[models.conv_int8]\nonnx = "models/conv_bn_relu.onnx"\nprecisions = ["int8"]\n'
                     'calibration = "calib/*.npy"\n')
    result = cli("matrix", "stage", "--out", "stage")
    assert result.code == 0, result.err
    stage = project.root / "stage"
    specs = sorted(stage.glob("jobs/**/spec.json"))
    assert len(specs) == 11 and result.out.splitlines()[-1].startswith("11 jobs staged in stage")
    assert len(list((stage / "inputs").glob("*/conv_bn_relu.onnx"))) == 3      # fp32, fp16 and int8 Q/DQ forms
    shutil.move(str(stage), str(tmp_path / "elsewhere"))                       # relative paths: movable
    stage = tmp_path / "elsewhere"
    for spec_path in sorted(stage.glob("jobs/**/spec.json")):
        out = spec_path.parent / "out"
        proc = subprocess.run([sys.executable, str(stage / "fleetbuild-remote.pyz"), "build", "--spec", str(spec_path),
                               "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (spec_path, proc.stderr)
        spec = json.loads(spec_path.read_text())
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["build_key"] == build_key(spec["key_parts"], {
            "flavor": "tensorrt-rtx", "version": rtx.__version__, "compute_capability": spec["compute_capability"]})
        inspected = cli("inspect", str(out / "engine.plan"), "--json")
        assert inspected.code == 0 and json.loads(inspected.out)["agree"] is True
    keys = [json.loads(p.read_text())["key_parts"]["onnx_sha256"] for p in stage.glob("jobs/conv_bn_relu/*/*/spec.json")]
    assert len(set(keys)) == 2                                                  # fp32 source vs its fp16 conversion


def test_a_model_with_external_data_is_staged_whole_and_builds(tmp_path, cli, project):
    """A model whose weights live in an external-data file (as exporters write models over 2 GB):
    the staged input directory holds both files, moved elsewhere the worker builds it with real
    TensorRT-RTX, and the key follows the weights."""
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ext",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(project.root / "models" / "ext.onnx"), save_as_external_data=True, location="ext.weights",
              size_threshold=0)
    project.write('[project]\nname = "ext"\n[defaults]\nbackend = "tensorrt-rtx"\nworkspace = "256MiB"\n'
                  '[models.ext]\nonnx = "models/ext.onnx"\n[matrix]\ntargets = ["a100"]\nprecisions = ["fp32"]\n')
    result = cli("matrix", "stage", "--out", "stage")
    assert result.code == 0, result.err
    staged = sorted(p.relative_to(project.root / "stage" / "inputs").parts[1:]
                    for p in (project.root / "stage" / "inputs").rglob("*") if p.is_file())
    assert staged == [("ext.onnx",), ("ext.weights",)]
    shutil.move(str(project.root / "stage"), str(tmp_path / "elsewhere"))
    spec_path = next((tmp_path / "elsewhere").glob("jobs/**/spec.json"))
    out = spec_path.parent / "out"
    proc = subprocess.run([sys.executable, str(tmp_path / "elsewhere" / "fleetbuild-remote.pyz"), "build", "--spec",
                           str(spec_path), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(spec_path.read_text())["key_parts"]["external_data"][0][0] == "ext.weights"
    inspected = cli("inspect", str(out / "engine.plan"), "--json")
    assert inspected.code == 0 and json.loads(inspected.out)["agree"] is True
