"""The probe against fixture hosts, run from the zipapp under the host Pythons (3.6, 3.8, 3.10)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import FAKE_TRT, FIXTURES, pyenv_python, require

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


# ---- the probe command: the worker travels inside it and is installed once per host ----------------

def run_probe_command(python: str, workdir: Path, base: Path, worker=None):
    """Run a HostSession's probe command with sh, as Ansible's raw module runs it on a host; the
    session reads the outcome from the same record Ansible gives it."""
    from fleetbuild.build.bundle import WorkerArchive
    from fleetbuild.build.dispatch.ansible import RawResult
    from fleetbuild.build.dispatch.session import HostSession
    from fleetbuild.build.hosts import Host

    root, bin_dir = make_host("t4", base / "host")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FLEETBUILD_PROBE_ROOT": str(root)}
    worker = worker or WorkerArchive.build()
    session = HostSession(Host("h", (), "local", "localhost", python=python, workdir=str(workdir), env=env), None)
    command = session.probe_command(worker)
    host_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}   # as on a host
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120, env=host_env)
    session.take_probe(RawResult("h", proc.returncode == 0, proc.returncode, proc.stdout, proc.stderr), worker)
    return session, proc


def test_probe_command_installs_the_worker_once(host_python, tmp_path):
    session, proc = run_probe_command(host_python, tmp_path / "work dir", tmp_path)
    assert session.problem is None, proc.stderr
    assert session.facts["gpus"][0]["compute_capability"] == "7.5"
    assert session.workdir == str(tmp_path / "work dir")
    installed = Path(session.worker)
    assert installed.parent == tmp_path / "work dir" / "worker" and (installed / "__main__.py").is_file()
    inode = installed.stat().st_ino
    again, _ = run_probe_command(host_python, tmp_path / "work dir", tmp_path)
    assert again.facts == session.facts and Path(again.worker).stat().st_ino == inode     # not unpacked again
    assert sorted(p.name for p in installed.parent.iterdir()) == [installed.name]          # no temporary left
    assert list(installed.rglob("__pycache__")), "the host's Python caches the worker's bytecode"


def test_probe_command_refuses_a_damaged_worker(tmp_path):
    from fleetbuild.build.bundle import WorkerArchive

    python = pyenv_python("3.6")
    require(python is not None, "Python 3.6 (pyenv)", "the machine image's pyenv")
    real = WorkerArchive.build()
    damaged = WorkerArchive(real.sha256, real.base64[:-8] + "AAAAAAA=")
    session, _ = run_probe_command(python, tmp_path / "work", tmp_path, worker=damaged)
    assert session.problem == (f"cannot install the worker in {tmp_path / 'work'}/worker: "
                               "the worker arrived damaged (sha256 mismatch)")
    assert session.facts is None and not (tmp_path / "work" / "worker" / real.name).exists()


def test_probe_command_names_a_work_dir_it_cannot_create(tmp_path):
    (tmp_path / "file").write_text("")
    session, _ = run_probe_command(pyenv_python("3.10") or sys.executable, tmp_path / "file" / "work", tmp_path)
    assert session.problem.startswith(f"cannot create or enter the work dir {tmp_path / 'file' / 'work'}: ")
    assert "Not a directory" in session.problem and not session.down


def test_probe_command_says_when_python_is_too_old(tmp_path):
    python = pyenv_python("2.7")
    require(python is not None, "Python 2.7 (pyenv)", "the machine image's pyenv")
    session, _ = run_probe_command(python, tmp_path / "work", tmp_path)
    assert session.problem == (f"{python} is too old for the worker (it needs Python 3.6 or newer; "
                               "set fleetbuild_python)")


def test_probe_command_fits_in_one_argument():
    """The remote shell gets the command as one argument: Linux caps one at 128 KiB (MAX_ARG_STRLEN).
    A worker grown past ~90 KiB zipped needs another way up (a batch upload)."""
    from fleetbuild.build.bundle import WorkerArchive
    from fleetbuild.build.dispatch.session import HostSession
    from fleetbuild.build.hosts import Host

    session = HostSession(Host("h", (), "ssh", "h", env={"PATH": "/usr/bin"}), None)
    assert len(session.probe_command(WorkerArchive.build()).encode()) < 100 * 1024
