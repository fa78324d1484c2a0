"""The full-TensorRT build path against the FAKE TensorRT generations (tests/fixtures/fake_tensorrt),
run from the worker zipapp under the host Pythons (3.6 for Nano, 3.8 for JetPack 5, 3.10 for JetPack 6)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import FAKE_TRT, custom_op_model, make_models

FAKE_TRT_FLAGS = {"8.2": "8.2.1.8", "8.6": "8.6.2.3", "10": "10.3.0.26", "11": "11.4.1.2"}


def run_worker(python, zipapp, spec, out, generation, cudart, extra_env=None):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(FAKE_TRT[generation]), "FLEETBUILD_CUDART": str(cudart),
           "FAKE_CUDA_CC": "7.5", "HOME": str(out.parent)}
    env.update(extra_env or {})
    spec_path = out.parent / f"{out.name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run([python, str(zipapp), "build", "--spec", str(spec_path), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else None
    return proc, result


def plan_record(out: Path) -> dict:
    data = (out / "engine.plan").read_bytes()
    assert data[:4] == b"ftrt"
    return json.loads(data[data.index(b"FAKEPLAN") + 8:])


def base_spec(model: Path, precision="fp16", **extra):
    spec = {"schema": 1, "job_id": f"{model.stem}/t4/{precision}", "backend": "tensorrt", "precision": precision,
            "onnx": str(model), "compute_capability": "7.5", "options": {"workspace": 1 << 28},
            "key_parts": {"onnx": model.name}}
    spec.update(extra)
    return spec


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    paths = {p.stem: p for p in make_models.write_all(root)}
    onnx.save(make_models.conv_bn_relu(opset=13), str(root / "conv13.onnx"))
    calib = root / "calib"
    calib.mkdir()
    for index in range(3):
        np.save(calib / f"batch{index}.npy", np.full((1, 3, 32, 32), index + 1, np.float32))
    paths["calib"] = sorted(calib.glob("*.npy"))
    from onnxconverter_common import float16

    fp16 = float16.convert_float_to_float16(onnx.load(str(paths["conv_bn_relu"])), keep_io_types=True)
    onnx.save(fp16, str(root / "conv_fp16.onnx"))
    paths["conv_fp16"] = root / "conv_fp16.onnx"
    return paths


@pytest.mark.parametrize("generation", ["8.2", "8.6", "10"])
def test_fp16_static_model_each_generation(host_python, zipapp, fake_cudart, models, tmp_path, generation):
    out = tmp_path / "out"
    proc, result = run_worker(host_python, zipapp, base_spec(models["conv_bn_relu"]), out, generation, fake_cudart)
    assert proc.returncode == 0, proc.stderr
    assert result["status"] == "ok"
    record = plan_record(out)
    assert "FP16" in record["flags"]
    if generation == "8.2":
        assert record["max_workspace_size"] == 1 << 28 and record["pools"] == {}    # no memory pools in 8.2
        assert record["network_flags"] == 1                                          # EXPLICIT_BATCH
    else:
        assert record["pools"] == {"WORKSPACE": 1 << 28}
        assert "max_workspace_size" not in record or record["max_workspace_size"] == 0
    if generation == "10":
        assert record["network_flags"] == 0                                          # EXPLICIT_BATCH not passed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tensorrt"] == {"flavor": "tensorrt", "version": FAKE_TRT_FLAGS[generation]}
    assert manifest["compute_capability"] == "7.5" and manifest["precision"] == "fp16"
    assert manifest["io"]["inputs"] == [{"name": "images", "dtype": "float", "shape": [1, 3, 32, 32]}]
    assert manifest["builder"]["python"]["executable"] == host_python
    header = subprocess.run([host_python, str(zipapp), "header", str(out / "engine.plan")], capture_output=True,
                            text=True)
    expected_version = None if generation == "8.2" else FAKE_TRT_FLAGS[generation]
    parsed = json.loads(header.stdout)
    assert {k: parsed[k] for k in ("flavor", "version", "magic")} == {"flavor": "tensorrt", "version": expected_version,
                                                                      "magic": "ftrt"}
    assert parsed["truncated"] is False


@pytest.mark.parametrize("generation", ["8.2", "8.6", "10"])
def test_int8_entropy_calibration_through_ctypes(host_python, zipapp, fake_cudart, models, tmp_path, generation):
    out = tmp_path / "out"
    spec = base_spec(models["conv_bn_relu"], "int8", calibration=[str(p) for p in models["calib"]],
                     calibration_cache=str(tmp_path / "calib.cache"))
    proc, result = run_worker(host_python, zipapp, spec, out, generation, fake_cudart)
    assert proc.returncode == 0, proc.stderr
    record = plan_record(out)
    # three batches of 1x3x32x32 float32 filled with 1, 2, 3: first 16 bytes of each read back from "device"
    expected = sum(sum(np.full(4, v, np.float32).tobytes()) for v in (1, 2, 3))
    assert record["calibration"] == {"batches": 3, "batch_size": 1, "checksum": expected}
    assert set(record["flags"]) >= {"INT8", "FP16"}
    assert (tmp_path / "calib.cache").read_bytes() == b"FAKE-CALIBRATION-CACHE"


def test_dynamic_profile_timing_cache_and_features_86(host_python, zipapp, fake_cudart, models, tmp_path):
    out = tmp_path / "out"
    spec = base_spec(models["dynamic_mlp"], "fp16", inputs={"x": {"min": [1, 64], "opt": [8, 64], "max": [32, 64]}},
                     timing_cache=str(tmp_path / "cache" / "t4.cache"),
                     options={"workspace": 1 << 28, "builder_optimization_level": 5, "version_compatible": True,
                              "exclude_lean_runtime": True, "hardware_compatibility_level": "ampere_plus",
                              "timing_cache": True})
    proc, result = run_worker(host_python, zipapp, spec, out, "8.6", fake_cudart)
    assert proc.returncode == 0, proc.stderr
    record = plan_record(out)
    assert record["profiles"] == {"x": [[1, 64], [8, 64], [32, 64]]}
    assert record["builder_optimization_level"] == 5 and record["hardware_compatibility_level"] == "AMPERE_PLUS"
    assert {"VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"} <= set(record["flags"])
    assert record["timing_cache"] is True
    assert (tmp_path / "cache" / "t4.cache").read_bytes().startswith(b"FAKE-TIMING-CACHE v8.6.2.3")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["compat"] == {"version_compatible": True, "hardware_compatibility_level": "ampere_plus",
                                  "exclude_lean_runtime": True}
    assert manifest["io"]["inputs"][0]["profile"] == {"min": [1, 64], "opt": [8, 64], "max": [32, 64]}


def test_82_ignores_optimization_level_and_refuses_86_features(host_python, zipapp, fake_cudart, models, tmp_path):
    spec = base_spec(models["conv_bn_relu"], options={"builder_optimization_level": 5})
    proc, result = run_worker(host_python, zipapp, spec, tmp_path / "a", "8.2", fake_cudart)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert "builder_optimization_level 5 ignored: tensorrt 8.2.1.8 does not have it" in manifest["warnings"]
    spec = base_spec(models["conv_bn_relu"], options={"version_compatible": True})
    proc, result = run_worker(host_python, zipapp, spec, tmp_path / "b", "8.2", fake_cudart)
    assert proc.returncode == 10
    assert result["kind"] == "build"
    assert result["reason"].startswith("tensorrt 8.2.1.8 has no BuilderFlag.VERSION_COMPATIBLE")


def test_10_has_no_same_compute_capability_before_10_9(host_python, zipapp, fake_cudart, models, tmp_path):
    spec = base_spec(models["conv_bn_relu"], options={"hardware_compatibility_level": "same_compute_capability"})
    proc, result = run_worker(host_python, zipapp, spec, tmp_path / "a", "10", fake_cudart)
    assert proc.returncode == 10
    assert result["reason"] == "tensorrt 10.3.0.26 has no hardware compatibility level SAME_COMPUTE_CAPABILITY"


def test_11_is_strongly_typed(host_python, zipapp, fake_cudart, models, tmp_path):
    proc, result = run_worker(host_python, zipapp, base_spec(models["conv_bn_relu"]), tmp_path / "a", "11",
                              fake_cudart)
    assert proc.returncode == 3 and result["kind"] == "spec"
    assert "builds strongly typed networks and this ONNX has no fp16 tensors; convert it first" in result["reason"]
    proc, result = run_worker(host_python, zipapp, base_spec(models["conv_fp16"]), tmp_path / "b", "11", fake_cudart)
    assert proc.returncode == 0, proc.stderr
    record = plan_record(tmp_path / "b")
    assert "FP16" not in record["flags"] and record["network_flags"] == 0


def test_opset_above_the_parser_is_a_build_failure(host_python, zipapp, fake_cudart, models, tmp_path):
    spec = base_spec(models["dynamic_mlp"], inputs={"x": {"min": [1, 64], "opt": [8, 64], "max": [32, 64]}})
    proc, result = run_worker(host_python, zipapp, spec, tmp_path / "a", "8.2", fake_cudart)
    assert proc.returncode == 10
    assert result["reason"] == ("the ONNX parser rejected the model: Unsupported ONNX opset 17 (this TensorRT "
                                "parses up to 13)")
    assert "Traceback" not in proc.stderr
    assert proc.stderr == f"fleetbuild-remote: build: dynamic_mlp/t4/fp16: {result['reason']}\n"


@pytest.mark.parametrize("case,env,spec_change,code,kind,reason", [
    ("wrong-gpu", {"FAKE_CUDA_CC": "8.6"}, {}, 11, "environment",
     "this host's GPU is compute capability 8.6, the job targets 7.5"),
    ("no-gpu", {"FAKE_CUDA_DEVICES": "0"}, {}, 11, "environment",
     "no CUDA GPU visible: full TensorRT builds on the GPU it targets"),
    ("oom", {"FAKE_TRT_OOM": "1"}, {}, 11, "environment", "the builder ran out of memory"),
    ("dla-missing", {}, {"options": {"dla_core": 0}}, 11, "environment",
     "DLA core 0 requested, this host has 0 DLA cores"),
    ("bad-profile", {}, {"inputs": {"images": {"min": [1, 3, 32, 32], "opt": [1, 3, 32, 32], "max": [1, 3, 16, 32]}}},
     10, "build", "TensorRT rejected the optimization profile"),
    ("static-mismatch", {}, {"inputs": {"images": {"min": [1, 3, 16, 16], "opt": [1, 3, 32, 32], "max": [1, 3, 64, 64]}}},
     10, "build", "the builder failed: images: profile dimension 2 must be 32"),
    ("missing-calibration", {}, {"precision": "int8", "calibration": ["/nonexistent/b0.npy"]}, 3, "spec",
     "calibration file not found: /nonexistent/b0.npy"),
    ("int8-no-calibration", {}, {"precision": "int8"}, 10, "build",
     "the builder failed: Calibration failure occurred with no scaling factors detected."),
    ("unknown-input", {}, {"inputs": {"image": {"min": [1], "opt": [1], "max": [1]}}}, 3, "spec",
     "profile given for image, which the network does not have (inputs: images)"),
    ("missing-plugin", {}, {"plugins": [{"provider": "acme", "path": "/opt/none/libplugin.so", "sha256": None,
                                          "tensorrt": "", "registration": "on-load", "ops": ["X"],
                                          "name": "libplugin.so"}]}, 11, "environment",
     "plugin library not found on this host: /opt/none/libplugin.so"),
])
def test_failures_are_one_line_with_their_class(zipapp, fake_cudart, models, tmp_path, case, env, spec_change,
                                                code, kind, reason):
    from conftest import pyenv_python

    python = pyenv_python("3.6") or sys.executable
    spec = base_spec(models["conv_bn_relu"])
    spec.update(spec_change)
    proc, result = run_worker(python, zipapp, spec, tmp_path / "out", "8.6", fake_cudart, extra_env=env)
    assert (proc.returncode, result["kind"], result["reason"]) == (code, kind, reason)
    assert result["status"] == "failed" and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "engine.plan").exists() and not (tmp_path / "out" / "manifest.json").exists()


def test_fakes_are_faithful_about_missing_attributes():
    """The 10.x fake has no max_workspace_size, the 11.x fake no FP16 flag or INT8 calibrator."""
    code = ("import tensorrt as t; c = t.Builder(t.Logger()).create_builder_config(); {}")
    for generation, statement in (("10", "c.max_workspace_size = 1"), ("11", "t.BuilderFlag.FP16"),
                                  ("11", "t.IInt8EntropyCalibrator2"), ("8.2", "c.set_memory_pool_limit"),
                                  ("8.2", "t.HardwareCompatibilityLevel")):
        proc = subprocess.run([sys.executable, "-c", code.format(statement)], capture_output=True, text=True,
                              env={"PYTHONPATH": str(FAKE_TRT[generation])})
        assert "AttributeError" in proc.stderr, (generation, statement, proc.stderr)


def plugin_entry(library: Path, registration: str, tensorrt: str = ">=8.0") -> dict:
    import hashlib

    return {"provider": "acme", "path": str(library), "sha256": hashlib.sha256(library.read_bytes()).hexdigest(),
            "tensorrt": tensorrt, "registration": registration, "ops": ["FancyAct"], "name": library.name}


@pytest.mark.parametrize("generation,registration", [("8.2", "on-load"), ("8.6", "load-library"),
                                                     ("10", "load-library"), ("10", "on-load")])
def test_plugin_library_registers_the_custom_op(zipapp, fake_cudart, plugin_libraries, tmp_path, generation,
                                                 registration):
    """A real shared library, really loaded (ctypes on 8.2, the registry's load_library from 8.6),
    registers FancyAct; the parser then accepts the custom op and the manifest records the library."""
    from conftest import pyenv_python

    python = pyenv_python("3.6") if generation == "8.2" else sys.executable
    model = custom_op_model(tmp_path / "custom.onnx")
    library = plugin_libraries["ok"]
    spec = base_spec(model, precision="fp32", plugins=[plugin_entry(library, registration)])
    proc, result = run_worker(python or sys.executable, zipapp, spec, tmp_path / "out", generation, fake_cudart)
    assert proc.returncode == 0, (proc.stderr, result)
    record = plan_record(tmp_path / "out")
    assert "FancyAct" in record["creators"]
    assert record["plugins"] == ([str(library)] if registration == "load-library" else [])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["plugins"] == [{"provider": "acme", "name": "libacme.so", "sha256": spec["plugins"][0]["sha256"],
                                    "registration": registration, "creators": ["FancyAct"],
                                    "size": library.stat().st_size}]


def test_version_compatible_engine_serializes_its_plugin_library(zipapp, fake_cudart, plugin_libraries, tmp_path):
    model = custom_op_model(tmp_path / "custom.onnx")
    entry = plugin_entry(plugin_libraries["ok"], "load-library")
    spec = base_spec(model, precision="fp32", plugins=[entry],
                     options={"workspace": 1 << 28, "version_compatible": True})
    proc, result = run_worker(sys.executable, zipapp, spec, tmp_path / "out", "10", fake_cudart)
    assert proc.returncode == 0, (proc.stderr, result)
    assert plan_record(tmp_path / "out")["plugins_to_serialize"] == [str(plugin_libraries["ok"])]


@pytest.mark.parametrize("case,generation,reason", [
    ("broken", "10", "plugin library libacme.so does not load: libacme.so: undefined symbol: fleetbuild_symbol_nowhere"),
    ("empty", "10", "plugin library libacme.so (layers.acme) registered no creator for FancyAct (registered: none)"),
    ("load-library-on-8.2", "8.2", "plugin library libacme.so registers through load_library, which TensorRT "
     "8.2.1.8 does not have (8.6+)"),
    ("no-library-for-version", "8.6", "layers.acme has no library for TensorRT 8.6.2.3 (it has libacme.so for "
     ">=10.0,<11)"),
])
def test_plugin_library_failures_name_the_library(zipapp, fake_cudart, plugin_libraries, tmp_path, case, generation,
                                                  reason):
    model = custom_op_model(tmp_path / "custom.onnx")
    library = plugin_libraries["ok" if case in ("load-library-on-8.2", "no-library-for-version") else case]
    registration = "on-load" if case in ("broken", "empty") else "load-library"
    entry = plugin_entry(library, registration, ">=10.0,<11" if case == "no-library-for-version" else ">=8.0")
    spec = base_spec(model, precision="fp32", plugins=[entry])
    proc, result = run_worker(sys.executable, zipapp, spec, tmp_path / "out", generation, fake_cudart)
    assert result["status"] == "failed" and "Traceback" not in proc.stderr, proc.stderr
    assert result["reason"] == reason
    assert result["kind"] == ("environment" if case == "no-library-for-version" else "build")
    assert not (tmp_path / "out" / "engine.plan").exists()


def test_dla_core_with_gpu_fallback(zipapp, fake_cudart, models, tmp_path):
    spec = base_spec(models["conv_bn_relu"], options={"dla_core": 1, "gpu_fallback": True}, compute_capability="8.7")
    proc, result = run_worker(sys.executable, zipapp, spec, tmp_path / "out", "10", fake_cudart,
                              extra_env={"FAKE_TRT_DLA_CORES": "2", "FAKE_CUDA_CC": "8.7"})
    assert proc.returncode == 0, proc.stderr
    record = plan_record(tmp_path / "out")
    assert record["device"] == "DLA" and record["dla_core"] == 1 and "GPU_FALLBACK" in record["flags"]
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["phase"] == "done" and status["job_id"] == spec["job_id"]


def test_read_only_output_filesystem(zipapp, fake_cudart, models, tmp_path):
    import shutil

    from conftest import require

    require(shutil.which("unshare") is not None, "unshare (util-linux)", "apt-get install util-linux")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(base_spec(models["conv_bn_relu"])))
    ro = tmp_path / "ro"
    ro.mkdir()
    script = f"mount -t tmpfs -o ro tmpfs {ro} || exit 99; {sys.executable} {zipapp} build --spec {spec} --out {ro}/out"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(FAKE_TRT["8.6"]), "PATH": "/usr/bin:/bin"})
    require(proc.returncode != 99, "mounting a tmpfs in a user namespace", proc.stderr)
    assert proc.returncode == 11
    assert proc.stderr == (f"fleetbuild-remote: environment: cannot write to output directory {ro}/out: "
                           "Read-only file system\n")
