"""The Triton layout: config.pbtxt parsed by protobuf's text format against Triton's own
ModelConfig message (model_config_pb2 from the tritonclient wheel), for a device pull with
--layout triton (zipapp on Python 3.6, rollback) and for `artifacts export` of a release built
with TensorRT-RTX for two compute capabilities (cc_model_filenames)."""
from __future__ import annotations

import functools
import importlib.util
import json
import os

import pytest
from conftest import import_or_require
from test_device_choices import device, keys, pull_args, release  # noqa: F401  (keys is a fixture)


@functools.lru_cache(maxsize=1)
def model_config():
    """Triton's ModelConfig message class, loaded from the wheel without tritonclient's gRPC client."""
    tritonclient = import_or_require("tritonclient", "pip install 'fleetbuild[test]' (make test does)")
    path = os.path.join(os.path.dirname(tritonclient.__file__), "grpc", "model_config_pb2.py")
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ModelConfig


def parse(text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, model_config()())


def test_device_pull_triton_layout_and_rollback(zipapp, tmp_path, keys):  # noqa: F811
    _, public, key = keys
    store, entries = release(tmp_path, key, [("det/a10/fp16", "8.6", "10.5.0.1", {})], version="1.0")
    manifest_key = entries["det/a10/fp16"]["manifest"]
    manifest = json.loads(store.read_bytes(manifest_key)[0])
    manifest["io"] = {"inputs": [{"name": "images", "dtype": "float", "shape": [-1, 3, 224, 224]}],
                      "outputs": [{"name": "scores", "dtype": "half", "shape": [-1, 1000]}]}
    store.write_bytes(manifest_key, json.dumps(manifest).encode())
    proc = device(zipapp, tmp_path, public, *pull_args(tmp_path, "--version", "1.0", "--layout", "triton"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"installed det/a10/fp16 as {tmp_path / 'engines'}/det (Triton model repository entry)\n"
    config = parse((tmp_path / "engines" / "det" / "config.pbtxt").read_text())
    assert (config.name, config.platform, config.max_batch_size) == ("det", "tensorrt_plan", 0)
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("images", 11, [-1, 3, 224, 224])]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [("scores", 10, [-1, 1000])]
    assert config.version_policy.latest.num_versions == 1
    assert (tmp_path / "engines" / "det" / "1" / "model.plan").read_bytes().startswith(b"ftrtdet/a10/fp161.0")
    release(tmp_path, key, [("det/a10/fp16", "8.6", "10.5.0.1", {})], version="1.1")
    newer = device(zipapp, tmp_path, public, *pull_args(tmp_path, "--version", "1.1", "--layout", "triton"))
    assert newer.returncode == 0, newer.stderr
    assert sorted(os.listdir(tmp_path / "engines" / "det")) == ["1", "2", "config.pbtxt"]
    listed = device(zipapp, tmp_path, public, "installed", "--out", str(tmp_path / "engines"))
    rows = json.loads(listed.stdout)
    assert [(r["model"], r["layout"], r["triton_version"], r["version"], r["previous"]) for r in rows] == [
        ("det", "triton", 2, "1.1", "1.0")], listed.stderr
    back = device(zipapp, tmp_path, public, "rollback", "--model", "det", "--out", str(tmp_path / "engines"),
                  "--layout", "triton")
    assert back.returncode == 0 and "release fleet 1.0" in back.stdout, back.stderr
    assert sorted(os.listdir(tmp_path / "engines" / "det")) == ["1", "config.pbtxt"]


def test_artifacts_export_serves_two_compute_capabilities(project, cli, tmp_path):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    project.write("""
[project]
name = "tri"
version = "3.0"

[defaults]
precisions = ["fp16"]
backend = "tensorrt-rtx"
workspace = "256MiB"

[models.mlp]
onnx = "models/dynamic_mlp.onnx"
inputs.x = { min = [1, 64], opt = [8, 64], max = [32, 64] }

[matrix]
targets = ["t4", "a100"]

[inventory]
path = "inventory.ini"
""")
    (tmp_path / "inventory.ini").write_text("[t4]\n[a100]\n")
    assert cli("matrix", "build", "--local", "--publish").code == 0
    result = cli("artifacts", "export", "3.0", "--layout", "triton", "--out", "repo", "--allow-unsigned")
    assert result.code == 0, result.err
    config = parse((tmp_path / "repo" / "mlp" / "config.pbtxt").read_text())
    assert dict(config.cc_model_filenames) == {"7.5": "model_7_5.plan", "8.0": "model_8_0.plan"}
    assert [(t.name, list(t.dims)) for t in config.input] == [("x", [-1, 64])]
    for name in ("model_7_5.plan", "model_8_0.plan"):
        assert (tmp_path / "repo" / "mlp" / "1" / name).read_bytes()[:4] == b"vtrt"
    header = json.loads(cli("inspect", str(tmp_path / "repo" / "mlp" / "1" / "model_7_5.plan"), "--json").out)
    assert header["header"]["flavor"] == "tensorrt-rtx"


def test_types_triton_cannot_serve_are_refused():
    from fleetbuild.remote.triton import config_pbtxt

    with pytest.raises(ValueError, match="tensor s has type string"):
        config_pbtxt("m", {"inputs": [{"name": "s", "dtype": "string", "shape": [1]}], "outputs": []})
