from __future__ import annotations

import json
import os

import numpy as np

from fleetbuild.onnxinfo import OnnxInspector


def _keys(cli):
    result = cli("matrix", "plan", "--json")
    assert result.code == 0, result.err
    return {j["id"]: j["plan_key"] for j in json.loads(result.out)["jobs"]}


BASE = ('[project]\nname = "p"\n[defaults]\nprecisions = ["fp16", "int8"]\n[models.conv]\n'
        'onnx = "models/conv_bn_relu.onnx"\ncalibration = "calib/*.npy"\n[matrix]\ntargets = ["t4", "a100"]\n')


def test_plan_keys_are_stable_and_decided_by_engine_inputs(project, cli):
    (project.root / "calib").mkdir()
    np.save(project.root / "calib" / "a.npy", np.zeros((1, 3, 32, 32), np.float32))
    project.write(BASE)
    first = _keys(cli)
    assert len(set(first.values())) == 4
    assert _keys(cli) == first
    project.write(BASE.replace("[defaults]\n", "[defaults]\nbuilder_optimization_level = 3\n"))
    assert _keys(cli) == first                                   # explicit default == implicit default
    project.write(BASE.replace("[defaults]\n", "[defaults]\nworkspace = \"1GiB\"\n"))
    assert _keys(cli)["conv/t4/fp16"] != first["conv/t4/fp16"]
    project.write(BASE)
    np.save(project.root / "calib" / "a.npy", np.ones((1, 3, 32, 32), np.float32))
    changed = _keys(cli)
    assert changed["conv/t4/int8"] != first["conv/t4/int8"]      # calibration data decides int8 engines
    assert changed["conv/t4/fp16"] == first["conv/t4/fp16"]      # ...and nothing else


def test_onnx_inspection_is_cached_by_content(project, tmp_path):
    cache = tmp_path / "cache"
    model = project.root / "models" / "conv_bn_relu.onnx"
    info = OnnxInspector(cache).inspect(model)
    assert info.opset == 13 and info.inputs[0].name == "images" and info.inputs[0].shape == (1, 3, 32, 32)
    cached = cache / "onnx" / f"{info.sha256}.json"
    assert cached.exists()
    data = json.loads(cached.read_text())
    data["info"]["node_count"] = 999                             # prove the second read comes from the cache
    cached.write_text(json.dumps(data))
    assert OnnxInspector(cache).inspect(model).node_count == 999
    os.utime(model, ns=(1, 1))                                    # new stamp: hash again, same content
    assert OnnxInspector(cache).inspect(model).node_count == 999
    model.write_bytes(model.read_bytes() + b"")
    other = project.root / "models" / "dynamic_mlp.onnx"
    mlp = OnnxInspector(cache).inspect(other)
    assert mlp.inputs[0].shape == ("batch", 64) and mlp.inputs[0].dynamic_dims == (0,)
