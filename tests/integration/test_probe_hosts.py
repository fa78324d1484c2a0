"""The probe against fixture hosts, run from the zipapp under the host Pythons (3.6, 3.8, 3.10)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import FAKE_TRT, FIXTURES

import sys

sys.path.insert(0, str(FIXTURES))
from hosts import make_host  # noqa: E402


def probe(python: str, zipapp: Path, kind: str, base: Path, pythonpath: str = "") -> dict:
    root, bin_dir = make_host(kind, base)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FLEETBUILD_PROBE_ROOT": str(root), "HOME": str(base)}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run([python, str(zipapp), "probe"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return json.loads(proc.stdout)


def test_datacenter_t4(host_python, zipapp, tmp_path):
    facts = probe(host_python, zipapp, "t4", tmp_path)
    assert facts["gpus"] == [{"name": "Tesla T4", "compute_capability": "7.5", "memory_mib": 15360,
                              "driver": "535.104.05", "cc_source": "nvidia-smi"}]
    assert facts["jetson"] is None and facts["dla_cores"] == 0
    assert facts["os"] == {"id": "ubuntu", "version": "22.04", "pretty": "ubuntu 22.04"}
    assert facts["cuda"] == "12.2.140"
    assert facts["tensorrt"] == [{"flavor": "tensorrt", "version": "10.3.0.26", "source": "NvInferVersion.h",
                                  "bindings": False}]
    assert facts["python"]["executable"] == host_python
    assert set(facts["unknown"]) == {"trtexec"}


def test_old_driver_maps_compute_capability_from_name(host_python, zipapp, tmp_path):
    facts = probe(host_python, zipapp, "t4-old-driver", tmp_path)
    assert facts["gpus"] == [{"name": "Tesla T4", "compute_capability": "7.5", "memory_mib": 15109,
                              "driver": "470.57.02", "cc_source": "name"}]
    assert facts["cuda"] == "11.4.315"


def test_jetson_nano_jetpack_46(host_python, zipapp, tmp_path):
    facts = probe(host_python, zipapp, "nano", tmp_path)
    assert facts["jetson"] == {"l4t": "32.7.1", "jetpack": "4.6", "board": "NVIDIA Jetson Nano Developer Kit"}
    assert facts["gpus"] == [{"name": "NVIDIA Tegra X1", "compute_capability": "5.3", "memory_mib": None,
                              "driver": None, "cc_source": "board"}]
    assert facts["tensorrt"][0]["version"] == "8.2.1.8" and facts["cuda"] == "10.2.300"
    assert facts["dla_cores"] == 0


def test_orin_jetpack_6_with_bindings(host_python, zipapp, tmp_path):
    facts = probe(host_python, zipapp, "orin", tmp_path, pythonpath=str(FAKE_TRT["8.6"]))
    assert facts["jetson"] == {"l4t": "36.3.0", "jetpack": "6.0", "board": "NVIDIA Jetson AGX Orin Developer Kit"}
    assert facts["gpus"][0]["compute_capability"] == "8.7" and facts["dla_cores"] == 2
    assert facts["tensorrt"] == [{"flavor": "tensorrt", "version": "8.6.2.3", "source": "bindings", "bindings": True}]


def test_no_gpu(host_python, zipapp, tmp_path):
    facts = probe(host_python, zipapp, "cpu-only", tmp_path)
    assert facts["gpus"] == [] and facts["unknown"]["gpus"] == "nvidia-smi not found on PATH"
    assert facts["tensorrt"] == [] and facts["cuda"] is None and "cuda" in facts["unknown"]


def test_strange_host_never_crashes(host_python, zipapp, tmp_path):
    root, bin_dir = make_host("orin", tmp_path)
    (root / "etc/nv_tegra_release").write_text("garbage\n")
    (root / "proc/device-tree/model").write_bytes(b"\xff\xfe Jetson Mystery Board\x00")
    (root / "usr/local/cuda/version.json").write_text("{not json")
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FLEETBUILD_PROBE_ROOT": str(root)}
    proc = subprocess.run([host_python, str(zipapp), "probe"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["jetson"]["l4t"] is None and facts["unknown"]["jetson.l4t"] == "unreadable /etc/nv_tegra_release"
    assert facts["unknown"]["nvidia-smi"] == "nvidia-smi exited 9: NVIDIA-SMI has failed"
    assert facts["gpus"] == [] and facts["unknown"]["gpus"].startswith("unknown Jetson board")
