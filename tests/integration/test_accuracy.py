"""`matrix accuracy` and tolerances: an fp16 conversion that is exact, one that is not (values near
3000, where fp16's step is 2), the tolerance failing that job in `matrix accuracy` and in
`matrix build` (which builds the other), JSON, the HTML report and configuration errors."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import import_or_require
from onnx import TensorProto, helper, numpy_helper

CONFIG = """
[project]
name = "acc"

[defaults]
precisions = ["fp16"]
backend = "tensorrt-rtx"
workspace = "256MiB"
{defaults_extra}

[models.exact]                        # (a + b) * 0.5 on small integers: exact in fp16
onnx = "models/two_input.onnx"
calibration = "calib/*.npz"

[models.lossy]
onnx = "models/offset.onnx"
{lossy_extra}

[matrix]
targets = ["a100"]
include = [{{ model = "lossy", target = "a100", precision = "fp32" }}]

[inventory]
path = "inventory.ini"
"""


def offset_model() -> onnx.ModelProto:
    """y = (x + 3000) - 3000: exact in fp32, rounded to steps of 2 in fp16."""
    inits = [numpy_helper.from_array(np.full(16, 3000, np.float32), "k")]
    nodes = [helper.make_node("Add", ["x", "k"], ["s"]), helper.make_node("Sub", ["s", "k"], ["y"])]
    graph = helper.make_graph(nodes, "offset", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.fixture
def acc_project(project, tmp_path):
    onnx.save(offset_model(), str(tmp_path / "models" / "offset.onnx"))
    (tmp_path / "calib").mkdir()
    rng = np.random.default_rng(5)
    for index in range(3):
        np.savez(tmp_path / "calib" / f"batch{index}.npz", a=rng.integers(-8, 8, (1, 16)).astype(np.float32),
                 b=rng.integers(-8, 8, (1, 16)).astype(np.float32))
    (tmp_path / "inventory.ini").write_text("[a100]\n")

    def write(defaults_extra: str = "", lossy_extra: str = ""):
        return project.write(CONFIG.format(defaults_extra=defaults_extra, lossy_extra=lossy_extra))
    return write


def test_accuracy_figures_without_tolerance(acc_project, cli, tmp_path):
    acc_project()
    result = cli("matrix", "accuracy", "--json", "acc.json", "--report", "acc.html")
    assert result.code == 0, result.err
    data = {j["job_id"]: j for j in json.loads((tmp_path / "acc.json").read_text())["jobs"]}
    exact, lossy = data["exact/a100/fp16"], data["lossy/a100/fp16"]
    assert exact["outputs"] == [{"name": "out", "max_abs": 0.0, "mean_rel": 0.0, "cosine": 1.0}]
    assert (exact["method"], exact["inputs"], exact["verdict"]) == ("converted", "calibration (3 batches)",
                                                                     "no tolerance")
    assert data["lossy/a100/fp16"]["inputs"] == "random (opt shape)"
    out = lossy["outputs"][0]
    assert 0.5 <= out["max_abs"] <= 1.0 and out["cosine"] < 0.9                 # steps of 2 around 3000
    assert data["lossy/a100/fp32"]["verdict"] == "skipped"
    assert "lossy/a100/fp16" in result.out and "no tolerance" in result.out
    assert 'data-job="lossy/a100/fp16"' in (tmp_path / "acc.html").read_text()


def test_tolerance_fails_the_job_in_accuracy_and_build(acc_project, cli, tmp_path):
    acc_project(defaults_extra="tolerance = { cosine = 0.999 }")
    result = cli("matrix", "accuracy", "--json")
    assert result.code == 1
    verdicts = {j["job_id"]: (j["verdict"], j["reason"]) for j in json.loads(result.out)["jobs"]}
    assert verdicts["exact/a100/fp16"] == ("ok", "")
    assert verdicts["lossy/a100/fp16"][0] == "miss"
    assert verdicts["lossy/a100/fp16"][1].startswith("output y: cosine 0.") and "< 0.999" in verdicts["lossy/a100/fp16"][1]

    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    build = cli("matrix", "build", "--local", "--json", "b.json")
    assert build.code == 1, build.err
    results = {r["job_id"]: r for r in json.loads((tmp_path / "b.json").read_text())["results"]}
    assert results["exact/a100/fp16"]["status"] == "built"
    assert results["lossy/a100/fp32"]["status"] == "built"                     # fp32 is not converted
    failed = results["lossy/a100/fp16"]
    assert (failed["status"], failed["kind"]) == ("failed", "accuracy")
    assert failed["reason"].startswith("fp16 accuracy: output y: cosine 0.")
    assert "measuring accuracy of 2 jobs against their tolerance" in build.err


def test_model_tolerance_overrides_defaults(acc_project, cli):
    acc_project(defaults_extra="tolerance = { cosine = 0.999 }", lossy_extra="tolerance = { max_abs = 1.5 }")
    result = cli("matrix", "accuracy", "--json")
    assert result.code == 0, result.out
    assert {j["job_id"]: j["verdict"] for j in json.loads(result.out)["jobs"]}["lossy/a100/fp16"] == "ok"


@pytest.mark.parametrize("value,message", [
    ("{ cosin = 0.9 }", "models.lossy.tolerance: expected a table with keys cosine, max_abs, mean_rel, not 'cosin'"),
    ("{ cosine = 1.5 }", "models.lossy.tolerance: expected cosine: a number in (0, 1]"),
    ("0.999", "models.lossy.tolerance: expected a table like { cosine = 0.999 }"),
])
def test_bad_tolerances_are_one_line_errors(acc_project, cli, value, message):
    acc_project(lossy_extra=f"tolerance = {value}")
    result = cli("matrix", "accuracy")
    assert result.code == 3
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err


def test_fp16_overflow_is_reported(project, cli, tmp_path):
    """Activations above 65504 are inf in fp16: the figure says so instead of looking fine."""
    inits = [numpy_helper.from_array(np.full(8, 400, np.float32), "k")]
    nodes = [helper.make_node("Mul", ["x", "k"], ["m"]), helper.make_node("Mul", ["m", "k"], ["y"])]
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "models" / "big.onnx"))
    project.write('[project]\nname = "big"\n[defaults]\nprecisions = ["fp16"]\nbackend = "tensorrt-rtx"\n'
                  '[models.big]\nonnx = "models/big.onnx"\n[matrix]\ntargets = ["a100"]\n')
    result = cli("matrix", "accuracy", "--json")
    assert result.code == 1
    job = json.loads(result.out)["jobs"][0]
    assert job["verdict"] == "error"
    assert job["reason"].startswith("output y: ") and "inf or NaN in the converted model (overflow)" in job["reason"]
