from __future__ import annotations

import json
import os

import numpy as np

from fleetbuild.models.onnxinfo import OnnxInspector


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


def test_new_weights_under_an_unchanged_graph_file_make_a_new_key_and_input(project, cli):
    """A retrained model exported with external data keeps a byte-identical .onnx file: the key and
    the staged input directory follow the weights too, or the old engine would be reused."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    models = project.root / "models"
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ext",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
                              initializer=[numpy_helper.from_array(np.ones((64, 64), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(models / "ext.onnx"), save_as_external_data=True, location="ext.bin", size_threshold=0)
    graph_bytes = (models / "ext.onnx").read_bytes()
    project.write('[project]\nname = "p"\n[models.ext]\nonnx = "models/ext.onnx"\n[matrix]\ntargets = ["t4"]\n')
    first = _keys(cli)
    assert cli("matrix", "stage", "--out", str(project.root / "stage1")).code == 0
    (models / "ext.bin").write_bytes(np.full((64, 64), 2, np.float32).tobytes())     # retrained: same shapes
    assert (models / "ext.onnx").read_bytes() == graph_bytes
    second = _keys(cli)
    assert first.keys() == second.keys() and first
    assert all(second[job] != first[job] for job in first)
    assert cli("matrix", "stage", "--out", str(project.root / "stage2")).code == 0
    staged = [sorted(p.relative_to(project.root / d).as_posix() for p in (project.root / d / "inputs").rglob("ext.bin"))
              for d in ("stage1", "stage2")]
    assert len(staged[0]) == len(staged[1]) == 1 and staged[0] != staged[1]
    assert (project.root / "stage2" / staged[1][0]).read_bytes() == (models / "ext.bin").read_bytes()
