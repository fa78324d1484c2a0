"""Custom layers end to end over the loopback fleet: a model with a custom op, its provider's
libraries (real shared libraries compiled by the test, tests/fixtures/plugins/fancy_act.c) per CPU
arch and TensorRT range, staged to the hosts by content and loaded there for real (the FAKE
TensorRT of each generation records the registry calls); a rebuilt library rebuilds only its
engines; publish lists the libraries and a Python 3.6 device pulls them beside the engine."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAKE_TRT, FIXTURES, custom_op_model, pyenv_python, require

sys.path.insert(0, str(FIXTURES))
from fleet import FleetHost  # noqa: E402

CONFIG = """
[project]
name = "layers"
version = "1.0"

[defaults]
precisions = ["fp32"]
backend = "tensorrt"

[layers.acme]
ops = ["acme.layers::FancyAct"]
[[layers.acme.libraries]]
path = "plugins/libacme-x86_64-trt10.so"
arch = "x86_64"
tensorrt = ">=10.0,<11"
registration = "load-library"
[[layers.acme.libraries]]
path = "plugins/libacme-aarch64-trt82.so"
arch = "aarch64"
tensorrt = ">=8.2,<8.3"

[models.det]
onnx = "models/custom.onnx"
layers = ["acme"]

[matrix]
targets = ["t4", "nano"]

[inventory]
path = "inventory.ini"
"""


@pytest.fixture
def layered(project, fleet_factory, fake_cudart, plugin_libraries):
    py36, py38 = pyenv_python("3.6"), pyenv_python("3.8")
    require(py36 is not None and py38 is not None, "Python 3.6 and 3.8 (pyenv)", "the machine image's pyenv")
    fake = {"FLEETBUILD_CUDART": str(fake_cudart)}
    fleet = fleet_factory([
        FleetHost("t4-1", "t4", "t4", py38, env={**fake, "PYTHONPATH": str(FAKE_TRT["10"]), "FAKE_CUDA_CC": "7.5"}),
        FleetHost("nano-1", "nano", "nano", py36, env={**fake, "PYTHONPATH": str(FAKE_TRT["8.2"]),
                                                      "FAKE_CUDA_CC": "5.3"}),
    ], first_address=140)
    fleet.inventory(project.root / "inventory.ini")
    custom_op_model(project.root / "models" / "custom.onnx")
    (project.root / "plugins").mkdir()
    shutil.copy(plugin_libraries["ok"], project.root / "plugins" / "libacme-x86_64-trt10.so")
    shutil.copy(plugin_libraries["ok"], project.root / "plugins" / "libacme-aarch64-trt82.so")
    project.write(CONFIG)
    return project, fleet


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_custom_layer_through_build_publish_and_pull(layered, cli, plugin_libraries, zipapp, tmp_path):
    project, fleet = layered
    x86 = project.root / "plugins" / "libacme-x86_64-trt10.so"
    result = cli("matrix", "build", "--json")
    assert result.code == 0, result.err + result.out
    first = {r["job_id"]: r for r in json.loads(result.out)["results"]}
    assert {j: r["status"] for j, r in first.items()} == {"det/t4/fp32": "built", "det/nano/fp32": "built"}
    store = project.root / "artifacts"
    manifests = {m["job_id"]: m for m in (json.loads(p.read_text()) for p in (store / "builds").glob("*.json"))}
    assert manifests["det/t4/fp32"]["plugins"] == [{
        "provider": "acme", "name": "libacme-x86_64-trt10.so", "sha256": sha256(x86), "registration": "load-library",
        "creators": ["FancyAct"], "size": x86.stat().st_size}]
    assert manifests["det/nano/fp32"]["plugins"][0]["registration"] == "on-load"      # 8.2: dlopen, no load_library
    staged = list(fleet.hosts["t4-1"].workdir.glob("inputs/plugins/*/libacme-x86_64-trt10.so"))
    assert [p.parent.name for p in staged] == [sha256(x86)]                            # staged by content
    assert (store / "blobs" / "sha256" / sha256(x86)).read_bytes() == x86.read_bytes()

    shutil.copy(plugin_libraries["rebuilt"], x86)                                     # new bytes, same behaviour
    again = cli("matrix", "build", "--json")
    assert again.code == 0, again.err
    second = {r["job_id"]: r for r in json.loads(again.out)["results"]}
    assert second["det/t4/fp32"]["status"] == "built" and \
        second["det/t4/fp32"]["build_key"] != first["det/t4/fp32"]["build_key"]
    assert second["det/nano/fp32"]["status"] == "cached"                              # its library did not change

    cli("keys", "generate", str(tmp_path / "keys"))
    signing = {"FLEETBUILD_SIGNING_KEY": str(tmp_path / "keys" / "fleetbuild.key")}
    published = cli("publish", "--version", "1.0", extra_env=signing)
    assert published.code == 0, published.err
    index = json.loads((store / "releases" / "layers" / "1.0" / "index.json").read_text())
    assert index["entries"]["det/t4/fp32"]["plugins"] == [
        {"provider": "acme", "name": "libacme-x86_64-trt10.so", "sha256": sha256(x86), "size": x86.stat().st_size}]

    py36 = pyenv_python("3.6")
    facts = tmp_path / "t4.json"
    facts.write_text(json.dumps({"gpus": [{"name": "Tesla T4", "compute_capability": "7.5"}],
                                 "tensorrt": [{"flavor": "tensorrt", "version": "10.3.0.26"}]}))
    for layout in ("plain", "triton"):
        out = tmp_path / f"device-{layout}"
        proc = subprocess.run([py36, str(zipapp), "pull", "--store", str(store), "--project", "layers", "--version",
                               "1.0", "--model", "det", "--public-key", str(tmp_path / "keys" / "fleetbuild.pub"),
                               "--facts", str(facts), "--out", str(out), "--layout", layout],
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "LANG": "C"})
        assert proc.returncode == 0, proc.stderr
        assert "its plugin libraries libacme-x86_64-trt10.so under" in proc.stdout
        base = out if layout == "plain" else out / "det"
        [library] = base.glob("plugins/*/libacme-x86_64-trt10.so")
        assert library.read_bytes() == x86.read_bytes() and library.parent.name == sha256(x86)[:16]
    notes = (tmp_path / "device-triton" / "fleetbuild-plugins.txt").read_text()
    assert "--backend-config=tensorrt,plugins=" in notes and "LD_PRELOAD=" in notes

    exported = cli("artifacts", "export", "1.0", "--layout", "triton", "--out", str(tmp_path / "repository"),
                   "--public-key", str(tmp_path / "keys" / "fleetbuild.pub"))
    assert exported.code == 0, exported.err
    [library] = (tmp_path / "repository" / "det" / "plugins").glob("*/libacme-x86_64-trt10.so")
    notes = (tmp_path / "repository" / "fleetbuild-plugins.txt").read_text()
    assert str(library) in notes and "its engines need plugin libraries" in exported.out
    sections = {part.split(" servers:")[0]: part for part in notes.split("# On ")[1:]}    # each arch its own
    assert "libacme-x86_64-trt10.so" in sections["x86_64"] and "libacme-x86_64" not in sections["aarch64"]
    assert "libacme-aarch64-trt82.so" in sections["aarch64"]
    listed = subprocess.run([pyenv_python("3.6"), str(zipapp), "installed", "--out", str(tmp_path / "device-plain")],
                            capture_output=True, text=True)
    assert [Path(p).name for p in json.loads(listed.stdout)[0]["plugins"]] == ["libacme-x86_64-trt10.so"]

    deployed = cli("deploy", "--group", "t4", "--version", "1.0", "--dest", str(tmp_path / "fleet-dest" / "{host}"),
                   "--public-key", str(tmp_path / "keys" / "fleetbuild.pub"), "--json")
    assert deployed.code == 0, deployed.err + deployed.out
    assert [r["status"] for r in json.loads(deployed.out)["results"]] == ["installed"]
    [library] = (tmp_path / "fleet-dest" / "t4-1").glob("plugins/*/libacme-x86_64-trt10.so")
    assert library.read_bytes() == x86.read_bytes()

    shutil.copy(plugin_libraries["broken"], x86)
    broken = cli("matrix", "build", "--json", "--only", "det/t4/fp32")
    [row] = json.loads(broken.out)["results"]
    assert broken.code == 1 and row["status"] == "failed" and row["kind"] == "build"
    assert row["reason"] == ("TensorRT could not load plugin library libacme-x86_64-trt10.so: "
                             "libacme-x86_64-trt10.so: undefined symbol: fleetbuild_symbol_nowhere"), row["reason"]


def test_provider_from_a_package(project, cli, plugin_libraries, tmp_path, monkeypatch):
    """examples/layer-provider, loaded as a plugin module: its x86_64 library serves the T4; the
    Orin gets none (its aarch64 builds are not in the package) and the plan says so."""
    from conftest import ROOT

    package = tmp_path / "layer-provider"
    shutil.copytree(ROOT / "examples" / "layer-provider", package)
    library = package / "acme_layers" / "lib" / "x86_64-trt10" / "libacme_layers.so"
    library.parent.mkdir(parents=True)
    shutil.copy(plugin_libraries["ok"], library)
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.delitem(sys.modules, "acme_layers", raising=False)
    custom_op_model(project.root / "models" / "custom.onnx")
    project.write('[project]\nname = "p"\n[models.det]\nonnx = "models/custom.onnx"\nlayers = ["acme"]\n'
                  '[matrix]\ntargets = ["t4", "orin"]\nprecisions = ["fp16"]\n')
    result = cli("-p", "acme_layers", "matrix", "plan", "--json")
    jobs = {job["id"]: job for job in json.loads(result.out)["jobs"]}
    assert jobs["det/t4/fp16"]["problems"] == []
    assert [lib["path"] for lib in jobs["det/t4/fp16"]["layers"][0]["libraries"]] == [str(library)]
    assert [p["code"] for p in jobs["det/orin/fp16"]["problems"]] == ["layer-no-library"]
    assert jobs["det/orin/fp16"]["problems"][0]["hint"] == \
        "add a library to the provider's package (acme-layers) compiled for aarch64"
