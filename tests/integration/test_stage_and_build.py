"""Plan -> stage -> worker (real TensorRT-RTX) -> inspect: the quickstart matrix built by hand."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
from conftest import ROOT, import_or_require

from fleetbuild.buildkey import build_key


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
