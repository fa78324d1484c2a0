"""Real TensorRT-RTX builds (ahead of time, no GPU) through the worker zipapp, and headers read back."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import import_or_require, make_models

from fleetbuild.models.precision import ConvertedModels
from fleetbuild.remote.header import read_header

PROFILES = {"dynamic_mlp": {"x": {"min": [1, 64], "opt": [8, 64], "max": [32, 64]}}}


@pytest.fixture(scope="module")
def rtx():
    return import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("rtx-models")
    paths = {p.stem: p for p in make_models.write_all(root)}
    converted = ConvertedModels(tmp_path_factory.mktemp("cache"))
    for name in list(paths):
        sha = hashlib.sha256(paths[name].read_bytes()).hexdigest()
        paths[f"{name}@fp16"] = converted.convert(paths[name], sha, "fp16")[0]
    calib = root / "calib"
    calib.mkdir()
    rng = np.random.default_rng(3)
    for index in range(4):
        np.save(calib / f"b{index}.npy", rng.standard_normal((1, 3, 32, 32)).astype(np.float32))
    sha = hashlib.sha256(paths["conv_bn_relu"].read_bytes()).hexdigest()
    paths["conv_bn_relu@int8"] = converted.convert(paths["conv_bn_relu"], sha, "int8", sorted(calib.glob("*.npy")), "c1")[0]
    return paths


def build(zipapp, out: Path, model: Path, precision: str, cc: str, inputs=None):
    spec = {"schema": 1, "job_id": f"{model.stem}/{cc}/{precision}", "backend": "tensorrt-rtx",
            "precision": precision, "onnx": str(model), "compute_capability": cc, "inputs": inputs or {},
            "options": {"workspace": 256 << 20}, "key_parts": {"model": model.name}}
    spec_path = out.with_suffix(".json")
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(zipapp), "build", "--spec", str(spec_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    return proc, json.loads((out / "result.json").read_text())


CASES = [(m, p, cc) for m in ("conv_bn_relu", "dynamic_mlp", "two_input") for p in ("fp32", "fp16")
         for cc in ("7.5", "8.0")]


@pytest.mark.parametrize("model,precision,cc", CASES, ids=["-".join(c) for c in CASES])
def test_real_engines(rtx, zipapp, models, tmp_path, model, precision, cc):
    source = models[f"{model}@fp16" if precision == "fp16" else model]
    proc, result = build(zipapp, tmp_path / "out", source, precision, cc, PROFILES.get(model))
    if (model, precision, cc) == ("dynamic_mlp", "fp32", "7.5"):
        # measured: TensorRT-RTX 1.7 has no FP32 GEMM for Turing; the plan rule rtx-turing-fp32-gemm says so
        assert proc.returncode == 10 and result["kind"] == "build"
        assert "FP32 GEMM is not supported" in result["reason"]
        return
    assert proc.returncode == 0, proc.stderr + json.dumps(result)
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    header = read_header(out / "engine.plan")
    size = (out / "engine.plan").stat().st_size
    assert header == {"flavor": "tensorrt-rtx", "version": rtx.__version__, "magic": "vtrt", "size": size,
                      "file_size": size, "truncated": False}
    assert manifest["tensorrt"] == {"flavor": "tensorrt-rtx", "version": rtx.__version__}
    assert manifest["compute_capability"] == cc
    assert manifest["engine"]["sha256"] == hashlib.sha256((out / "engine.plan").read_bytes()).hexdigest()
    inputs = {i["name"]: i for i in manifest["io"]["inputs"]}
    assert all(i["dtype"] == "float" for i in inputs.values())          # I/O types kept by the fp16 conversion
    if model == "dynamic_mlp":
        assert inputs["x"]["shape"] == [-1, 64] and inputs["x"]["profile"]["max"] == [32, 64]
    if model == "two_input":
        assert set(inputs) == {"a", "b"}
    assert (out / "build.log").read_text().count("[INFO]") > 0


def test_int8_qdq_model_builds(rtx, zipapp, models, tmp_path):
    proc, result = build(zipapp, tmp_path / "out", models["conv_bn_relu@int8"], "int8", "8.0")
    assert proc.returncode == 0, proc.stderr + json.dumps(result)


def test_unconverted_model_for_fp16_is_refused(rtx, zipapp, models, tmp_path):
    proc, result = build(zipapp, tmp_path / "out", models["conv_bn_relu"], "fp16", "8.0")
    assert proc.returncode == 3 and result["kind"] == "spec"
    assert "builds strongly typed networks and this ONNX has no fp16 tensors" in result["reason"]


@pytest.mark.parametrize("cc", ["8.7", "9.0", "5.3"])
def test_impossible_compute_capability_fails_before_building(rtx, zipapp, models, tmp_path, cc):
    proc, result = build(zipapp, tmp_path / "out", models["conv_bn_relu"], "fp32", cc)
    assert proc.returncode == 10
    assert result["reason"] == (f"TensorRT-RTX {rtx.__version__} cannot target compute capability {cc} "
                                "(it targets 7.5, 8.0, 8.6, 8.9, 12.0, 12.1)")
    assert (tmp_path / "out" / "build.log").read_text().strip() == ""       # nothing was parsed or built


def test_corrupt_onnx_is_a_parser_failure(rtx, zipapp, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 this is not a model " * 20)
    proc, result = build(zipapp, tmp_path / "out", bad, "fp32", "8.0")
    assert proc.returncode == 10 and result["kind"] == "build"
    assert result["reason"].startswith("the ONNX parser rejected the model: ")
    assert "\n" not in result["reason"] and "Traceback" not in proc.stderr


def test_rerun_is_idempotent_and_a_changed_spec_rebuilds(rtx, zipapp, models, tmp_path):
    out = tmp_path / "out"
    proc, first = build(zipapp, out, models["two_input"], "fp32", "8.0")
    assert proc.returncode == 0
    proc, again = build(zipapp, out, models["two_input"], "fp32", "8.0")
    assert proc.stdout.endswith("already built in " + str(out) + "\n") and again == first
    (out / "engine.plan").write_bytes(b"vtrt corrupted")
    proc, rebuilt = build(zipapp, out, models["two_input"], "fp32", "8.0")
    assert "built engine.plan" in proc.stdout and rebuilt["engine"] == first["engine"]


def test_unwritable_output_dir_is_an_environment_failure(rtx, zipapp, models, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"schema": 1, "job_id": "j", "backend": "tensorrt-rtx", "precision": "fp32",
                                "onnx": str(models["two_input"]), "compute_capability": "8.0"}))
    run = subprocess.run([sys.executable, str(zipapp), "build", "--spec", str(spec), "--out", str(blocker / "out")],
                         capture_output=True, text=True)
    assert run.returncode == 11
    assert run.stderr.startswith(f"fleetbuild-remote: environment: cannot write to output directory {blocker}/out:")
    assert run.stderr.count("\n") == 1


def test_fleetbuild_inspect_and_bundle(rtx, cli, models, tmp_path):
    result = cli("bundle", str(tmp_path / "w.pyz"))
    assert result.code == 0 and result.out.startswith(f"wrote {tmp_path / 'w.pyz'} (sha256 ")
    assert cli("bundle", str(tmp_path / "w2.pyz")).out.split("sha256 ")[1] == result.out.split("sha256 ")[1]
    proc, _ = build(tmp_path / "w.pyz", tmp_path / "out", models["two_input"], "fp32", "8.0")
    assert proc.returncode == 0
    engine = tmp_path / "out" / "engine.plan"
    result = cli("inspect", str(engine), "--json")
    data = json.loads(result.out)
    assert result.code == 0 and data["agree"] is True
    assert data["header"]["version"] == rtx.__version__ and data["header"]["size"] == engine.stat().st_size
    assert [c["field"] for c in data["checks"]] == ["flavor", "version", "sha256"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    manifest["tensorrt"]["version"] = "1.6.0.1"
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    result = cli("inspect", str(engine))
    assert result.code == 1 and "NO" in result.out
    assert cli("inspect", str(tmp_path / "out" / "build.log")).err.startswith(
        f"fleetbuild: error: {tmp_path / 'out' / 'build.log'}: not a TensorRT engine (magic")
    assert cli("inspect", str(tmp_path / "none.plan")).code == 2
    truncated = tmp_path / "truncated.plan"
    truncated.write_bytes(engine.read_bytes()[:1000])
    result = cli("inspect", str(truncated))
    assert result.code == 1
    assert result.err.strip() == (f"fleetbuild: error: {truncated}: truncated: 1,000 of {engine.stat().st_size:,} "
                                  f"bytes (the size its tensorrt-rtx {rtx.__version__} header records); fetch or "
                                  "build it again")


def test_disk_full_is_an_environment_failure_and_leaves_no_engine(rtx, zipapp, models, tmp_path):
    """The worker writes into a 100 KB tmpfs (its own mount namespace) and the 135 KB engine does not fit."""
    import shutil

    from conftest import require

    require(shutil.which("unshare") is not None, "unshare (util-linux)", "apt-get install util-linux")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"schema": 1, "job_id": "two_input/a100/fp32", "backend": "tensorrt-rtx",
                                "precision": "fp32", "onnx": str(models["two_input"]), "compute_capability": "8.0",
                                "host": {"host": "test"}}))
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    script = (f"mount -t tmpfs -o size=100k tmpfs {tiny} || exit 99; "
              f"{sys.executable} {zipapp} build --spec {spec} --out {tiny}/out; echo \"rc=$?\"; "
              f"ls -a {tiny}/out; cat {tiny}/out/result.json")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    require(proc.returncode != 99 and "rc=" in proc.stdout, "mounting a tmpfs in a user namespace", proc.stderr)
    assert "rc=11" in proc.stdout
    listing, result_text = proc.stdout.split("rc=11\n", 1)[1].split("{", 1)
    result = json.loads("{" + result_text)
    assert result["kind"] == "environment" and result["reason"].startswith("disk full")
    assert "engine.plan" not in listing and ".tmp-" not in listing      # no partial engine left behind
    assert proc.stderr.strip().splitlines()[-1].startswith("fleetbuild-remote: environment: two_input/a100/fp32: disk full")
