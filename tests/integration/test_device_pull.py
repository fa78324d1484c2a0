"""A device pulls the engine that matches it (Python 3.6, standard library), refusing corruption,
unsigned or replayed releases, and engines for another GPU or TensorRT."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from conftest import FIXTURES, pyenv_python, require

from fleetbuild.store import signing
from fleetbuild.plugin.manager import Plugins
from fleetbuild.store.publish import publish

sys.path.insert(0, str(FIXTURES))
from hosts import make_host  # noqa: E402


def release(tmp_path, key, entries_spec, version="1.0", padding=0):
    store = Plugins(entry_points=False).store_for(f"file://{tmp_path}/store", {}, tmp_path, "f", {})
    entries = {}
    for job_id, cc, trt in entries_spec:
        engine = b"ftrt" + job_id.encode() + b"\0" * padding
        digest = hashlib.sha256(engine).hexdigest()
        store.write_bytes(f"blobs/sha256/{digest}", engine)
        store.write_bytes(f"builds/{digest}.json", json.dumps({"build_key": digest, "job_id": job_id}).encode())
        entries[job_id] = {"target": job_id.split("/")[1], "variant": "", "precision": job_id.split("/")[2],
                           "compute_capability": cc, "tensorrt": {"flavor": "tensorrt", "version": trt},
                           "build_key": digest, "manifest": f"builds/{digest}.json",
                           "engine": {"file": "engine.plan", "sha256": digest, "size": len(engine)}}
    publish(store, "fleet", version, entries, key, force=padding > 0)
    return store, entries


def device_pull(zipapp, tmp_path, public, *extra, max_file_bytes=None):
    """The zipapp's pull on Python 3.6; `max_file_bytes`: the kernel refuses to grow any file beyond
    it (RLIMIT_FSIZE), as a full disk refuses a write."""
    import resource

    py36 = pyenv_python("3.6")
    require(py36 is not None, "Python 3.6 (pyenv)", "the machine image's pyenv")
    root, bin_dir = make_host("t4", tmp_path / "device")             # a T4 with TensorRT 10.3.0.26
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))) \
        if max_file_bytes else None
    return subprocess.run([py36, str(zipapp), "pull", "--store", str(tmp_path / "store"), "--project", "fleet",
                           "--version", "1.0", "--model", "det", "--public-key", str(public), "--out",
                           str(tmp_path / "engines"), *extra], capture_output=True, text=True, preexec_fn=limit,
                          env={"FLEETBUILD_PROBE_ROOT": str(root), "PATH": f"{bin_dir}:/usr/bin:/bin"})


@pytest.fixture
def keys(tmp_path):
    return signing.generate(tmp_path / "keys", {})


def test_pull_installs_the_matching_engine(zipapp, tmp_path, keys):
    _, public, key = keys
    release(tmp_path, key, [("det/t4/fp16", "7.5", "10.3.0.26"), ("det/a100/fp16", "8.0", "10.3.0.26"),
                            ("det/t4x/fp16", "7.5", "8.6.1.6")])
    proc = device_pull(zipapp, tmp_path, public)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"installed det/t4/fp16 as {tmp_path / 'engines'}/det.plan\n"
    assert (tmp_path / "engines" / "det.plan").read_bytes() == b"ftrtdet/t4/fp16"
    manifest = json.loads((tmp_path / "engines" / "det.manifest.json").read_text())
    assert manifest["release"]["sequence"] == 1 and manifest["job_id"] == "det/t4/fp16"


def test_pull_refuses_a_corrupted_engine_and_installs_nothing(zipapp, tmp_path, keys):
    _, public, key = keys
    store, entries = release(tmp_path, key, [("det/t4/fp16", "7.5", "10.3.0.26")])
    (tmp_path / "store" / "blobs" / "sha256" / entries["det/t4/fp16"]["engine"]["sha256"]).write_bytes(b"ftrt evil")
    proc = device_pull(zipapp, tmp_path, public)
    assert proc.returncode == 1
    assert "engine of det/t4/fp16 is corrupted in the store" in proc.stderr and "nothing installed" in proc.stderr
    assert not (tmp_path / "engines" / "det.plan").exists()


def test_pull_refuses_replay_foreign_key_and_no_match(zipapp, tmp_path, keys):
    _, public, key = keys
    store, _ = release(tmp_path, key, [("det/t4/fp16", "7.5", "10.3.0.26")])
    old_index = store.read_bytes("releases/fleet/1.0/index.json")[0]
    release(tmp_path, key, [("det/t4/int8", "7.5", "10.3.0.26")])
    assert device_pull(zipapp, tmp_path, public, "--precision", "int8").returncode == 0   # accepts sequence 2
    (tmp_path / "store" / "releases/fleet/1.0/index.json").write_bytes(old_index)        # replay sequence 1
    proc = device_pull(zipapp, tmp_path, public, "--precision", "fp16")
    assert proc.returncode == 1 and "index sequence 1 is older than 2 already accepted" in proc.stderr
    _, other_public, _ = signing.generate(tmp_path / "other", {})
    proc = device_pull(zipapp, tmp_path, other_public)
    assert "refused: release index signature: signed by another key" in proc.stderr


def test_pull_explains_when_nothing_matches(zipapp, tmp_path, keys):
    _, public, key = keys
    release(tmp_path, key, [("det/a100/fp16", "8.0", "10.3.0.26"), ("det/t4/fp16", "7.5", "10.0.1.6")])
    proc = device_pull(zipapp, tmp_path, public)
    assert proc.returncode == 1
    assert proc.stderr == (
        "fleetbuild-remote: pull: no engine of det in fleet 1.0 fits this device (CC 7.5, TensorRT 10.3.0.26)\n"
        "  det/a100/fp16: built for TensorRT 10.3 on CC 8.0; this device has TensorRT 10.3.0.26 on CC 7.5 - compute "
        "capability mismatch: publish a build for CC 7.5 (a target with this GPU)\n"
        "  det/t4/fp16: built for TensorRT 10.0 on CC 7.5; this device has TensorRT 10.3.0.26 on CC 7.5 - version "
        "mismatch: publish a build for TensorRT 10.3, or a version-compatible engine (version_compatible = true: it "
        "loads in the same or a newer TensorRT)\n")
    assert not (tmp_path / "engines" / "det.plan").exists()


def test_a_write_refused_mid_download_keeps_the_previous_engine(zipapp, tmp_path, keys):
    """The disk fills (here: the kernel refuses to grow a file past 1 MiB) while a 4 MiB engine
    downloads: one clean line, the previous engine still installed, the bytes so far kept to resume."""
    _, public, key = keys
    release(tmp_path, key, [("det/t4/fp16", "7.5", "10.3.0.26")])
    assert device_pull(zipapp, tmp_path, public).returncode == 0
    before = (tmp_path / "engines" / "det.plan").read_bytes()
    release(tmp_path, key, [("det/t4/fp16", "7.5", "10.3.0.26")], padding=4 << 20)
    proc = device_pull(zipapp, tmp_path, public, max_file_bytes=1 << 20)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "stopped: File too large" in lines[0] and "kept for a resume" in lines[0], lines[0]
    assert (tmp_path / "engines" / "det.plan").read_bytes() == before
    parts = list((tmp_path / "engines").rglob("*.part"))
    assert parts and 0 < parts[0].stat().st_size <= 1 << 20
    proc = device_pull(zipapp, tmp_path, public)                     # space again: it resumes and installs
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "engines" / "det.plan").read_bytes()) > 4 << 20
    assert not list((tmp_path / "engines").rglob("*.part"))
