"""`matrix plan --trial`: every TensorRT-RTX job built on the controller (real TensorRT-RTX, CPU only)
before anything is dispatched; its verdict is part of the plan, cached by content."""
from __future__ import annotations

import json

import numpy as np
from conftest import import_or_require
from onnx import TensorProto, helper, numpy_helper

CONFIG = """
[project]
name = "trial"
[defaults]
precisions = ["fp32", "fp16"]
backend = "tensorrt-rtx"
{extra}
[models.m]
onnx = "m.onnx"
[models.r]
onnx = "r.onnx"
inputs.x = {{ min = [1, 6], opt = [1, 6], max = [1, 6] }}
[matrix]
targets = ["a100"]
"""


def int_input_conv():
    """x:int32 -> Cast(float) -> Conv: onnxconverter-common keeps the model's own Cast in float32 while
    the weights become float16 (TensorRT refuses a convolution of mixed types, seen on real models);
    fleetbuild's fp16 conversion turns the Cast into a cast to float16, so both precisions build."""
    weights = numpy_helper.from_array(np.random.default_rng(0).random((4, 3, 3, 3), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
                               helper.make_node("Conv", ["f", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.INT32, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def indivisible_reshape():
    """x[1, n] reshaped to [1, 4, -1], at a profile of n = 6: no rule checks a reshape's volume (only
    --check-shapes would run it), and TensorRT-RTX refuses to build it."""
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(np.array([1, 4, -1], np.int64), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def plan(cli, project, extra="", *flags):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    (project.root / "m.onnx").write_bytes(int_input_conv().SerializeToString())
    (project.root / "r.onnx").write_bytes(indivisible_reshape().SerializeToString())
    project.write(CONFIG.format(extra=extra))
    result = cli("matrix", "plan", "--json", *flags)
    return result, {j["id"]: j for j in json.loads(result.out)["jobs"]}


def test_a_job_the_rules_pass_and_the_builder_refuses_becomes_invalid(cli, project):
    result, jobs = plan(cli, project, "", "--trial")
    assert result.code == 1
    for job in (jobs["m/a100/fp32"], jobs["m/a100/fp16"]):
        assert job["status"] == "ok" and job["trial"]["verdict"] == "built", job
        assert job["trial"]["text"].startswith("built with TensorRT-RTX") and job["trial"]["text"].endswith("SM80")
    # fp16: the conversion makes the model's own Cast a cast to float16 (an unnamed node: it was missed
    # before fleetbuild named nodes first), and the builder agrees
    for job in (jobs["r/a100/fp32"], jobs["r/a100/fp16"]):
        assert job["status"] == "invalid" and job["trial"]["verdict"] == "failed", job
        [problem] = [p for p in job["problems"] if p["code"] == "trial-failed"]
        assert "TensorRT-RTX" in problem["message"], problem
    without, plain = plan(cli, project)
    assert without.code == 0 and "trial" not in plain["r/a100/fp16"]       # only with --trial


def test_a_second_trial_builds_nothing(cli, project, tmp_path):
    plan(cli, project, "", "--trial")
    cache = tmp_path / ".cache" / "trial"
    first = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(first) == 4
    _, jobs = plan(cli, project, "", "--trial")
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == first
    assert jobs["m/a100/fp32"]["trial"]["verdict"] == "built"


def test_a_refusal_the_builder_disagrees_with_is_reported(cli, project):
    result, jobs = plan(cli, project, 'workspace = "2TiB"', "--trial", "--only", "m/a100/fp32")
    job = jobs["m/a100/fp32"]
    assert job["status"] == "invalid" and job["trial"]["verdict"] == "built", job
    assert {p["code"] for p in job["problems"]} == {"workspace-too-large", "trial-disagrees"}
    terminal = cli("matrix", "plan", "--trial", "--only", "m/a100/fp32")
    assert "trial" in terminal.out and "built with TensorRT-RTX" in terminal.out


def test_ignore_plan_builds_what_a_rule_refused(cli, project):
    """--ignore-plan CODE: the refused job goes to the builder, which then says whether the rule was
    right (a Turing fp32 GEMM: TensorRT-RTX fails too) or guards more than it checks (a workspace no
    GPU has: it builds)."""
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    project.write("""
[project]
name = "ignore"
[defaults]
precisions = ["fp32"]
backend = "tensorrt-rtx"
workspace = "2TiB"
[models.mlp]
onnx = "models/dynamic_mlp.onnx"
inputs.x = { min = [1, 64], opt = [8, 64], max = [32, 64] }
[matrix]
targets = ["t4", "a100"]
""")
    refused = cli("matrix", "build", "--local", "--json", "-")
    rows = {r["job_id"]: r for r in json.loads(refused.out)["results"]}
    assert refused.code == 1 and {r["status"] for r in rows.values()} == {"invalid"}
    forced = cli("matrix", "build", "--local", "--json", "-", "--ignore-plan", "workspace-too-large",
                 "--ignore-plan", "rtx-turing-fp32-gemm")
    rows = {r["job_id"]: r for r in json.loads(forced.out)["results"]}
    assert rows["mlp/a100/fp32"]["status"] == "built", rows
    assert rows["mlp/t4/fp32"]["status"] == "failed" and "Turing" in rows["mlp/t4/fp32"]["reason"], rows


def test_the_trial_is_in_the_html_report_and_the_github_summary(cli, project, tmp_path):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    (project.root / "m.onnx").write_bytes(int_input_conv().SerializeToString())
    (project.root / "r.onnx").write_bytes(indivisible_reshape().SerializeToString())
    project.write(CONFIG.format(extra=""))
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    result = cli("matrix", "plan", "--trial", "--report", "plan.html",
                 extra_env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs)})
    assert result.code == 1, result.err
    html = (project.root / "plan.html").read_text()
    assert "<dt>trial</dt>" in html and "built with TensorRT-RTX" in html and "trial-failed" in html
    text = summary.read_text()
    assert "Trial builds (TensorRT-RTX 1." in text and "2 built, 2 failed" in text, text
    assert "`r/a100/fp16` (invalid): trial-failed" in text
