"""`fleetbuild matrix build` over real Ansible and real SSH: a 2-model x 4-target matrix on the
loopback test fleet. T4/A100 stand-ins build real TensorRT-RTX engines; the Orin stand-in (Python
3.10) and the Nano stand-in (Python 3.6) run the FAKE TensorRT of their JetPack generation."""
from __future__ import annotations

import json
import sys

import pytest
from conftest import FAKE_TRT, FIXTURES, import_or_require, pyenv_python, require

sys.path.insert(0, str(FIXTURES))
from fleet import FleetHost  # noqa: E402

CONFIG = """
[project]
name = "fleet-e2e"
version = "1.0.0"

[defaults]
precisions = ["fp16"]
workspace = "256MiB"

[models.conv]
onnx = "models/conv_bn_relu.onnx"

[models.pair]
onnx = "models/two_input.onnx"

[matrix]
targets = ["t4", "a100", "orin", "nano"]
include = [{ target = "t4", backend = "tensorrt-rtx" }, { target = "a100", backend = "tensorrt-rtx" }]

[inventory]
path = "inventory.ini"
"""


@pytest.fixture
def fleet_project(project, fleet_factory, fake_cudart):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    py36, py310 = pyenv_python("3.6"), pyenv_python("3.10")
    require(py36 is not None and py310 is not None, "Python 3.6 and 3.10 (pyenv)", "the machine image's pyenv")
    fake = {"FLEETBUILD_CUDART": str(fake_cudart)}
    fleet = fleet_factory([
        FleetHost("gpu-t4", "t4", "t4", sys.executable),
        FleetHost("gpu-a100", "a100", "a100", sys.executable),
        FleetHost("orin-1", "orin", "orin", py310, env={**fake, "PYTHONPATH": str(FAKE_TRT["8.6"]), "FAKE_CUDA_CC": "8.7"}),
        FleetHost("nano-1", "nano", "nano", py36, env={**fake, "PYTHONPATH": str(FAKE_TRT["8.2"]), "FAKE_CUDA_CC": "5.3"}),
    ])
    fleet.inventory(project.root / "inventory.ini")
    project.write(CONFIG)
    return project, fleet


def test_two_models_four_targets_over_ssh(fleet_project, cli):
    project, fleet = fleet_project
    result = cli("matrix", "build", "--json", "results.json")
    data = json.loads((project.root / "results.json").read_text())
    assert result.code == 0, result.err + result.out
    by_job = {r["job_id"]: r for r in data["results"]}
    assert sorted(by_job) == sorted(f"{m}/{t}/fp16" for m in ("conv", "pair") for t in ("t4", "a100", "orin", "nano"))
    assert {r["host"] for r in by_job.values()} == {"gpu-t4", "gpu-a100", "orin-1", "nano-1"}
    assert all(r["status"] == "built" for r in by_job.values())
    store = project.root / "artifacts"
    manifests = [json.loads(p.read_text()) for p in (store / "builds").glob("*.json")]
    assert len(manifests) == 8
    flavors = {m["job_id"]: (m["tensorrt"]["flavor"], m["tensorrt"]["version"], m["builder"]["python"]["version"][:4])
               for m in manifests}
    assert flavors["conv/nano/fp16"] == ("tensorrt", "8.2.1.8", "3.6.")
    assert flavors["conv/orin/fp16"] == ("tensorrt", "8.6.2.3", "3.10")
    assert flavors["pair/t4/fp16"][0] == "tensorrt-rtx"
    for manifest in manifests:
        blob = store / "blobs" / "sha256" / manifest["engine"]["sha256"]
        assert blob.exists() and blob.stat().st_size == manifest["engine"]["size"]
    assert manifests[0]["builder"]["jetson"] is None or manifests[0]["builder"]["jetson"]["board"]


def test_wrong_hardware_in_a_group_is_left_out(project, fleet_factory, cli):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    fleet = fleet_factory([FleetHost("mislabelled", "a100", "t4", sys.executable)], first_address=40)
    fleet.inventory(project.root / "inventory.ini")
    project.write(CONFIG.replace('targets = ["t4", "a100", "orin", "nano"]', 'targets = ["a100"]')
                  .replace('{ target = "t4", backend = "tensorrt-rtx" }, ', ''))
    result = cli("matrix", "build", "--json")
    data = json.loads(result.out)
    assert result.code == 1
    reasons = {r["job_id"]: r["reason"] for r in data["results"]}
    assert reasons["conv/a100/fp16"] == ("no host can build it (mislabelled: its GPU (Tesla T4, CC 7.5) does not match target "
                                         "a100 (CC 8.0))")


def test_hosts_probe_then_list_with_age(project, fleet_factory, cli):
    fleet = fleet_factory([FleetHost("gpu-t4", "t4", "t4", sys.executable),
                           FleetHost("odd", "a100", "t4", sys.executable)], first_address=50)
    fleet.inventory(project.root / "inventory.ini")
    project.write(CONFIG)
    assert "never probed" in cli("hosts", "list").out
    result = cli("hosts", "probe", "--json")
    assert result.code == 1                                              # the T4 in the a100 group is flagged
    hosts = {h["host"]: h for h in json.loads(result.out)["hosts"]}
    assert hosts["gpu-t4"]["status"] == "ok" and hosts["gpu-t4"]["facts"]["gpus"][0]["compute_capability"] == "7.5"
    assert hosts["odd"]["status"] == "flagged"
    assert hosts["odd"]["problems"] == ["a100: its GPU (Tesla T4, CC 7.5) does not match target a100 (CC 8.0)"]
    listing = cli("hosts", "list")
    assert listing.code == 0 and "s ago" in listing.out and "Tesla T4" in listing.out


def test_old_run_directories_are_pruned_on_hosts(project, fleet_factory, cli):
    import os
    import time

    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    fleet = fleet_factory([FleetHost("gpu-t4", "t4", "t4", sys.executable)], first_address=55)
    fleet.inventory(project.root / "inventory.ini")
    project.write(CONFIG.replace('targets = ["t4", "a100", "orin", "nano"]', 'targets = ["t4"]')
                  .replace('{ target = "a100", backend = "tensorrt-rtx" }', '{ target = "t4", precision = "fp16" }'))
    work = fleet.hosts["gpu-t4"].workdir
    old_run, recent_run = work / "jobs" / "20200101-old", work / "batches" / "recent-1"
    inputs = work / "inputs" / "x" / "m.onnx"
    for path in (old_run, recent_run, inputs.parent):
        path.mkdir(parents=True)
    inputs.write_bytes(b"onnx")
    past = time.time() - 10 * 86400
    for path in (old_run, inputs):
        os.utime(path, (past, past))
    assert cli("hosts", "probe").code == 0
    # an input goes by its ctime (last uploaded or used), not the mtime tar restored from the controller
    assert not old_run.exists() and recent_run.exists() and inputs.exists()
